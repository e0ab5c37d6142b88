"""What the task list filters and sorts on: state groups, the dimensions a view can fix, and
the sorts, each as the very SQL expressions that :mod:`webapp.listing.schema` indexes."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from webapp.db.models import Task
from webapp.domain import ACTIVE_STATES
from webapp.domain import FINISHED_STATES
from webapp.domain import PROBLEM_STATES
from webapp.domain import TaskState

STATE_GROUPS: dict[str, frozenset[str]] = {
    "active": frozenset(s.value for s in ACTIVE_STATES),
    "finished": frozenset(s.value for s in FINISHED_STATES),
    "problems": frozenset(s.value for s in PROBLEM_STATES),
}
STATE_VALUES = [s.value for s in TaskState]

#: ``''`` for a missing text, inline (not a bound parameter) so that the sort and filter
#: expressions below are the very expressions ``schema.INDEXES`` indexes.
_EMPTY: sa.ColumnElement[str] = sa.literal_column("''")
TYPE_KEY = sa.func.coalesce(Task.task_type, _EMPTY)
UPSTREAM_KEY = sa.func.coalesce(Task.upstream_status, _EMPTY)
FRESH_KEY = sa.func.coalesce(Task.last_fetched_at, Task.tracked_at)


@dataclass(frozen=True)
class Sort:
    """A column's order: its keys with their direction (``True``: descending) when the column
    sorts "ascending"; the descending sort reads the very same order backwards."""

    label: str
    #: ``Task.id`` follows as the tie-breaker (in the last key's direction); the keyset pages
    #: on all of them, and an index in ``schema`` (or ``models``) holds them in this order.
    keys: tuple[tuple[Any, bool], ...]
    #: The first click on the column sorts newest (or last) first.
    descending_first: bool = False

    def directions(self, descending: bool) -> list[tuple[Any, bool]]:
        """``(expression, descending)`` for each key and the id, for one way of reading."""
        keys = [*self.keys, (Task.id, self.keys[-1][1])]
        return [(key, reverse != descending) for key, reverse in keys]


#: Grouping columns (state, source…) list each group newest first, the order their
#: ``(column, sort_at DESC, id DESC)`` indexes keep.
SORTS: dict[str, Sort] = {
    "state": Sort("State", ((Task.state, False), (Task.sort_at, True))),
    "upstream": Sort("Upstream", ((UPSTREAM_KEY, False), (Task.sort_at, True))),
    "id": Sort("Task", ((Task.task_id, False),)),
    "type": Sort("Type", ((TYPE_KEY, False), (Task.sort_at, True))),
    "source": Sort("Source", ((Task.source, False), (Task.sort_at, True))),
    "created": Sort("Created", ((Task.sort_at, False),), descending_first=True),
    "updated": Sort("Updated", ((Task.changed_at, False),), descending_first=True),
    "fresh": Sort("Fresh", ((FRESH_KEY, False),), descending_first=True),
}
DEFAULT_SORT = "-created"

#: (field, search qualifier) of each dimension a view can fix.
DIMENSIONS = (
    ("source", "source"),
    ("provider", "provider"),
    ("task_type", "type"),
    ("upstream", "upstream"),
    ("state", "state"),
)
#: A dimension test: the dimension's field and its accepted values (alternatives).
Group = tuple[str, tuple[str, ...]]
#: The sort named after each dimension whose ``(dimension, sort_at DESC, id DESC)`` index also
#: holds that sort's order.
OWN_SORT = {"source": "source", "task_type": "type", "upstream": "upstream", "state": "state"}
#: The dimension column behind each sort on one (the counts table's column names).
SORT_COLUMNS = {
    "state": "state",
    "source": "source",
    "type": "task_type",
    "upstream": "upstream_status",
}

TASK_COLUMNS: dict[str, Any] = {
    "source": Task.source,
    "provider": Task.provider,
    # The coalesced forms, so that the filter and the type/upstream sorts share an index.
    "task_type": TYPE_KEY,
    "upstream_status": UPSTREAM_KEY,
    "state": Task.state,
    "has_fetch_error": Task.fetch_error.is_not(None),
}


def states_in(group: tuple[str, ...]) -> set[str]:
    """The states a group of state values and state group names stands for."""
    states: set[str] = set()
    for value in group:
        states |= STATE_GROUPS.get(value.lower(), {value.lower()})
    return states


def dimension_conditions(
    groups: list[Group],
    columns: Mapping[str, Any],
    *,
    wrap: Callable[[Any], Any] = lambda column: column,
) -> list[sa.ColumnElement[bool]]:
    """Tests for ``(dimension, values)`` groups over ``columns`` (the tasks table's or the
    counts table's); ``wrap`` is applied to each column (to keep it off its index)."""
    keys = {"task_type": "task_type", "upstream": "upstream_status"}
    conditions: list[sa.ColumnElement[bool]] = []
    for name, group in groups:
        if name == "state":
            condition = wrap(columns["state"]).in_(sorted(states_in(group)))
            if any(value.lower() == "problems" for value in group):
                # A task we cannot fetch any more is a problem whatever its last state was.
                condition = sa.or_(condition, columns["has_fetch_error"])
            conditions.append(condition)
            continue
        column = wrap(columns[keys.get(name, name)])
        conditions.append(column.in_(group) if len(group) > 1 else column == group[0])
    return conditions

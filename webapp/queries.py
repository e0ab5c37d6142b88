"""The task list's view state (filters, search, sort, page) and the queries behind it.

One :class:`TaskQuery`, parsed from the query string, serves ``/``, its live-update fragment
and ``/api/v1/tasks``, so the HTML and JSON lists never disagree.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webapp.models import Task
from webapp.models import db
from webapp.providers.base import ACTIVE_STATES
from webapp.providers.base import FINISHED_STATES
from webapp.providers.base import PROBLEM_STATES
from webapp.providers.base import TaskState

STATE_GROUPS: dict[str, frozenset[str]] = {
    "active": frozenset(s.value for s in ACTIVE_STATES),
    "finished": frozenset(s.value for s in FINISHED_STATES),
    "problems": frozenset(s.value for s in PROBLEM_STATES),
}
STATE_VALUES = [s.value for s in TaskState]

#: sort name -> (column, label). A leading "-" on the name means descending.
SORTS: dict[str, tuple[Any, str]] = {
    "created": (Task.sort_at, "Created"),
    "updated": (Task.changed_at, "Updated"),
    "state": (Task.state, "State"),
    "type": (Task.task_type, "Type"),
    "source": (Task.source, "Source"),
    "id": (Task.task_id, "Task id"),
}
DEFAULT_SORT = "-created"
#: Qualifiers the search box understands, and the filter each one sets.
QUALIFIERS = {"state": "state", "type": "task_type", "source": "source", "provider": "provider"}


class QueryError(ValueError):
    """A query-string value we cannot use; the message says which and why."""


@dataclass(frozen=True)
class TaskQuery:
    source: str | None = None
    provider: str | None = None
    state: str | None = None
    task_type: str | None = None
    q: str = ""
    sort: str = DEFAULT_SORT
    after: str | None = None
    before: str | None = None
    limit: int = 50
    #: The page size asked for in the URL (kept in links); ``None`` for the default.
    explicit_limit: int | None = None
    #: Free-text words left in ``q`` once qualifiers are taken out.
    text: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_args(cls, args: Mapping[str, str], *, default_limit: int = 50) -> TaskQuery:
        """Parse ``request.args``; raises :class:`QueryError` for values that make no sense."""

        def value(name: str) -> str | None:
            raw = args.get(name)
            return raw.strip() or None if isinstance(raw, str) else None

        sort = value("sort") or DEFAULT_SORT
        if sort.lstrip("-") not in SORTS:
            raise QueryError(f"sort: unknown column {sort.lstrip('-')!r}")
        state = value("state")
        if state and state not in STATE_GROUPS and state not in STATE_VALUES:
            raise QueryError(f"state: unknown state {state!r}")
        try:
            limit = int(value("limit") or default_limit)
        except ValueError:
            raise QueryError("limit: not a number") from None
        if not 1 <= limit <= 500:
            raise QueryError("limit: between 1 and 500")
        query = cls(
            source=value("source"),
            provider=value("provider"),
            state=state,
            task_type=value("type"),
            q=value("q") or "",
            sort=sort,
            after=value("after"),
            before=value("before"),
            limit=limit,
            explicit_limit=limit if value("limit") else None,
        )
        return query.with_search_applied()

    def with_search_applied(self) -> TaskQuery:
        """Move ``state:x type:y source:z provider:w`` out of ``q`` into the filters."""
        try:
            words = shlex.split(self.q)
        except ValueError:
            words = self.q.split()
        filters: dict[str, str] = {}
        text: list[str] = []
        for word in words:
            name, sep, wanted = word.partition(":")
            if sep and name in QUALIFIERS and wanted:
                filters[QUALIFIERS[name]] = wanted
            else:
                text.append(word)
        if "state" in filters and filters["state"] not in (*STATE_GROUPS, *STATE_VALUES):
            raise QueryError(f"state: unknown state {filters['state']!r}")
        merged = {key: getattr(self, key) or wanted for key, wanted in filters.items()}
        return replace(self, text=tuple(text), **merged)

    def args(self, **overrides: Any) -> dict[str, Any]:
        """Query-string arguments for this view (for links), with ``overrides`` applied."""
        values = {
            "source": self.source,
            "provider": self.provider,
            "state": self.state,
            "type": self.task_type,
            "q": self.q or None,
            "sort": self.sort if self.sort != DEFAULT_SORT else None,
            "limit": self.explicit_limit,
        }
        values.update(overrides)
        return {key: value for key, value in values.items() if value not in (None, "")}

    @property
    def is_filtered(self) -> bool:
        return bool(self.source or self.provider or self.state or self.task_type or self.q)

    # -- SQL -----------------------------------------------------------------------------------
    def where(self) -> list[sa.ColumnElement[bool]]:
        """The filter conditions, shared by the page, the counts and the API."""
        conditions: list[sa.ColumnElement[bool]] = []
        if self.source:
            conditions.append(Task.source == self.source)
        if self.provider:
            conditions.append(Task.provider == self.provider)
        if self.state in STATE_GROUPS:
            conditions.append(Task.state.in_(sorted(STATE_GROUPS[self.state])))
            if self.state == "problems":
                conditions[-1] = sa.or_(conditions[-1], Task.fetch_error.is_not(None))
        elif self.state:
            conditions.append(Task.state == self.state)
        if self.task_type:
            conditions.append(Task.task_type == self.task_type)
        for word in self.text:
            pattern = f"%{_escape_like(word)}%"
            conditions.append(
                sa.or_(
                    Task.task_id.ilike(pattern, escape="\\"),
                    Task.name.ilike(pattern, escape="\\"),
                    Task.task_type.ilike(pattern, escape="\\"),
                    Task.error.ilike(pattern, escape="\\"),
                    Task.upstream_status.ilike(pattern, escape="\\"),
                )
            )
        return conditions


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None
    prev_cursor: str | None
    total: int


def _encode_cursor(value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        value = {"dt": value.isoformat()}
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[Any, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded))
        if isinstance(value, dict) and "dt" in value:
            value = datetime.fromisoformat(value["dt"])
        if not isinstance(row_id, int):
            raise TypeError
        return value, row_id
    except (ValueError, TypeError) as exc:
        raise QueryError("page cursor is not valid; start from the first page") from exc


def list_tasks(query: TaskQuery) -> TaskPage:
    """One page of tasks, by keyset pagination on (sort column, id)."""
    name = query.sort.lstrip("-")
    descending = query.sort.startswith("-")
    column = SORTS[name][0]
    # Nullable columns sort as empty strings so every row has a key to page from.
    key = sa.func.coalesce(column, "") if name in ("type",) else column
    statement = sa.select(Task).where(*query.where())
    backwards = query.before is not None and query.after is None
    cursor = query.before if backwards else query.after
    if cursor:
        value, row_id = _decode_cursor(cursor)
        if name == "type" and value is None:
            value = ""
        boundary = sa.tuple_(sa.literal(value, key.type), sa.literal(row_id))
        if descending != backwards:
            statement = statement.where(sa.tuple_(key, Task.id) < boundary)
        else:
            statement = statement.where(sa.tuple_(key, Task.id) > boundary)
    order_desc = descending != backwards
    if order_desc:
        statement = statement.order_by(key.desc(), Task.id.desc())
    else:
        statement = statement.order_by(key.asc(), Task.id.asc())
    rows = list(db.session.scalars(statement.limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
    next_cursor = prev_cursor = None
    if rows:
        first, last = rows[0], rows[-1]
        if (more and not backwards) or (backwards and cursor):
            next_cursor = _encode_cursor(_sort_value(last, name), last.id)
        if (cursor and not backwards) or (backwards and more):
            prev_cursor = _encode_cursor(_sort_value(first, name), first.id)
    total = count_tasks(query)
    return TaskPage(rows, next_cursor, prev_cursor, total)


def _sort_value(task: Task, name: str) -> Any:
    value = getattr(task, SORTS[name][0].key)
    if name == "type" and value is None:
        return ""
    return value


def count_tasks(query: TaskQuery) -> int:
    return db.session.scalar(sa.select(sa.func.count(Task.id)).where(*query.where())) or 0


def state_counts(query: TaskQuery) -> dict[str, int]:
    """Tasks per state for the current filter (the summary bar)."""
    statement = (
        sa.select(Task.state, sa.func.count(Task.id)).where(*query.where()).group_by(Task.state)
    )
    return {state: count for state, count in db.session.execute(statement)}


def task_types() -> list[str]:
    statement = (
        sa.select(Task.task_type)
        .where(Task.task_type.is_not(None))
        .distinct()
        .order_by(Task.task_type)
    )
    return list(db.session.scalars(statement))


def changed_tasks(ids: list[int], since: datetime) -> list[Task]:
    """Tasks among ``ids`` whose row changed after ``since`` (the list's live update)."""
    if not ids:
        return []
    statement = sa.select(Task).where(Task.id.in_(ids), Task.changed_at > since).order_by(Task.id)
    return list(db.session.scalars(statement))

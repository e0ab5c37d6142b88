"""The list's summary bar and filter menus: tasks per state for a view, and the values the
filter form offers. How each is counted depends on the database (:mod:`webapp.listing.backends`)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace

import sqlalchemy as sa

from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing.backends import backend
from webapp.listing.query import TaskQuery


@dataclass
class Counts:
    """Tasks per state for a view. ``exact`` is False when counting stopped at the cap
    (:func:`count_cap`): then each number is a lower bound."""

    by_state: dict[str, int]
    exact: bool = True
    #: How many of the view's tasks are overdue (counted up to the same cap).
    overdue: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def counts_are_cheap(query: TaskQuery) -> bool:
    """Whether :func:`state_counts` reads a table of counts (and so costs next to nothing)."""
    return query.counts_by_dimension and backend().keeps_counts


def count_cap(query: TaskQuery | None = None) -> int:
    """How far :func:`state_counts` counts row by row: PostgreSQL counts through its indexes
    in parallel and has no counts table, so it goes much further than SQLite; and SQLite
    counts a search's matches less far than other views' (each is a row read at random)."""
    if query is not None and query.search.phrases:
        return backend().search_count_cap
    return backend().count_cap


def state_counts(query: TaskQuery, cap: int | None = None) -> Counts:
    """Tasks per state for the view (the summary bar).

    On SQLite, a view narrowed by dimensions only is counted from the counts table that
    triggers keep (:mod:`webapp.listing.schema`), exactly and in well under a millisecond at
    any size. Other views count matching rows, up to ``cap`` (:func:`count_cap`) of them.
    """
    cap = cap or count_cap(query)
    overdue = overdue_count(query, cap)
    from_table = query.dimension_counts()
    if from_table is not None:
        return Counts(from_table, overdue=overdue)
    matching = sa.select(Task.state).where(*query.plan().counting(cap)).limit(cap + 1).subquery()
    statement = sa.select(matching.c.state, sa.func.count()).group_by(matching.c.state)
    found = {state: n for state, n in db.session.execute(statement)}
    return Counts(found, exact=sum(found.values()) <= cap, overdue=overdue)


def overdue_count(query: TaskQuery, cap: int) -> int:
    """The view's overdue tasks, up to ``cap``: few, so read through the overdue index."""
    if False in query.overdue_tests or not any_overdue():
        return 0
    overdue_view = replace(query, overdue="true")
    matching = sa.select(Task.id).where(*overdue_view.plan().counting()).limit(cap).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(matching)) or 0


_ANY_OVERDUE = sa.select(Task.id).where(Task.overdue == sa.true()).limit(1)


def any_overdue() -> bool:
    """Whether any task is overdue: one step into the overdue index, and usually the answer
    is no, which spares planning and counting the view's overdue tasks."""
    return db.session.connection().execute(_ANY_OVERDUE).first() is not None


def filter_choices() -> dict[str, list[str]]:
    """The task types and upstream words there are, for the filter form's menus (on
    PostgreSQL kept for a minute, since a ``DISTINCT`` over every task is not free)."""
    return backend().filter_choices()

"""What the task list does differently on each database, in one object per database.

The list's queries are the same SQL on SQLite and PostgreSQL except where the two have
different tools (:mod:`webapp.listing.schema` sets them up):

========================  ==========================================  =============================
                          SQLite                                      PostgreSQL
========================  ==========================================  =============================
search words              FTS5 table ``tasks_fts``, run once a view   GIN index on a ``tsvector``
label filter              ``task_labels`` rows (triggers)             GIN index on ``labels::jsonb``
reading a page            :class:`~webapp.listing.plan.SqlitePlan`    its own planner (statistics)
state counts              ``task_counts`` table (triggers); a search  counting ``tasks``, capped
                          counted up to 1,000
filter menus              ``task_counts`` table                       ``DISTINCT``, kept a minute
========================  ==========================================  =============================

:func:`backend` picks the object for the current app's engine; no other query of the list
looks at the dialect (only the set-up, :func:`webapp.listing.schema.install`, has one part per
database).
"""

from __future__ import annotations

import time
from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import ClassVar

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql

from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing import plan as planning
from webapp.listing import search
from webapp.listing.columns import OWN_SORT
from webapp.listing.columns import SORT_COLUMNS
from webapp.listing.columns import TASK_COLUMNS
from webapp.listing.columns import Group
from webapp.listing.columns import dimension_conditions
from webapp.listing.columns import states_in
from webapp.listing.plan import SPARSE_ROWS
from webapp.listing.plan import FilterPart
from webapp.listing.plan import Plan
from webapp.listing.plan import SqlitePlan
from webapp.listing.plan import capped_count
from webapp.listing.plan import plus
from webapp.listing.schema import counts_table
from webapp.listing.schema import labels_table

#: How often the filter menus are read again where that costs a scan (PostgreSQL).
CHOICES_TTL = 60.0


class ListBackend(ABC):
    """The list's queries on one kind of database. The defaults suit a database that plans
    well on its own; each subclass says what its database has."""

    name: ClassVar[str]
    #: How far state counts go row by row; beyond it the summary says "at least".
    count_cap: ClassVar[int]
    #: The same for a view with search words.
    search_count_cap: ClassVar[int]
    #: Whether a view narrowed by dimensions only is counted from a table of counts
    #: (:meth:`dimension_counts`), so that its counts cost next to nothing.
    keeps_counts: ClassVar[bool] = False

    # -- filter pieces (webapp.listing.plan) ----------------------------------------------------
    def plan(self, parts: list[FilterPart], leading: list[sa.ColumnElement[bool]]) -> Plan:
        return Plan(parts, leading)

    def unindexed(self, expression: Any) -> Any:
        """``expression`` for a test added to a planned read: kept off its index where our own
        plan steers the database (SQLite), as it is where the database plans alone."""
        return expression

    def dimension_part(self, name: str, group: tuple[str, ...]) -> FilterPart:
        """One dimension's test (source, provider, type, upstream word or state)."""
        indexed = dimension_conditions([(name, group)], TASK_COLUMNS)
        values = states_in(group) if name == "state" else set(group)
        single = len(values) == 1 and "problems" not in (v.lower() for v in group)
        ids = sa.select(Task.id).where(*indexed)
        return FilterPart(
            indexed=indexed,
            plain=dimension_conditions([(name, group)], TASK_COLUMNS, wrap=self.unindexed),
            ids=ids,
            estimate=lambda: self._dimension_size([(name, group)], ids),
            # The (dimension, sort_at DESC, id DESC) indexes hold the default order and the
            # dimension's own sort.
            serves={"created", OWN_SORT.get(name, "created")} if single else set(),
        )

    def range_part(
        self, column: Any, start: datetime | None, end: datetime | None, serves: set[str]
    ) -> FilterPart:
        """A time column within ``[start, end)``; ``serves`` names the sort on that column."""

        def tests(c: Any) -> list[sa.ColumnElement[bool]]:
            found = (c >= start if start else None, c < end if end else None)
            return [t for t in found if t is not None]

        ids = sa.select(Task.id).where(*tests(column))
        plain = tests(self.unindexed(column))
        return FilterPart(tests(column), plain, ids, lambda: capped_count(ids), serves)

    def overdue_part(self, wanted: bool) -> FilterPart:
        """Tasks that are (or are not) overdue. The few overdue ones are read through
        ``ix_tasks_overdue_sort`` (overdue, sort_at DESC, id DESC), which also holds the
        default order."""
        flag = sa.true() if wanted else sa.false()
        ids = sa.select(Task.id).where(Task.overdue == flag)
        return FilterPart(
            [Task.overdue == flag],
            [self.unindexed(Task.overdue) == flag],
            ids,
            lambda: capped_count(ids),
            {"created"},
        )

    @abstractmethod
    def label_part(self, label: str) -> FilterPart:
        """Tasks that carry ``label`` (lower case)."""

    @abstractmethod
    def text_part(self, phrases: Sequence[str]) -> FilterPart:
        """Tasks that match every phrase of the search box (:mod:`webapp.listing.search`);
        no test at all when the phrases hold no word."""

    def leading_values(self, groups: list[Group], sort: str) -> list[sa.ColumnElement[bool]]:
        """For a sort on a dimension column, conditions that let its index skip the values no
        matching task has (none where the database finds its way alone)."""
        return []

    def _dimension_size(self, groups: list[Group], ids: sa.Select[Any]) -> int:
        return capped_count(ids)

    # -- counts and menus ---------------------------------------------------------------------
    def dimension_counts(self, groups: list[Group]) -> dict[str, int] | None:
        """Tasks per state for a view narrowed by ``groups`` only, from a table of counts;
        ``None`` when the database keeps none (:attr:`keeps_counts`)."""
        return None

    def filter_choices(self) -> dict[str, list[str]]:
        """The task types and upstream words there are, for the filter form's menus."""
        return {"types": _distinct(Task.task_type), "upstream": _distinct(Task.upstream_status)}

    # -- charts -------------------------------------------------------------------------------
    def epoch_seconds(self, column: Any) -> sa.ColumnElement[Any]:
        """A timestamp column as seconds since 1970 (UTC)."""
        return sa.extract("epoch", column)


class SqliteBackend(ListBackend):
    """FTS5, trigger-kept label and count tables, and a planner of our own."""

    name = "sqlite"
    count_cap = 5_000
    # A search's matches are rows read at random (1,000 cost about 3 ms at 1M tasks, where
    # 5,000 cost 15), not a walk of an index.
    search_count_cap = 1_000
    keeps_counts = True

    def plan(self, parts: list[FilterPart], leading: list[sa.ColumnElement[bool]]) -> Plan:
        return SqlitePlan(parts, leading)

    def unindexed(self, expression: Any) -> Any:
        return plus(expression)

    def label_part(self, label: str) -> FilterPart:
        # The task_labels rows the triggers keep (webapp.listing.schema): exact, through its key.
        return _id_part(sa.select(labels_table.c.task_pk).where(labels_table.c.label == label))

    def overdue_part(self, wanted: bool) -> FilterPart:
        if not wanted:
            return super().overdue_part(wanted)
        # Through the ids: SQLite's statistics see one value of ``overdue`` (nearly every task
        # is not), estimate that ``overdue = 1`` matches every row, and would scan the table.
        return _id_part(sa.select(Task.id).where(Task.overdue == sa.true()))

    def text_part(self, phrases: Sequence[str]) -> FilterPart:
        fts = search.fts5_query(phrases)
        if fts is None:
            return _no_test()
        # Each run of the search expands a prefix word over the whole index (a few ms at 1M
        # tasks, however few rows are then read), so a view runs it once: for its newest
        # matches, one more than the plan's bound, kept for the session's transaction.
        bound = planning.SPARSE_ROWS
        newest = _per_transaction((fts, bound), lambda: search.newest_matches(fts, bound + 1))
        if len(newest) <= bound:
            # That is every match: tested by id, the index is not read again.
            part = _id_part(search.listed_ids(newest))
            part.joined = search.listed_join(newest)
        else:
            ids = search.fts5_ids(fts)
            part = _id_part(ids)
            part.joined = search.fts5_join(fts)
            part.newest = search.listed_join(newest)
            # A row from the lowest of those up is a match only if it is among them; only a
            # row below it runs the search again for every match (SQLite evaluates ``AND``
            # lazily, and collects a subquery's rows when first asked). So a page near the
            # top of a list by time (ids grow with time) tests rows without the search.
            unindexed_id = plus(Task.id)
            part.plain = [
                sa.or_(
                    unindexed_id.in_(search.listed_ids(newest)),
                    sa.and_(unindexed_id < newest[-1], unindexed_id.in_(ids)),
                )
            ]
        part._size = len(newest)
        return part

    def leading_values(self, groups: list[Group], sort: str) -> list[sa.ColumnElement[bool]]:
        """The sort column's values among the view's tasks, from the counts table."""
        column = SORT_COLUMNS.get(sort)
        if column is None or not groups:
            return []
        conditions = dimension_conditions(groups, _counted_columns())
        values = db.session.scalars(sa.select(counts_table.c[column]).where(*conditions).distinct())
        return [TASK_COLUMNS[column].in_(sorted(values))]

    def _dimension_size(self, groups: list[Group], ids: sa.Select[Any]) -> int:
        # Exact and next to free, from the counts table.
        c = counts_table.c
        conditions = dimension_conditions(groups, _counted_columns())
        statement = sa.select(sa.func.coalesce(sa.func.sum(c.n), 0)).where(*conditions)
        return db.session.scalar(statement) or 0

    def dimension_counts(self, groups: list[Group]) -> dict[str, int] | None:
        c = counts_table.c
        conditions = dimension_conditions(groups, _counted_columns())
        statement = sa.select(c.state, sa.func.sum(c.n)).where(*conditions).group_by(c.state)
        return {state: int(n) for state, n in db.session.execute(statement) if n}

    def filter_choices(self) -> dict[str, list[str]]:
        # The counts table is small at any size.
        c = counts_table.c
        return {"types": _distinct(c.task_type), "upstream": _distinct(c.upstream_status)}

    def epoch_seconds(self, column: Any) -> sa.ColumnElement[Any]:
        # SQLite keeps UTC datetimes as text; julianday() reads that text.
        return (sa.func.julianday(column) - 2440587.5) * 86400.0


class PostgresBackend(ListBackend):
    """GIN indexes for search and labels; counts straight from ``tasks``, which PostgreSQL
    reads through its indexes in parallel (a counter row that every worker updates would
    serialize the refresher's concurrent writers)."""

    name = "postgresql"
    count_cap = 100_000
    search_count_cap = count_cap

    def __init__(self) -> None:
        #: Database URL -> (when read, menus): a ``DISTINCT`` over every task is not free.
        self._choices: dict[str, tuple[float, dict[str, list[str]]]] = {}

    def label_part(self, label: str) -> FilterPart:
        # Served by the GIN index on labels::jsonb (webapp.listing.search.pg_schema).
        condition = sa.cast(Task.labels, postgresql.JSONB).contains([label])
        return _single_test(condition)

    def text_part(self, phrases: Sequence[str]) -> FilterPart:
        query = search.tsquery(phrases)
        if query is None:
            return _no_test()
        # Served by the GIN index on the same tsvector expression (search.pg_schema).
        condition = search.pg_document().op("@@")(
            sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), query)
        )
        return _single_test(condition)

    def filter_choices(self) -> dict[str, list[str]]:
        key = str(db.engine.url)
        cached = self._choices.get(key)
        if cached and time.monotonic() - cached[0] < CHOICES_TTL:
            return cached[1]
        choices = super().filter_choices()
        self._choices[key] = (time.monotonic(), choices)
        return choices


def _no_test() -> FilterPart:
    """Search phrases of nothing but punctuation: no condition at all (and never the piece a
    read is driven by)."""
    return FilterPart([], [], sa.select(Task.id), lambda: SPARSE_ROWS + 1)


def _id_part(ids: sa.Select[Any]) -> FilterPart:
    """Tasks whose id is among ``ids`` (read through their own index; SQLite)."""
    return FilterPart([Task.id.in_(ids)], [plus(Task.id).in_(ids)], ids, lambda: capped_count(ids))


def _single_test(condition: sa.ColumnElement[bool]) -> FilterPart:
    ids = sa.select(Task.id).where(condition)
    return FilterPart([condition], [condition], ids, lambda: capped_count(ids))


#: Where :func:`_per_transaction` keeps its values, in the session's ``info``.
_KEPT = "listing.kept"


def _per_transaction(key: tuple[str, int], compute: Callable[[], list[int]]) -> list[int]:
    """``compute()``, kept under ``key`` until the session writes or its transaction ends
    (a request's): a page's read and counts then agree on one answer, as the index stood when
    first asked. A task tracked by another process a moment later shows on the next load,
    as if the page had been read a moment earlier."""
    kept: dict[tuple[str, int], list[int]] = db.session.info.setdefault(_KEPT, {})
    if key not in kept:
        kept[key] = compute()
    return kept[key]


def _forget_kept(session: so.Session, *_: Any) -> None:
    session.info.pop(_KEPT, None)


def _forget_kept_on_write(state: so.ORMExecuteState) -> None:
    # ``UPDATE``/``DELETE`` statements and raw SQL change rows without a flush.
    if not state.is_select:
        _forget_kept(state.session)


sa.event.listen(so.Session, "after_flush", _forget_kept)
sa.event.listen(so.Session, "after_transaction_end", _forget_kept)
sa.event.listen(so.Session, "do_orm_execute", _forget_kept_on_write)


def _counted_columns() -> dict[str, Any]:
    """The counts table's columns, under the names of :data:`TASK_COLUMNS`."""
    c = counts_table.c
    return {**c, "has_fetch_error": c.has_fetch_error == 1}


def _distinct(column: Any) -> list[str]:
    statement = sa.select(column).where(column.is_not(None), column != "").distinct()
    return sorted(db.session.scalars(statement))


BACKENDS: dict[str, ListBackend] = {
    backend.name: backend for backend in (SqliteBackend(), PostgresBackend())
}


def backend_for(engine: sa.Engine) -> ListBackend:
    """The list's backend for ``engine``'s database."""
    try:
        return BACKENDS[engine.dialect.name]
    except KeyError:
        raise RuntimeError(f"the task list does not support {engine.dialect.name!r}") from None


def backend() -> ListBackend:
    """The list's backend for the current app's database."""
    return backend_for(db.engine)

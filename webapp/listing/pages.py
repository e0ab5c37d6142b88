"""Reading the task list a page at a time: keyset pagination on ``(sort keys…, id)``, so the
database reads a page's worth of index entries however deep the page (see
:mod:`webapp.listing.plan`); and the row lookups behind the list's live updates."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from datetime import datetime
from typing import Any
from typing import Generic
from typing import TypeVar

import sqlalchemy as sa

from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing import cursors
from webapp.listing.backends import backend
from webapp.listing.columns import SORTS
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery

#: The most newly tracked tasks one live update looks at: more arrive only in a bulk import,
#: and the list then offers a reload rather than rows.
MAX_ARRIVALS = 1000
Item = TypeVar("Item")


@dataclass(slots=True)
class TaskRow:
    """One task as a list row shows it (templates/tasks/_row.html). A page of the list reads
    these columns as plain values, not as :class:`Task`: each column costs a conversion per
    row (JSON, datetimes), the payload is the largest column by far, the session would track
    every task, and a row's fifty-odd lookups are cheapest on plain slots."""

    id: int
    source: str
    task_id: str
    name: str | None
    state: str
    upstream_status: str | None
    terminal: bool
    task_type: str | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    last_changed_at: datetime | None
    last_fetched_at: datetime | None
    error: str | None
    fetch_error: str | None
    fetch_error_kind: str | None
    gone_upstream: bool
    labels: list[str]
    note: str | None
    overdue: bool
    overdue_reason: str | None
    version: int


#: The columns of :class:`TaskRow`, in its order.
ROW_COLUMNS = tuple(getattr(Task, field.name) for field in fields(TaskRow))


def _task_rows(rows: Iterable[sa.Row[Any]]) -> list[TaskRow]:
    width = len(ROW_COLUMNS)  # a page's rows end with their sort keys
    return [TaskRow(*row[:width]) for row in rows]


@dataclass
class TaskPage(Generic[Item]):
    tasks: list[Item]
    next_cursor: str | None
    prev_cursor: str | None


def _cursor_values(token: str, sort: str) -> list[Any]:
    try:
        return cursors.decode(token, sort)
    except ValueError as exc:
        raise QueryError("page cursor is not valid; start from the first page") from exc


def _after(keys: list[tuple[Any, bool]], values: list[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after ``values`` in the order ``keys`` (each ``(expression, descending)``)."""
    bounds = [sa.literal(v, k.type) for (k, _), v in zip(keys, values, strict=True)]
    if len({descending for _, descending in keys}) == 1:
        row, boundary = sa.tuple_(*(k for k, _ in keys)), sa.tuple_(*bounds)
        return row < boundary if keys[0][1] else row > boundary
    # Mixed directions: (a > x) or (a = x and ((b < y) or (b = y and …))), led by a plain
    # bound on the first key so that the index range starts at the cursor.
    condition: sa.ColumnElement[bool] | None = None
    for (key, descending), bound in reversed(list(zip(keys, bounds, strict=True))):
        beyond = key < bound if descending else key > bound
        condition = (
            beyond if condition is None else sa.or_(beyond, sa.and_(key == bound, condition))
        )
    first, descending = keys[0]
    assert condition is not None
    return sa.and_(first <= bounds[0] if descending else first >= bounds[0], condition)


def ordered_read(
    query: TaskQuery,
    columns: list[Any],
    *,
    sort: str,
    descending: bool,
    after: str | None = None,
) -> sa.Select[Any]:
    """``columns`` (then the sort keys) of the view's tasks in ``sort`` order, from the row
    after the cursor ``after``, read the way :mod:`webapp.listing.plan` chooses so that a
    ``LIMIT`` stops the read early. Tests added by the caller should be ``unindexed``."""
    keys = SORTS[sort].directions(descending)
    conditions, off_index = query.plan(sort).ordered(sort)
    # Kept off their index when the read is driven by a filter's (rule 1 of the plan).
    ordering = [(backend().unindexed(k) if off_index else k, desc) for k, desc in keys]
    statement = sa.select(*columns, *(k for k, _ in keys)).where(*conditions)
    if after:
        statement = statement.where(_after(ordering, _cursor_values(after, sort)))
    return statement.order_by(*(k.desc() if desc else k.asc() for k, desc in ordering))


def list_tasks(query: TaskQuery) -> TaskPage[Task]:
    """One page of tasks, by keyset pagination on ``(sort keys…, id)``: the database reads a
    page's worth of index entries, however deep the page (see :mod:`webapp.listing.plan`)."""
    rows, next_cursor, prev_cursor = _read_page(query, [Task])
    return TaskPage([row[0] for row in rows], next_cursor, prev_cursor)


def list_rows(query: TaskQuery) -> TaskPage[TaskRow]:
    """:func:`list_tasks` as :class:`TaskRow`: what the task list draws."""
    rows, next_cursor, prev_cursor = _read_page(query, list(ROW_COLUMNS))
    return TaskPage(_task_rows(rows), next_cursor, prev_cursor)


def _read_page(
    query: TaskQuery, columns: list[Any]
) -> tuple[list[sa.Row[Any]], str | None, str | None]:
    """A page of ``columns`` and the cursors after and before it; each row ends with its sort
    keys (:func:`ordered_read`), which the cursors are made of."""
    backwards = query.before is not None and query.after is None
    cursor = query.before if backwards else query.after
    statement = ordered_read(
        query, columns, sort=query.sort_name, descending=query.descending != backwards, after=cursor
    )
    rows = list(db.session.execute(statement.limit(query.limit + 1)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
    keys = len(columns)
    next_cursor = prev_cursor = None
    if rows:
        if more if not backwards else bool(cursor):
            next_cursor = cursors.encode(list(rows[-1][keys:]))
        if bool(cursor) if not backwards else more:
            prev_cursor = cursors.encode(list(rows[0][keys:]))
    return rows, next_cursor, prev_cursor


def iter_tasks(query: TaskQuery, batch: int = 500) -> Iterator[Task]:
    """Every task of the view in its order, a keyset page at a time (the export)."""
    page_query = replace(query, after=None, before=None, limit=batch)
    while True:
        page = list_tasks(page_query)
        yield from page.tasks
        if page.next_cursor is None:
            return
        # Rows already written need not stay in the session: memory stays flat.
        db.session.expunge_all()
        page_query = replace(page_query, after=page.next_cursor)


# -- live updates ------------------------------------------------------------------------------
# The live poll's reads, built once: building a statement costs more than SQLite takes to
# answer these (a few primary-key lookups, the end of the primary key).
_tasks = Task.__table__
_ROW_VERSIONS = sa.select(_tasks.c.id, _tasks.c.version, _tasks.c.terminal).where(
    _tasks.c.id.in_(sa.bindparam("ids", expanding=True))
)
_ROWS_BY_IDS = (
    sa.select(*ROW_COLUMNS)
    .where(Task.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(Task.id)
)
_NEWEST_ID = sa.select(sa.func.max(_tasks.c.id))
_TRACKED_SINCE = (
    sa.select(_tasks.c.id, _tasks.c.terminal)
    .where(_tasks.c.id > sa.bindparam("since"))
    .order_by(_tasks.c.id.desc())
    .limit(MAX_ARRIVALS)
)


def row_versions(ids: list[int]) -> dict[int, tuple[int, bool]]:
    """``id -> (version, terminal)`` for those of ``ids`` still tracked (primary-key lookups)."""
    if not ids:
        return {}
    rows = db.session.connection().execute(_ROW_VERSIONS, {"ids": ids})
    return {pk: (version, terminal) for pk, version, terminal in rows}


def tasks_by_ids(ids: list[int]) -> list[Task]:
    if not ids:
        return []
    return list(db.session.scalars(sa.select(Task).where(Task.id.in_(ids)).order_by(Task.id)))


def rows_by_ids(ids: list[int]) -> list[TaskRow]:
    """:func:`tasks_by_ids` as :class:`TaskRow`."""
    if not ids:
        return []
    return _task_rows(db.session.execute(_ROWS_BY_IDS, {"ids": ids}))


def newest_task_id() -> int:
    """The highest task id there is (0 for none): a list page remembers it, so that later
    polls ask only for tasks tracked since (ids only grow)."""
    return db.session.connection().execute(_NEWEST_ID).scalar() or 0


def tracked_since(since: int) -> list[tuple[int, bool]]:
    """``(id, terminal)`` of the tasks tracked after task id ``since`` (at most
    :data:`MAX_ARRIVALS`, newest first): a short read at the end of the primary key, which a
    list poll makes before it applies any filter, so that a poll with nothing new costs no
    more than that."""
    rows = db.session.connection().execute(_TRACKED_SINCE, {"since": since})
    return [(pk, terminal) for pk, terminal in rows]


def _recently_tracked(since: int) -> sa.ScalarSelect[int]:
    """The ids of tasks tracked after task id ``since``, at most :data:`MAX_ARRIVALS` of the
    newest: a short range at the end of the primary key, read before any filter applies."""
    newest = sa.select(Task.id).where(Task.id > since).order_by(Task.id.desc())
    return newest.limit(MAX_ARRIVALS).scalar_subquery()


def arrivals(query: TaskQuery, since: int, limit: int) -> list[TaskRow]:
    """Up to ``limit`` of the view's tasks tracked after task id ``since``, in the view's
    order, as list rows. Cheap at any size: the view's filters apply to the newly tracked
    rows alone."""
    keys = SORTS[query.sort_name].directions(query.descending)
    statement = (
        sa.select(*ROW_COLUMNS)
        .where(Task.id.in_(_recently_tracked(since)), *query.where())
        .order_by(*(key.desc() if descending else key.asc() for key, descending in keys))
        .limit(limit)
    )
    return _task_rows(db.session.execute(statement))


def count_arrivals(query: TaskQuery, since: int) -> int:
    """How many of the view's tasks were tracked after task id ``since`` (among the newest
    :data:`MAX_ARRIVALS` tracked)."""
    matching = sa.select(Task.id).where(Task.id.in_(_recently_tracked(since)), *query.where())
    return db.session.scalar(sa.select(sa.func.count()).select_from(matching.subquery())) or 0

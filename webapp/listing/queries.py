"""The task list's view state (filters, search, sort, page) and the queries behind it.

One :class:`TaskQuery`, parsed from the query string, serves ``/``, its live-update fragment,
its charts and export, and ``/api/v1/tasks``, so the HTML and JSON lists never disagree. The
indexes and the counts table these queries rely on are set up by :mod:`webapp.listing.schema`.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import ACTIVE_STATES
from webapp.domain import FINISHED_STATES
from webapp.domain import PROBLEM_STATES
from webapp.domain import TaskState
from webapp.listing import search
from webapp.listing.plan import SPARSE_ROWS
from webapp.listing.plan import FilterPart
from webapp.listing.plan import Plan
from webapp.listing.plan import capped_count
from webapp.listing.plan import plus
from webapp.listing.schema import counts_table
from webapp.listing.schema import labels_table

STATE_GROUPS: dict[str, frozenset[str]] = {
    "active": frozenset(s.value for s in ACTIVE_STATES),
    "finished": frozenset(s.value for s in FINISHED_STATES),
    "problems": frozenset(s.value for s in PROBLEM_STATES),
}
STATE_VALUES = [s.value for s in TaskState]

#: ``''`` for a missing text, inline (not a bound parameter) so that the sort and filter
#: expressions below are the very expressions ``list_schema.INDEXES`` indexes.
_EMPTY = sa.literal_column("''")
TYPE_KEY = sa.func.coalesce(Task.task_type, _EMPTY)
UPSTREAM_KEY = sa.func.coalesce(Task.upstream_status, _EMPTY)
FRESH_KEY = sa.func.coalesce(Task.last_fetched_at, Task.tracked_at)


@dataclass(frozen=True)
class Sort:
    """A column's order: its keys with their direction (``True``: descending) when the column
    sorts "ascending"; the descending sort reads the very same order backwards."""

    label: str
    #: ``Task.id`` follows as the tie-breaker (in the last key's direction); the keyset pages
    #: on all of them, and an index in ``list_schema`` (or ``models``) holds them in this order.
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
MAX_LIMIT = 500
#: Counting tasks one by one stops here; beyond it the summary says "at least".
COUNT_CAP = 5_000
PG_COUNT_CAP = 100_000
#: The time-range parameters, and the search qualifier that sets each pair.
TIME_FIELDS = {"created": ("created_from", "created_to"), "updated": ("updated_from", "updated_to")}
#: The link to "every task" when the team has a default view (``/`` opens that one).
ALL_TASKS_ARGS = {"view": "all"}


class QueryError(ValueError):
    """A query-string value we cannot use; the message says which and why."""


# -- times: "2024-05-01", "2024-05-01T14:00Z", or an age such as "90m", "24h", "7d", "2w" ------
_AGE = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_AGE_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_instant(text: str, *, now: datetime, end: bool = False) -> datetime:
    """The instant ``text`` names. A date alone is its midnight, or the next one when it ends a
    range (so ``created_to=2024-05-03`` includes that day). Naive times are UTC."""
    text = text.strip()
    age = _AGE.match(text.lower())
    if age:
        return now - timedelta(seconds=int(age.group(1)) * _AGE_UNITS[age.group(2)])
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date (2024-05-01), a time (2024-05-01T14:00Z) or an age (24h, 7d)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end and len(text) == 10:
        value += timedelta(days=1)
    return value.astimezone(UTC)


def parse_range(text: str, *, now: datetime) -> tuple[datetime | None, datetime | None]:
    """A search qualifier's range: ``24h`` (since), ``2024-05-01`` (that day), ``a..b``,
    ``>a``, ``>=a``, ``<b``, ``<=b``."""
    if ".." in text:
        start, _, end = text.partition("..")
        return (
            parse_instant(start, now=now) if start else None,
            parse_instant(end, now=now, end=True) if end else None,
        )
    for op in (">=", "<=", ">", "<"):
        if text.startswith(op):
            value = text[len(op) :]
            if op.startswith(">"):
                return parse_instant(value, now=now, end=op == ">"), None
            return None, parse_instant(value, now=now, end=op == "<=")
    if _AGE.match(text.lower()):
        return parse_instant(text, now=now), None
    return parse_instant(text, now=now), parse_instant(text, now=now, end=True)


@dataclass(frozen=True)
class TaskQuery:
    """The list's whole view state. Field values are as written in the URL."""

    source: str | None = None
    provider: str | None = None
    state: str | None = None
    task_type: str | None = None
    upstream: str | None = None
    label: str | None = None
    created_from: str | None = None
    created_to: str | None = None
    updated_from: str | None = None
    updated_to: str | None = None
    q: str = ""
    sort: str = DEFAULT_SORT
    after: str | None = None
    before: str | None = None
    limit: int = 50
    #: The page size asked for in the URL (kept in links); ``None`` for the default.
    explicit_limit: int | None = None
    #: ``q`` split into qualifiers and phrases, and the time ranges resolved against ``now``.
    search: search.SearchText = field(default_factory=search.SearchText, compare=False)
    ranges: dict[str, list[tuple[datetime | None, datetime | None]]] = field(
        default_factory=dict, compare=False
    )

    #: URL parameter -> field, for the filters a link or form carries.
    PARAMS: ClassVar[dict[str, str]] = {
        "source": "source",
        "provider": "provider",
        "state": "state",
        "type": "task_type",
        "upstream": "upstream",
        "label": "label",
        "created_from": "created_from",
        "created_to": "created_to",
        "updated_from": "updated_from",
        "updated_to": "updated_to",
        "q": "q",
    }

    @classmethod
    def from_args(
        cls, args: Mapping[str, str], *, default_limit: int = 50, now: datetime | None = None
    ) -> TaskQuery:
        """Parse ``request.args``; raises :class:`QueryError` for values that make no sense."""

        def value(name: str) -> str | None:
            raw = args.get(name)
            return raw.strip() or None if isinstance(raw, str) else None

        sort = value("sort") or DEFAULT_SORT
        if sort.lstrip("-") not in SORTS:
            raise QueryError(f"sort: unknown column {sort.lstrip('-')!r}")
        try:
            limit = int(value("limit") or default_limit)
        except ValueError:
            raise QueryError("limit: not a number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit: between 1 and {MAX_LIMIT}")
        filters = {name: value(param) for param, name in cls.PARAMS.items()}
        filters["q"] = filters["q"] or ""
        query = cls(
            **filters,  # type: ignore[arg-type]
            sort=sort,
            after=value("after"),
            before=value("before"),
            limit=limit,
            # The form always sends a page size: the default one stays out of links.
            explicit_limit=limit if value("limit") and limit != default_limit else None,
        )
        return query._resolved(now or utcnow())

    def _resolved(self, now: datetime) -> TaskQuery:
        """Check the filters and resolve the search box and the time ranges."""
        text = search.parse(self.q)
        for state in [self.state, *text.qualifiers.get("state", ())]:
            if state and state.lower() not in (*STATE_GROUPS, *STATE_VALUES):
                raise QueryError(f"state: unknown state {state!r}")
        ranges: dict[str, list[tuple[datetime | None, datetime | None]]] = {}
        for name, (start_param, end_param) in TIME_FIELDS.items():
            found = []
            try:
                start, end = getattr(self, start_param), getattr(self, end_param)
                if start or end:
                    found.append(
                        (
                            parse_instant(start, now=now) if start else None,
                            parse_instant(end, now=now, end=True) if end else None,
                        )
                    )
                for qualifier in text.qualifiers.get(name, ()):
                    found.append(parse_range(qualifier, now=now))
            except ValueError as exc:
                raise QueryError(f"{name}: {exc}") from None
            if found:
                ranges[name] = found
        return replace(self, search=text, ranges=ranges)

    # -- links --------------------------------------------------------------------------------
    def args(self, **overrides: Any) -> dict[str, Any]:
        """Query-string arguments for this view (for links), with ``overrides`` applied.

        Paging is left out unless given: a link that changes the view starts at its first page.
        """
        values: dict[str, Any] = {param: getattr(self, name) for param, name in self.PARAMS.items()}
        values["sort"] = self.sort if self.sort != DEFAULT_SORT else None
        values["limit"] = self.explicit_limit
        values.update(overrides)
        found = {key: value for key, value in values.items() if value not in (None, "")}
        # "/" alone opens the team's default view, so "no filter" must still say so.
        return found or dict(ALL_TASKS_ARGS)

    def sort_args(self, name: str) -> dict[str, Any]:
        """The arguments of the link on column ``name``'s header: flip it, or sort by it."""
        if self.sort_name == name:
            wanted = name if self.descending else "-" + name
        else:
            wanted = "-" + name if SORTS[name].descending_first else name
        return self.args(sort=wanted)

    @property
    def sort_name(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def is_filtered(self) -> bool:
        return any(getattr(self, name) for name in self.PARAMS.values())

    @property
    def is_paged(self) -> bool:
        return bool(self.after or self.before)

    @property
    def counts_by_dimension(self) -> bool:
        """True when only source, provider, type, upstream word and state narrow the view, so
        the counts table can answer (:func:`state_counts`)."""
        return not (
            self.search.phrases or self.label or "label" in self.search.qualifiers or self.ranges
        )

    # -- SQL ----------------------------------------------------------------------------------
    def _values(self, name: str, qualifier: str) -> list[tuple[str, ...]]:
        """Each group of accepted values for one dimension: the form's, then the search box's.
        Values within a group are alternatives; groups all apply."""
        groups: list[tuple[str, ...]] = []
        if getattr(self, name):
            groups.append((getattr(self, name),))
        if qualifier in self.search.qualifiers:
            groups.append(self.search.qualifiers[qualifier])
        return groups

    def _groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(dimension, accepted values)`` for each dimension test of the view."""
        return [
            (name, group)
            for name, qualifier in DIMENSIONS
            for group in self._values(name, qualifier)
        ]

    def dimension_where(self, columns: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
        """The view's tests on source, provider, type, upstream word and state, over
        ``columns``: the ``tasks`` table's or the counts table's."""
        return dimension_conditions(self._groups(), columns)

    def parts(self) -> list[FilterPart]:
        """The view's filter, piece by piece (:mod:`webapp.listing.plan`)."""
        dialect = db.engine.dialect.name
        found = [self._dimension_part(name, group) for name, group in self._groups()]
        for label in self._values("label", "label"):
            for value in label:
                found.append(_label_part(value.lower(), dialect))
        for name, column in (("created", Task.sort_at), ("updated", Task.changed_at)):
            for start, end in self.ranges.get(name, ()):
                found.append(_range_part(column, start, end, serves={name}))
        if self.search.phrases:
            found.append(_text_part(self.search.phrases, dialect))
        return found

    def _dimension_part(self, name: str, group: tuple[str, ...]) -> FilterPart:
        """One dimension's test; its size comes from the counts table (exact, next to free)."""
        indexed = dimension_conditions([(name, group)], TASK_COLUMNS)
        values = _states(group) if name == "state" else set(group)
        single = len(values) == 1 and "problems" not in (v.lower() for v in group)
        own_sort = {
            "source": "source",
            "task_type": "type",
            "upstream": "upstream",
            "state": "state",
        }
        return FilterPart(
            indexed=indexed,
            plain=dimension_conditions([(name, group)], TASK_COLUMNS, wrap=plus),
            ids=sa.select(Task.id).where(*indexed),
            estimate=lambda: _dimension_count([(name, group)]),
            # The (dimension, sort_at DESC, id DESC) indexes hold the default order and the
            # dimension's own sort.
            serves={"created", own_sort.get(name, "created")} if single else set(),
        )

    def plan(self, sort: str | None = None) -> Plan:
        """How to read this view (``sort``: in that order)."""
        return Plan(self.parts(), self._leading_values(sort) if sort else [])

    def _leading_values(self, sort: str) -> list[sa.ColumnElement[bool]]:
        """For a sort on a dimension column, that column's values among the view's tasks (from
        the counts table): the sort's index then skips the values no matching task has."""
        column = {
            "state": "state",
            "source": "source",
            "type": "task_type",
            "upstream": "upstream_status",
        }.get(sort)
        if column is None or not self._groups() or db.engine.dialect.name != "sqlite":
            return []
        c = counts_table.c
        conditions = self.dimension_where({**c, "has_fetch_error": c.has_fetch_error == 1})
        values = db.session.scalars(sa.select(c[column]).where(*conditions).distinct())
        return [TASK_COLUMNS[column].in_(sorted(values))]

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The filter conditions on ``tasks``, shared by the page, the counts, the charts, the
        export and the API; :meth:`plan` arranges them for each kind of read."""
        return self.plan().where()


#: (field, search qualifier) of each dimension a view can fix.
DIMENSIONS = (
    ("source", "source"),
    ("provider", "provider"),
    ("task_type", "type"),
    ("upstream", "upstream"),
    ("state", "state"),
)


def dimension_conditions(
    groups: list[tuple[str, tuple[str, ...]]],
    columns: Mapping[str, Any],
    *,
    wrap: Callable[[Any], Any] = lambda column: column,
) -> list[sa.ColumnElement[bool]]:
    """Tests for ``(dimension, values)`` groups over ``columns`` (the tasks table's or the
    counts table's); ``wrap`` is applied to each column (``query_plan.plus``)."""
    keys = {"task_type": "task_type", "upstream": "upstream_status"}
    conditions: list[sa.ColumnElement[bool]] = []
    for name, group in groups:
        if name == "state":
            condition = wrap(columns["state"]).in_(sorted(_states(group)))
            if any(value.lower() == "problems" for value in group):
                # A task we cannot fetch any more is a problem whatever its last state was.
                condition = sa.or_(condition, columns["has_fetch_error"])
            conditions.append(condition)
            continue
        column = wrap(columns[keys.get(name, name)])
        conditions.append(column.in_(group) if len(group) > 1 else column == group[0])
    return conditions


def _states(group: tuple[str, ...]) -> set[str]:
    states: set[str] = set()
    for value in group:
        states |= STATE_GROUPS.get(value.lower(), {value.lower()})
    return states


TASK_COLUMNS: dict[str, Any] = {
    "source": Task.source,
    "provider": Task.provider,
    # The coalesced forms, so that the filter and the type/upstream sorts share an index.
    "task_type": TYPE_KEY,
    "upstream_status": UPSTREAM_KEY,
    "state": Task.state,
    "has_fetch_error": Task.fetch_error.is_not(None),
}


def _text_part(phrases: tuple[str, ...], dialect: str) -> FilterPart:
    if dialect != "sqlite":
        condition = search.match(phrases, dialect)
        assert condition is not None
        return FilterPart([condition], [condition], sa.select(Task.id).where(condition), lambda: 0)
    fts = search.fts5_query(phrases)
    if fts is None:  # nothing but punctuation: no condition at all
        return FilterPart([], [], sa.select(Task.id), lambda: SPARSE_ROWS + 1)
    ids = search.fts5_ids(fts)
    return FilterPart([Task.id.in_(ids)], [plus(Task.id).in_(ids)], ids, lambda: capped_count(ids))


def _label_part(label: str, dialect: str) -> FilterPart:
    if dialect == "postgresql":
        # Served by the GIN index on labels::jsonb (webapp.listing.search.pg_schema).
        condition = sa.cast(Task.labels, postgresql.JSONB).contains([label])
        return FilterPart([condition], [condition], sa.select(Task.id).where(condition), lambda: 0)
    # The task_labels rows the triggers keep (webapp.listing.schema): exact, through its key.
    ids = sa.select(labels_table.c.task_pk).where(labels_table.c.label == label)
    return FilterPart([Task.id.in_(ids)], [plus(Task.id).in_(ids)], ids, lambda: capped_count(ids))


def _range_part(
    column: Any, start: datetime | None, end: datetime | None, serves: set[str]
) -> FilterPart:
    def tests(c: Any) -> list[sa.ColumnElement[bool]]:
        return [
            t for t in (c >= start if start else None, c < end if end else None) if t is not None
        ]

    ids = sa.select(Task.id).where(*tests(column))
    plain = tests(plus(column)) if db.engine.dialect.name == "sqlite" else tests(column)
    return FilterPart(tests(column), plain, ids, lambda: capped_count(ids), serves)


def _dimension_count(groups: list[tuple[str, tuple[str, ...]]]) -> int:
    """How many tasks the dimension tests match, from the counts table (SQLite)."""
    c = counts_table.c
    conditions = dimension_conditions(groups, {**c, "has_fetch_error": c.has_fetch_error == 1})
    statement = sa.select(sa.func.coalesce(sa.func.sum(c.n), 0)).where(*conditions)
    return db.session.scalar(statement) or 0


# -- a page of tasks ---------------------------------------------------------------------------
@dataclass
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None
    prev_cursor: str | None


def _encode_cursor(values: list[Any]) -> str:
    encoded = [{"dt": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(encoded, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str, size: int) -> list[Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(values, list) or len(values) != size or not isinstance(values[-1], int):
            raise TypeError
        return [
            datetime.fromisoformat(v["dt"]) if isinstance(v, dict) and "dt" in v else v
            for v in values
        ]
    except (ValueError, TypeError, KeyError) as exc:
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
    ordering = [(plus(k) if off_index else k, desc) for k, desc in keys]
    statement = sa.select(*columns, *(k for k, _ in keys)).where(*conditions)
    if after:
        statement = statement.where(_after(ordering, _decode_cursor(after, len(keys))))
    return statement.order_by(*(k.desc() if desc else k.asc() for k, desc in ordering))


def list_tasks(query: TaskQuery) -> TaskPage:
    """One page of tasks, by keyset pagination on ``(sort keys…, id)``: the database reads a
    page's worth of index entries, however deep the page (see :mod:`webapp.listing.plan`)."""
    backwards = query.before is not None and query.after is None
    cursor = query.before if backwards else query.after
    statement = ordered_read(
        query, [Task], sort=query.sort_name, descending=query.descending != backwards, after=cursor
    )
    rows = list(db.session.execute(statement.limit(query.limit + 1)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
    next_cursor = prev_cursor = None
    if rows:
        if more if not backwards else bool(cursor):
            next_cursor = _encode_cursor(list(rows[-1][1:]))
        if bool(cursor) if not backwards else more:
            prev_cursor = _encode_cursor(list(rows[0][1:]))
    return TaskPage([row[0] for row in rows], next_cursor, prev_cursor)


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


# -- counts ------------------------------------------------------------------------------------
@dataclass
class Counts:
    """Tasks per state for a view. ``exact`` is False when counting stopped at
    :data:`COUNT_CAP`: then each number is a lower bound."""

    by_state: dict[str, int]
    exact: bool = True

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def counts_are_cheap(query: TaskQuery) -> bool:
    """Whether :func:`state_counts` reads the counts table (and so costs next to nothing)."""
    return query.counts_by_dimension and db.engine.dialect.name == "sqlite"


def count_cap() -> int:
    """How far :func:`state_counts` counts row by row: PostgreSQL counts through its indexes
    in parallel and has no counts table, so it goes much further than SQLite."""
    return COUNT_CAP if db.engine.dialect.name == "sqlite" else PG_COUNT_CAP


def state_counts(query: TaskQuery, cap: int | None = None) -> Counts:
    """Tasks per state for the view (the summary bar).

    On SQLite, a view narrowed by dimensions only is counted from the counts table that
    triggers keep (``list_schema``), exactly and in well under a millisecond at any size.
    Other views count matching rows, up to ``cap`` (:func:`count_cap`) of them.
    """
    cap = cap or count_cap()
    if counts_are_cheap(query):
        c = counts_table.c
        conditions = query.dimension_where({**c, "has_fetch_error": c.has_fetch_error == 1})
        statement = sa.select(c.state, sa.func.sum(c.n)).where(*conditions).group_by(c.state)
        return Counts({state: int(n) for state, n in db.session.execute(statement) if n})
    matching = sa.select(Task.state).where(*query.plan().counting()).limit(cap + 1).subquery()
    statement = sa.select(matching.c.state, sa.func.count()).group_by(matching.c.state)
    found = {state: n for state, n in db.session.execute(statement)}
    return Counts(found, exact=sum(found.values()) <= cap)


# -- choices for the filter form ----------------------------------------------------------------
_choices_cache: dict[str, tuple[float, dict[str, list[str]]]] = {}
CHOICES_TTL = 60.0


def filter_choices() -> dict[str, list[str]]:
    """The task types and upstream words there are, for the filter form's menus.

    On SQLite from the counts table (small at any size); elsewhere from ``tasks``, kept for a
    minute since a ``DISTINCT`` over every task is not free.
    """
    if db.engine.dialect.name == "sqlite":
        c = counts_table.c
        return {
            "types": _distinct(c.task_type),
            "upstream": _distinct(c.upstream_status),
        }
    key = str(db.engine.url)
    cached = _choices_cache.get(key)
    if cached and time.monotonic() - cached[0] < CHOICES_TTL:
        return cached[1]
    choices = {"types": _distinct(Task.task_type), "upstream": _distinct(Task.upstream_status)}
    _choices_cache[key] = (time.monotonic(), choices)
    return choices


def _distinct(column: Any) -> list[str]:
    statement = sa.select(column).where(column.is_not(None), column != "").distinct()
    return sorted(db.session.scalars(statement))


# -- live updates ------------------------------------------------------------------------------
def row_versions(ids: list[int]) -> dict[int, tuple[int, bool]]:
    """``id -> (version, terminal)`` for those of ``ids`` still tracked (primary-key lookups)."""
    if not ids:
        return {}
    statement = sa.select(Task.id, Task.version, Task.terminal).where(Task.id.in_(ids))
    return {pk: (version, terminal) for pk, version, terminal in db.session.execute(statement)}


def tasks_by_ids(ids: list[int]) -> list[Task]:
    if not ids:
        return []
    return list(db.session.scalars(sa.select(Task).where(Task.id.in_(ids)).order_by(Task.id)))

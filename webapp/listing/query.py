"""The task list's view state (filters, search, sort, page), parsed from the query string.

One :class:`TaskQuery` serves ``/``, its live-update fragment, its charts and export, and
``/api/v1/tasks``, so the HTML and JSON lists never disagree. It turns itself into filter
pieces through the database's backend (:mod:`webapp.listing.backends`); pages are read by
:mod:`webapp.listing.pages` and counted by :mod:`webapp.listing.counts`.
"""

from __future__ import annotations

import re
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

from webapp.db.models import Task
from webapp.db.models import utcnow
from webapp.listing import cursors
from webapp.listing import search
from webapp.listing.backends import backend
from webapp.listing.columns import DEFAULT_SORT
from webapp.listing.columns import DIMENSIONS
from webapp.listing.columns import SORTS
from webapp.listing.columns import STATE_GROUPS
from webapp.listing.columns import STATE_VALUES
from webapp.listing.columns import Group
from webapp.listing.plan import FilterPart
from webapp.listing.plan import Plan

MAX_LIMIT = 500
#: The time-range parameters, and the search qualifier that sets each pair.
TIME_FIELDS = {"created": ("created_from", "created_to"), "updated": ("updated_from", "updated_to")}
#: The link to "every task" when the team has a default view (``/`` opens that one).
ALL_TASKS_ARGS = {"view": "all"}


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


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
    #: ``true`` or ``false``: only tasks that are (or are not) overdue.
    overdue: str | None = None
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
        "overdue": "overdue",
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
        for cursor in ("after", "before"):
            token = value(cursor)
            try:
                if token is not None:
                    cursors.decode(token, sort.lstrip("-"))
            except ValueError:
                raise QueryError(
                    f"{cursor}: not a page cursor of this view; start from the first page"
                ) from None
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
        for flag in text.flags:
            if flag not in search.FLAGS:
                raise QueryError(f"is: unknown flag {flag!r}; try is:overdue")
        if self.overdue is not None and self.overdue.lower() not in (*_TRUE, *_FALSE):
            raise QueryError("overdue: true or false")
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
    def overdue_tests(self) -> list[bool]:
        """The overdue flag each test of the view wants (the ``overdue`` parameter's, then
        ``is:overdue`` or ``-is:overdue``'s)."""
        wanted = []
        if self.overdue is not None:
            wanted.append(self.overdue.lower() in _TRUE)
        if "overdue" in self.search.flags:
            wanted.append(self.search.flags["overdue"])
        return wanted

    @property
    def counts_by_dimension(self) -> bool:
        """True when only source, provider, type, upstream word and state narrow the view, so
        a table of counts can answer (:meth:`dimension_counts`)."""
        return not (
            self.search.phrases
            or self.label
            or "label" in self.search.qualifiers
            or self.ranges
            or self.overdue_tests
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

    def _groups(self) -> list[Group]:
        """``(dimension, accepted values)`` for each dimension test of the view."""
        return [
            (name, group)
            for name, qualifier in DIMENSIONS
            for group in self._values(name, qualifier)
        ]

    def dimension_counts(self) -> dict[str, int] | None:
        """Tasks per state from the database's table of counts, when it keeps one and only
        dimensions narrow the view (:attr:`counts_by_dimension`); else ``None``."""
        if not self.counts_by_dimension:
            return None
        return backend().dimension_counts(self._groups())

    def parts(self) -> list[FilterPart]:
        """The view's filter, piece by piece (:mod:`webapp.listing.plan`)."""
        db_backend = backend()
        found = [db_backend.dimension_part(name, group) for name, group in self._groups()]
        for label in self._values("label", "label"):
            for value in label:
                found.append(db_backend.label_part(value.lower()))
        for name, column in (("created", Task.sort_at), ("updated", Task.changed_at)):
            for start, end in self.ranges.get(name, ()):
                found.append(db_backend.range_part(column, start, end, serves={name}))
        for wanted in self.overdue_tests:
            found.append(db_backend.overdue_part(wanted))
        if self.search.phrases:
            found.append(db_backend.text_part(self.search.phrases))
        return found

    def plan(self, sort: str | None = None) -> Plan:
        """How to read this view (``sort``: in that order)."""
        db_backend = backend()
        leading = db_backend.leading_values(self._groups(), sort) if sort else []
        return db_backend.plan(self.parts(), leading)

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The filter conditions on ``tasks``, shared by the page, the counts, the charts, the
        export and the API; :meth:`plan` arranges them for each kind of read."""
        return self.plan().where()

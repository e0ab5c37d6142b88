"""How SQLite reads one sorted, filtered page of tasks without reading the whole table.

SQLite's planner knows little about the data: it cannot tell that "active" is 40 tasks out of
a million and "succeeded" 900,000, so for a page of 50 it may walk a million index entries or
sort a million rows. :class:`SqlitePlan` decides instead, from cheap facts about each piece of
the view's filter (:class:`FilterPart`): the counts table gives the size of a dimension test
exactly, and a capped read of an index bounds the others.

1. A piece that matches few rows (at most :data:`SPARSE_ROWS`) drives: its rows are found
   through its own index, then sorted. Its test is the only one left indexable, and the sort
   keys are kept off their index too, so SQLite has no other way in.
2. Otherwise the sort's index is walked in order, each row tested, until the page is full:
   with every piece matching many rows, that is soon. A piece whose own index holds the sort's
   order (``state=failed`` in ``(state, sort_at DESC, id DESC)`` for the default sort) may be
   walked instead; and for a sort on a dimension column, the values that no matching task has
   are skipped (:attr:`Plan.leading`, from the counts table).

The search words are the piece whose every run costs most (FTS5 expands a prefix word over the
whole index each time): SQLite's backend runs the search once a view, for its newest
``SPARSE_ROWS + 1`` matches, and the piece tests rows by id against those. With more matches than
that, a row older than all of them runs the search again, for every match, the first time one
is tested; a read that stops near the top of a list by time never gets there. A read or count
this piece drives joins its matches to ``tasks`` (:attr:`FilterPart.joined`), so that a
``LIMIT`` stops it, where ``id IN (…)`` would first collect every match.

Tests that must not be read through their index are written with SQLite's unary ``+``.
PostgreSQL keeps statistics and plans well on its own: there the tests are used as written
(:class:`Plan`); SQLite's backend (:mod:`webapp.listing.backends`) plans with :class:`SqlitePlan`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from webapp.db.models import db

#: A piece of the filter matching at most this many rows is read through its own index.
SPARSE_ROWS = 5_000


def plus(expression: Any) -> Any:
    """``+expression``: the same value, but SQLite will not read it through an index."""
    return UnaryExpression(expression, operator=operators.custom_op("+"), type_=expression.type)


def capped_count(ids: sa.Select[Any], cap: int = SPARSE_ROWS) -> int:
    """How many rows ``ids`` has, counting no further than ``cap + 1``."""
    limited = ids.limit(cap + 1).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(limited)) or 0


@dataclass
class FilterPart:
    """One selective piece of a view's filter (a dimension, a label, a time range, the search
    words): the two ways of testing it, the ids it matches, and how many there are."""

    #: The tests, written so that SQLite may read them through their index.
    indexed: list[sa.ColumnElement[bool]]
    #: The same tests, written so that no index serves them.
    plain: list[sa.ColumnElement[bool]]
    #: The ids of the rows it matches, read through its own index (to bound its size).
    ids: sa.Select[Any]
    #: How many rows it matches (exact, or counted no further than ``SPARSE_ROWS + 1``).
    estimate: Callable[[], int]
    #: The sorts whose index reads this piece in that order.
    serves: set[str] = field(default_factory=set)
    #: The tests as a join that yields the matching rows one by one, for a read this piece
    #: drives (SQLite's FTS5): ``id IN (…)`` would first collect every match, however many,
    #: where a join stops at the read's ``LIMIT``. ``None``: drive through ``indexed``.
    joined: list[sa.ColumnElement[bool]] | None = None
    #: Search words with more matches than :data:`SPARSE_ROWS`: the newest of them (one more
    #: than that bound) as a join, to count those alone when the count stops before.
    newest: list[sa.ColumnElement[bool]] | None = None
    _size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = self.estimate()
        return self._size


@dataclass
class Plan:
    """The view's filter pieces, and the conditions to use for each kind of read: here, all
    the tests as written, for a database that plans well on its own."""

    parts: list[FilterPart]
    #: Conditions that narrow the sort's leading key without filtering anything out (from the
    #: counts table: the values of the sort column that matching rows have).
    leading: list[sa.ColumnElement[bool]] = field(default_factory=list)

    def where(self) -> list[sa.ColumnElement[bool]]:
        """All the tests as written: for reads where the database's own choice is fine."""
        return [c for part in self.parts for c in part.indexed]

    def driven(self) -> list[sa.ColumnElement[bool]]:
        """Conditions for a read of every matching row (grouped, say)."""
        return self.where()

    def counting(self, cap: int | None = None) -> list[sa.ColumnElement[bool]]:
        """Conditions for counting the matching rows (no further than ``cap`` of them)."""
        return self.where()

    def ordered(self, sort: str) -> tuple[list[sa.ColumnElement[bool]], bool]:
        """Conditions for a read in ``sort`` order that stops after a page, and whether the
        sort keys must be kept off their index."""
        return [*self.where(), *self.leading], False


class SqlitePlan(Plan):
    """SQLite's reads, chosen from the pieces' sizes (the rules of the module)."""

    def driven(self) -> list[sa.ColumnElement[bool]]:
        """Read through the smallest piece's index (the only test left indexable), test the
        rest on each row."""
        if not self.parts:
            return self.where()
        return self._driven_by(min(self.parts, key=lambda part: part.size))

    def _driven_by(self, driver: FilterPart) -> list[sa.ColumnElement[bool]]:
        others = [c for part in self.parts if part is not driver for c in part.plain]
        return [*(driver.indexed if driver.joined is None else driver.joined), *others]

    def counting(self, cap: int | None = None) -> list[sa.ColumnElement[bool]]:
        """Driven by a small piece; else by a piece that streams its matches (search words:
        the count stops at its cap instead of collecting every match first); otherwise as
        written, so that SQLite may use an index that serves two pieces at once (type and
        time range).

        A view of nothing but search words with more newest matches at hand than ``cap``
        counts those: the count passes its cap either way, and says "at least" (of the
        newest matches rather than of any others), without running the search again."""
        if len(self.parts) == 1 and cap is not None:
            newest = self.parts[0].newest
            if newest is not None and self.parts[0].size > cap:
                return newest
        if self.parts and min(part.size for part in self.parts) <= SPARSE_ROWS:
            return self.driven()
        streaming = [part for part in self.parts if part.joined is not None]
        if streaming:
            return self._driven_by(min(streaming, key=lambda part: part.size))
        return self.where()

    def ordered(self, sort: str) -> tuple[list[sa.ColumnElement[bool]], bool]:
        """Rule 1 of the module when a piece is small, else rule 2."""
        if not self.parts:
            return super().ordered(sort)
        if min(part.size for part in self.parts) <= SPARSE_ROWS:
            return self.driven(), True
        conditions = [
            c for part in self.parts for c in (part.indexed if sort in part.serves else part.plain)
        ]
        return [*conditions, *self.leading], False

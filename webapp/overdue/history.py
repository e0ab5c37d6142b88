"""Bounds learned from history: how long finished tasks of one source and type took.

A type's bound is the 95th percentile of its finished tasks' durations times a margin
(:data:`MARGIN`), once it has :data:`MIN_HISTORY` of them, and never under
:data:`MIN_BOUND_SECONDS` (a type that takes two seconds is not late at four: polls are
seconds apart). A duration runs from the task's creation upstream (or, for upstreams that
report none, from when Taskdeck first saw it) to its finish; only tasks that finished the
work (``succeeded``, ``partial``) count, and a task first seen already finished without
upstream times is left out (it has no duration to speak of).

History is recent: tasks created in the last :data:`HISTORY_DAYS` days, at most the
:data:`HISTORY_ROWS` newest of each counted state, read in order through the
``(state, sort_at DESC, id DESC)`` index, so the cost stays flat however large the cache grows
(a scan of a million rows takes seconds). One grouped query per computation reads them into a
histogram of two significant digits per (source, type) (``1 s``, ``2 s``… ``10 s``, ``11 s``…
``990 s``, ``1000 s``, ``1100 s``…), so the percentile is found within 10 %; it is recomputed
every :data:`LEARN_EVERY_SECONDS` by the refresher's overdue pass, never per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from webapp.db.models import Task
from webapp.db.models import db
from webapp.domain import TaskState
from webapp.listing.backends import backend
from webapp.listing.columns import TYPE_KEY

PERCENTILE = 0.95
MARGIN = 1.5
MIN_HISTORY = 20
MIN_BOUND_SECONDS = 60.0
LEARN_EVERY_SECONDS = 600.0
HISTORY_DAYS = 30
HISTORY_ROWS = 50_000
#: The states of tasks that did their work: their durations say how long the work takes.
COUNTED_STATES = (TaskState.SUCCEEDED.value, TaskState.PARTIAL.value)

EXTENSION_KEY = "taskdeck.overdue_history"


@dataclass(frozen=True)
class Learned:
    """What history says about one (source, type)."""

    count: int
    #: The median duration, in seconds: "usual".
    typical: float
    #: The :data:`PERCENTILE` duration, in seconds.
    high: float

    @property
    def bound(self) -> float:
        return max(MIN_BOUND_SECONDS, self.high * MARGIN)


def bucket_range(digits: int, lead: int) -> tuple[float, float]:
    """The seconds a histogram bucket covers: ``digits`` digits, starting with ``lead``."""
    if digits <= 1:
        return float(lead), float(lead + 1)
    scale = 10.0 ** (digits - 2)
    return lead * scale, (lead + 1) * scale


def summarize(buckets: list[tuple[int, int, int]]) -> Learned | None:
    """``(digits, lead, count)`` buckets of one (source, type) as a :class:`Learned`, or
    ``None`` with fewer than :data:`MIN_HISTORY` tasks."""
    ranges = sorted((bucket_range(d, lead), n) for d, lead, n in buckets)
    total = sum(n for _, n in ranges)
    if total < MIN_HISTORY:
        return None
    typical = high = None
    seen = 0
    for (low, up), n in ranges:
        seen += n
        if typical is None and seen >= total * 0.5:
            typical = max(0.5, (low + up) / 2)
        if seen >= total * PERCENTILE:
            high = up
            break
    assert typical is not None and high is not None
    return Learned(total, typical, high)


def histogram_query(now: datetime) -> sa.Select[Any]:
    """Durations of recent finished tasks, bucketed by (source, type, digits, two leading
    digits)."""
    db_backend = backend()
    seconds = db_backend.epoch_seconds(Task.finished_at) - db_backend.epoch_seconds(Task.sort_at)
    since = now - timedelta(days=HISTORY_DAYS)
    recent = [
        sa.select(Task.source, TYPE_KEY.label("task_type"), seconds.label("seconds"))
        .where(
            Task.state == state,
            Task.sort_at >= since,
            Task.finished_at.is_not(None),
            Task.finished_at >= Task.sort_at,
            # First seen already finished, with no upstream times: no duration to learn from.
            sa.or_(Task.created_at.is_not(None), Task.finished_at > Task.first_seen_at),
        )
        .order_by(Task.sort_at.desc(), Task.id.desc())
        .limit(HISTORY_ROWS)
        .subquery()
        for state in COUNTED_STATES
    ]
    rows = sa.union_all(*(sa.select(part) for part in recent)).subquery()
    text = sa.cast(sa.cast(sa.func.round(rows.c.seconds), sa.BigInteger), sa.Text)
    # Constants inline, so the grouped expressions are the very ones selected (PostgreSQL
    # compares them as text, and bound parameters would differ).
    digits = sa.func.length(text)
    lead = sa.cast(sa.func.substr(text, sa.literal_column("1"), sa.literal_column("2")), sa.Integer)
    return sa.select(rows.c.source, rows.c.task_type, digits, lead, sa.func.count()).group_by(
        rows.c.source, rows.c.task_type, digits, lead
    )


def learn(now: datetime) -> dict[tuple[str, str], Learned]:
    """Bounds for every (source, type) with enough recent history (type ``""`` for tasks
    without one)."""
    grouped: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for source, task_type, digits, lead, n in db.session.execute(histogram_query(now)):
        if digits is None or lead is None:
            continue
        grouped.setdefault((source, task_type or ""), []).append((int(digits), int(lead), n))
    found = {}
    for key, buckets in grouped.items():
        learned = summarize(buckets)
        if learned is not None:
            found[key] = learned
    return found


class History:
    """One process's learned bounds, recomputed at most every :data:`LEARN_EVERY_SECONDS`."""

    def __init__(self) -> None:
        self.bounds: dict[tuple[str, str], Learned] = {}
        self.learned_at: float | None = None
        self._lock = threading.Lock()

    def get(self, source: str, task_type: str | None) -> Learned | None:
        return self.bounds.get((source, task_type or ""))

    def refresh_if_due(self, now: datetime, *, force: bool = False) -> None:
        """Recompute when the last computation is old (needs an app context); ``now`` ends
        the window of history."""
        with self._lock:
            due = (
                force
                or self.learned_at is None
                or time.monotonic() - self.learned_at >= LEARN_EVERY_SECONDS
            )
            if due:
                self.bounds = learn(now)
                self.learned_at = time.monotonic()


def history(app: Flask) -> History:
    """The app's learned bounds (made on first use)."""
    found = app.extensions.get(EXTENSION_KEY)
    if found is None:
        found = app.extensions.setdefault(EXTENSION_KEY, History())
    assert isinstance(found, History)
    return found

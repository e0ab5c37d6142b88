"""A source's health as every worker sees it: the counters and circuit on its ``sources`` row,
the probe that tests an open circuit, and source-wide pauses (a 429's ``Retry-After``, an
exhausted Mixpeek budget, bad credentials).

The row is the shared truth: each worker reads ``blocked_until`` before it claims (see
:class:`webapp.refresher.lanes.SourceLane`) and records each job's outcome on it, under a row
lock, so concurrent jobs add up.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa

from webapp.config import SourceConfig
from webapp.db.models import Source
from webapp.db.models import db
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.providers.base import Provider
from webapp.refresher.jobs import Outcome
from webapp.refresher.scheduling import circuit_delay

log = logging.getLogger(__name__)

#: Kinds of failure that say something about the source rather than one task.
SOURCE_FAILURES = frozenset(
    {FetchErrorKind.UPSTREAM_ERROR, FetchErrorKind.TIMEOUT, FetchErrorKind.NETWORK}
)
AUTH_FAILURES = frozenset({FetchErrorKind.UNAUTHORIZED, FetchErrorKind.FORBIDDEN})


def rate_limit_wait(failures: list[FetchError], provider: Provider, now: datetime) -> float:
    """Seconds the whole source must wait after a job: a 429's ``Retry-After``, or until
    Mixpeek's budget resets once its ``X-RateLimit-Remaining`` reached 0 (0: no wait)."""
    wait_seconds = 0.0
    for failure in failures:
        if failure.kind is FetchErrorKind.RATE_LIMITED:
            wait_seconds = max(wait_seconds, failure.retry_after or 0.0, 1.0)
    reading = getattr(provider, "rate_limit_state", None)
    if reading is not None and reading.exhausted:
        # Waiting for the reset beats collecting 429s; capped by the window in case the
        # upstream's clock and ours disagree.
        until_reset = reading.seconds_until_reset(now) or 0.0
        wait_seconds = max(wait_seconds, min(until_reset, reading.window or 60.0))
    return wait_seconds


def take_probe(source: SourceConfig, now: datetime) -> bool:
    """Whether this worker may probe a source whose circuit is open (one worker at a time).

    Whoever moves ``blocked_until`` forward first owns the probe; its result reopens or
    closes the circuit, and if it never comes (a crash) the hold simply runs out.
    """
    hold = now + timedelta(seconds=source.timeout * 2 + 5)
    taken = db.session.execute(  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        sa.update(Source)
        .where(
            Source.name == source.name,
            Source.circuit != "closed",
            sa.or_(Source.blocked_until.is_(None), Source.blocked_until <= now),
        )
        .values(blocked_until=hold)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return taken == 1


def lock_source_row(name: str) -> Source | None:
    """The source's row, re-read and locked until the commit.

    FOR NO KEY UPDATE on PostgreSQL: writing tasks may take KEY SHARE locks on this row (the
    foreign key), which a plain FOR UPDATE would have to wait out.
    """
    return db.session.get(Source, name, with_for_update={"key_share": True}, populate_existing=True)


def record_health(
    row: Source,
    outcome: Outcome,
    *,
    now: datetime,
    provider: Provider,
    rng: random.Random,
) -> None:
    """Health counters, the circuit breaker, and source-wide pauses after one job. ``row`` is
    locked (:func:`lock_source_row`)."""
    ok, failures, probe = outcome.ok, outcome.failures, outcome.probe
    counted = [f for f in failures if f.kind in SOURCE_FAILURES | AUTH_FAILURES]
    row.requests_total += ok + len(failures)
    row.failures_total += len(counted)
    if ok:
        row.last_success_at = now
    if counted:
        row.last_failure_at = now
        row.last_error = counted[-1].describe()
        row.last_error_kind = counted[-1].kind.value

    def pause(seconds: float) -> None:
        until = now + timedelta(seconds=seconds)
        if row.blocked_until is None or row.blocked_until < until:
            row.blocked_until = until

    if any(f.kind in AUTH_FAILURES for f in counted) and not ok:
        if row.circuit != "unauthorized":
            log.warning("source %s: %s; pausing it", row.name, counted[-1].describe())
        row.circuit = "unauthorized"
        pause(outcome.lane.policy.auth_retry)
    elif ok and not counted:
        if row.circuit != "closed":
            log.info("source %s: healthy again", row.name)
            row.circuit = "closed"
            row.blocked_until = None  # the probe's hold, or a wait that is over
        row.consecutive_failures = 0
    elif counted and not ok and (row.circuit == "closed" or probe):
        # Jobs already in flight when the circuit opened say nothing new: only a failed
        # probe makes the next wait longer.
        row.consecutive_failures += 1
        delay = circuit_delay(row.consecutive_failures, rng)
        if delay is not None:
            if row.circuit != "open":
                log.warning(
                    "source %s: circuit open after %s failures in a row",
                    row.name,
                    row.consecutive_failures,
                )
            row.circuit = "open"
            row.blocked_until = None  # replaces a probe's hold
            pause(delay)

    wait_seconds = rate_limit_wait(failures, provider, now)
    if wait_seconds:
        pause(wait_seconds)

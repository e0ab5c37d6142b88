"""When to fetch a task next: pure functions of what the last fetch showed.

Active tasks are polled at their source's interval, backing off while nothing changes and
snapping back on a change. A task that reaches a terminal state is fetched once more after a
short grace period (upstreams sometimes correct a final state), then never again. Words we do
not know back off long. Failures back off exponentially with jitter; a rate limit waits as long
as the upstream asks; a source that keeps failing is left alone for longer and longer.

Back-off only pays where a task costs its own request. Where the upstream answers many tasks in
one call (:func:`make_policy` with ``batched``), a task rides along in a call that is made
anyway, so backing it off would save nothing and only delay what people see. Those sources keep
active tasks at the interval instead, and round each next poll up to a short grid so that tasks
tracked at different moments fall due together and share a call: a task is never polled more
often than the interval, and at most ``align_seconds`` later. A batched source that also has a
tight request budget (NCLUE's 1 request/s) goes one step further: its tasks are polled on the
interval's own beat (every multiple of it), so all of them share one round of calls per
interval; a task's first poll after it was tracked or forced comes at the next beat.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.providers.source import SourceSettings


@dataclass(frozen=True)
class PollPolicy:
    """Timings for one source, in seconds."""

    poll_interval: float
    #: Each unchanged poll multiplies the wait by this much...
    backoff_factor: float = 1.5
    #: ...up to this many poll intervals.
    max_backoff_intervals: float = 6.0
    #: Round successful polls' next times up to a multiple of this (0: off), for batching.
    align_seconds: float = 0.0
    #: Poll on the interval's beat: the next multiple of the interval after the fetch.
    on_beat: bool = False
    #: The confirming fetch after a terminal state.
    terminal_grace: float = 10.0
    #: ``unknown`` words: start this many intervals apart, then back off to ``unknown_cap``.
    unknown_intervals: float = 12.0
    unknown_cap: float = 1800.0
    #: Transient failures (5xx, timeouts, network, odd payloads) back off to this cap.
    error_cap: float = 300.0
    #: Unauthorized/forbidden: the source is probed again after this long.
    auth_retry: float = 300.0
    #: A task gone upstream (seen, then "not found") is checked this rarely.
    gone_interval: float = 3600.0

    @property
    def max_backoff(self) -> float:
        return self.poll_interval * self.max_backoff_intervals


def make_policy(
    poll_interval: float, *, batched: bool = False, rate_limited: bool = False
) -> PollPolicy:
    """A source's policy: back-off where each task costs its own request (see module doc)."""
    if batched and rate_limited:
        return PollPolicy(poll_interval, max_backoff_intervals=1.0, on_beat=True)
    if batched:
        # A grid of a quarter interval (at most 1 s): at most four groups a source per
        # interval, and a change still shows within the interval plus a second.
        return PollPolicy(
            poll_interval,
            max_backoff_intervals=1.0,
            align_seconds=min(1.0, poll_interval / 4),
        )
    return PollPolicy(poll_interval)


def policy_for(source: SourceSettings) -> PollPolicy:
    """A source's policy (the refresher's lanes, and the importer for a first schedule)."""
    return make_policy(
        source.poll_interval,
        batched=PROVIDERS[source.provider].batch_size > 1,
        rate_limited=source.effective_rate_limit is not None,
    )


def align_up(when: datetime, seconds: float) -> datetime:
    """``when`` rounded up to the next multiple of ``seconds`` since the epoch."""
    if seconds <= 0:
        return when
    stamp = when.timestamp()
    return datetime.fromtimestamp(math.ceil(stamp / seconds) * seconds, tz=UTC)


def after_success(
    policy: PollPolicy,
    *,
    state: TaskState,
    terminal: bool,
    changed: bool,
    unchanged_polls: int,
    now: datetime,
) -> tuple[datetime | None, int]:
    """``(next_poll_at, unchanged_polls)`` after a successful fetch; ``None``: stop polling."""
    if terminal:
        if changed:
            return now + timedelta(seconds=policy.terminal_grace), 0
        return None, unchanged_polls + 1
    unchanged = 0 if changed else unchanged_polls + 1
    if state is TaskState.UNKNOWN:
        # A word that is not a task-progress state (or is new to us) rarely moves on.
        delay = min(
            policy.poll_interval * policy.unknown_intervals * (2 ** min(unchanged, 10)),
            policy.unknown_cap,
        )
        return now + timedelta(seconds=delay), unchanged
    if policy.on_beat:
        return align_up(now + timedelta(microseconds=1), policy.poll_interval), unchanged
    delay = min(policy.poll_interval * policy.backoff_factor**unchanged, policy.max_backoff)
    due = now + timedelta(seconds=max(delay, policy.poll_interval))
    return align_up(due, policy.align_seconds), unchanged


def after_failure(
    policy: PollPolicy,
    *,
    kind: FetchErrorKind,
    failed_polls: int,
    retry_after: float | None,
    gone_upstream: bool,
    now: datetime,
    rng: random.Random | None = None,
) -> datetime:
    """When to try a task again after a failed fetch (``failed_polls`` counts this one)."""
    jitter = rng.uniform if rng is not None else random.uniform
    if kind is FetchErrorKind.RATE_LIMITED:
        delay = max(retry_after or 0.0, policy.poll_interval)
    elif kind in (FetchErrorKind.UNAUTHORIZED, FetchErrorKind.FORBIDDEN):
        delay = policy.auth_retry
    elif kind is FetchErrorKind.NOT_FOUND and gone_upstream:
        delay = policy.gone_interval
    else:
        # Exponential with "equal jitter": never less than half the step, never in lock-step.
        step = min(policy.poll_interval * 2 ** min(failed_polls, 16), policy.error_cap)
        delay = step / 2 + jitter(0, step / 2)
    return now + timedelta(seconds=delay)


#: Failing fetches in a row (source-level: 5xx, timeouts, network) that open a circuit.
CIRCUIT_THRESHOLD = 5
#: First and longest wait before a source whose circuit is open is probed again.
CIRCUIT_BASE_SECONDS = 15.0
CIRCUIT_MAX_SECONDS = 300.0


def circuit_delay(consecutive_failures: int, rng: random.Random | None = None) -> float | None:
    """Seconds to leave a failing source alone, or ``None`` while its circuit stays closed.

    Doubles with each failed probe up to :data:`CIRCUIT_MAX_SECONDS`, with +-25% jitter so
    several workers do not probe in step.
    """
    if consecutive_failures < CIRCUIT_THRESHOLD:
        return None
    draw = rng.random() if rng is not None else random.random()
    opened = min(consecutive_failures - CIRCUIT_THRESHOLD, 16)
    delay = min(CIRCUIT_BASE_SECONDS * 2**opened, CIRCUIT_MAX_SECONDS)
    return delay * (0.75 + draw / 2)

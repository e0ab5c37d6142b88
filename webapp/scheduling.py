"""When to fetch a task next: pure functions of what the last fetch showed.

Active tasks are polled at their source's interval, backing off while nothing changes and
snapping back on a change. A task that reaches a terminal state is fetched once more after a
short grace period (upstreams sometimes correct a final state), then never again. Failures back
off exponentially with jitter; a rate limit waits as long as the upstream asks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from webapp.providers.base import FetchErrorKind
from webapp.providers.base import TaskState


@dataclass(frozen=True)
class PollPolicy:
    """Timings for one source, in seconds."""

    poll_interval: float
    #: Each unchanged poll multiplies the wait by this much...
    backoff_factor: float = 1.5
    #: ...up to this many poll intervals.
    max_backoff_intervals: float = 6.0
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
        delay = min(
            policy.poll_interval * policy.unknown_intervals * (2 ** min(unchanged, 10)),
            policy.unknown_cap,
        )
        return now + timedelta(seconds=delay), unchanged
    delay = min(policy.poll_interval * policy.backoff_factor**unchanged, policy.max_backoff)
    return now + timedelta(seconds=max(delay, policy.poll_interval)), unchanged


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
    rng = rng or random
    if kind is FetchErrorKind.RATE_LIMITED:
        delay = max(retry_after or 0.0, policy.poll_interval)
    elif kind in (FetchErrorKind.UNAUTHORIZED, FetchErrorKind.FORBIDDEN):
        delay = policy.auth_retry
    elif kind is FetchErrorKind.NOT_FOUND and gone_upstream:
        delay = policy.gone_interval
    else:
        # Exponential with "equal jitter": never less than half the step, never in lock-step.
        step = min(policy.poll_interval * 2 ** min(failed_polls, 16), policy.error_cap)
        delay = step / 2 + rng.uniform(0, step / 2)
    return now + timedelta(seconds=delay)

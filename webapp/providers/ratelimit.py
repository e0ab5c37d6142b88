"""Per-source request budgets: a token bucket that every real request to an upstream passes.

There is one owner of a source's rate limit: the provider layer. :meth:`Provider.request
<webapp.providers.base.Provider.request>` takes a token from :func:`limiter_for` before each
request it sends, because only the provider knows how many requests an operation really costs
(NCLUE pages its list, Conductor falls back to GETs, OpenSearch re-reads batch-prediction tasks)
and because everything that talks to a source (the refresher, ``taskdeck import``) must share the
one budget. The refresher does not limit on its own, so nothing is counted twice; it only sizes a
source's concurrency to the rate, so its threads do not sit queued behind the bucket.

In the app the budget is kept in the database (:class:`webapp.db.rate_slots.DatabaseLimiter`,
one row per source reserved with one atomic statement), so it holds for the sum of every
process that shares the database: web processes, workers, ``taskdeck track`` and ``import``.
The in-process :class:`TokenBucket` here serves providers built without a database (unit
tests, scripts). An upstream that still says 429 pauses the source for every worker
(``Source.blocked_until``).

An upstream may also say how much of its own budget is left (``X-RateLimit-*`` headers, read
into :class:`RateLimitState`); a provider that reads them offers the latest reading as its
``rate_limit_state``, and the refresher holds off while it is exhausted.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Protocol

import httpx

from webapp.providers.payload import tolerant_float
from webapp.providers.source import SourceSettings


class WaitTooLong(Exception):
    """The next free slot is further away than the caller is willing to wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"next request slot in {wait:.1f} s")
        self.wait = wait


class Limiter(Protocol):
    """A source's request budget: what :meth:`Provider.request` asks before each request."""

    def reserve(self, max_wait: float = math.inf) -> float: ...

    def acquire(self, max_wait: float = math.inf) -> float: ...


class TokenBucket:
    """``rate`` requests a second with bursts of at most ``burst``; ``rate=None``: no limit.

    Kept as a "theoretical arrival time" (GCRA), which is a token bucket without a refill
    thread: each caller reserves the next slot under the lock and sleeps outside it, so
    concurrent callers queue up one interval apart and idle time never banks more than
    ``burst`` requests. The default burst of 1 spaces requests evenly, which is what an upstream
    that counts requests per second (NCLUE's gateway) needs.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        self.rate = rate
        self.burst = max(1.0, burst)
        self.interval = 1.0 / rate if rate else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next_free = -math.inf
        self._lock = threading.Lock()

    def reserve(self, max_wait: float = math.inf) -> float:
        """Take the next slot: the seconds to wait before using it (nothing reserved on refusal).

        Raises :class:`WaitTooLong` when that wait would exceed ``max_wait``.
        """
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._monotonic()
            arrival = max(self._next_free, now)
            wait = max(0.0, arrival - (self.burst - 1) * self.interval - now)
            if wait > max_wait:
                raise WaitTooLong(wait)
            self._next_free = arrival + self.interval
        return wait

    def acquire(self, max_wait: float = math.inf) -> float:
        """Wait for a slot; returns the seconds waited."""
        wait = self.reserve(max_wait)
        if wait > 0:
            self._sleep(wait)
        return wait


_BUCKETS: dict[tuple[str, str], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def limiter_for(source: SourceSettings) -> TokenBucket:
    """The bucket shared by every provider object of one source in this process."""
    key = (source.name, source.base_url)
    rate = source.effective_rate_limit
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = _BUCKETS[key] = TokenBucket(rate)
        return bucket


# -- what an upstream says of its own budget ------------------------------------------------


@dataclass(frozen=True)
class RateLimitState:
    """What the last answer's ``X-RateLimit-*`` headers said (per API key, token bucket).

    ``limit`` requests per ``window`` seconds; ``remaining`` left now; the bucket is full again
    at ``reset_at`` (``X-RateLimit-Reset`` is Unix seconds). ``observed_at`` is when we read it.
    """

    limit: int | None
    remaining: int | None
    reset_at: datetime | None
    window: float | None
    observed_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def seconds_until_reset(self, now: datetime | None = None) -> float | None:
        """How long until ``reset_at`` (0 once it has passed); ``None`` when not reported."""
        if self.reset_at is None:
            return None
        now = now or datetime.now(UTC)
        return max(0.0, (self.reset_at - now).total_seconds())


def parse_rate_limit(headers: httpx.Headers, now: datetime | None = None) -> RateLimitState | None:
    """The ``X-RateLimit-*`` headers of one answer; ``None`` when it carries none."""
    limit = _header_int(headers.get("X-RateLimit-Limit"))
    remaining = _header_int(headers.get("X-RateLimit-Remaining"))
    reset = tolerant_float(headers.get("X-RateLimit-Reset"))
    window = tolerant_float(headers.get("X-RateLimit-Window"))
    if limit is None and remaining is None and reset is None:
        return None
    reset_at: datetime | None = None
    if reset is not None:
        try:
            reset_at = datetime.fromtimestamp(reset, tz=UTC)
        except (OverflowError, OSError, ValueError):
            reset_at = None
    return RateLimitState(limit, remaining, reset_at, window, now or datetime.now(UTC))


def _header_int(value: str | None) -> int | None:
    number = tolerant_float(value)
    return int(number) if number is not None and number.is_integer() else None

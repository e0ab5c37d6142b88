"""The per-key token bucket behind the Mixpeek simulator's ``X-RateLimit-*`` headers and 429s
(``operations/rate-limits-quotas.mdx``: a token bucket per API key)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


def window_text(window: float) -> str:
    """``details.window`` as the docs write it (``"1m"``), in seconds when not whole minutes."""
    if window >= 60 and window % 60 == 0:
        return f"{int(window // 60)}m"
    return f"{window:g}s"


_EPSILON = 1e-9


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """One bucket per API key: ``limit`` tokens, refilled at ``limit / window`` per second.

    Runs on the simulator clock, so a test empties it and advances the clock to refill it.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._rate = limit / window
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> tuple[bool, dict[str, str], int]:
        """Spend one token: (allowed, X-RateLimit-* headers, seconds until a token is back)."""
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.limit), now))
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.limit), bucket.tokens + elapsed * self._rate)
            bucket.updated = now
            # A hair of slack so float refill (19 x 0.05 + 0.05) does not miss a whole token.
            allowed = bucket.tokens >= 1.0 - _EPSILON
            if allowed:
                bucket.tokens = max(0.0, bucket.tokens - 1.0)
            missing = max(0.0, 1.0 - bucket.tokens)
            retry_after = 0 if allowed else max(1, math.ceil(missing / self._rate - _EPSILON))
            full_at = now + (self.limit - bucket.tokens) / self._rate
            headers = {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(int(bucket.tokens + _EPSILON)),
                "X-RateLimit-Reset": str(math.ceil(full_at)),
                "X-RateLimit-Window": f"{self.window:g}",
            }
            return allowed, headers, retry_after

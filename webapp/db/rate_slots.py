"""One request budget per source for every process that shares the database.

A source's ``rate_limit`` (NCLUE's gateway: 1 request/s per access key) must hold for the sum
of the web processes, the ``taskdeck worker`` processes and any ``taskdeck track`` or ``import``
run beside them. Each source has a row in ``rate_slots`` holding the time its next request may
go (a "theoretical arrival time", as :class:`webapp.providers.ratelimit.TokenBucket` keeps in
memory). Taking a slot is one atomic upsert that moves that time one interval on and returns
it, so two processes can never take the same slot; the caller then sleeps until its slot,
outside any transaction. A slot further away than the caller will wait is not taken.

Slots are a little more than one interval apart (:data:`MARGIN`): a request reaches the
upstream some milliseconds after its slot (waking up, signing, connecting), a different few
each time, so two requests sent exactly one interval apart can arrive closer than that and count
twice in one of the upstream's windows. NCLUE's gateway answers that with a 429; on a busy
machine the spread between processes reaches tens of milliseconds.

Times are Unix seconds. SQLite's processes share one machine and its clock; on PostgreSQL the
statement reads the database server's clock, so workers on several machines agree even when
their own clocks drift.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from webapp.providers.ratelimit import WaitTooLong

#: Slots are spaced this fraction of an interval further apart than the rate says...
MARGIN = 0.1
#: ...but never more than this many seconds further (a slow rate needs no larger guard).
MAX_MARGIN_SECONDS = 0.1

#: SQLite: the machine's clock (Unix seconds, to the millisecond), read by the statement itself
#: once it holds the write lock (it is the same for the whole statement): a time read before
#: waiting for the lock would be stale by then, and every slot taken from it too early.
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_SQLITE_TAKE = sa.text(
    f"INSERT INTO rate_slots (source, next_free) VALUES (:source, {_SQLITE_NOW} + :interval) "
    f"ON CONFLICT (source) DO UPDATE SET next_free = MAX(next_free, {_SQLITE_NOW}) + :interval "
    f"WHERE MAX(rate_slots.next_free, {_SQLITE_NOW}) - {_SQLITE_NOW} <= :max_wait "
    f"RETURNING next_free - :interval - {_SQLITE_NOW}"
)
_SQLITE_PEEK = sa.text(
    f"SELECT MAX(next_free, {_SQLITE_NOW}) - {_SQLITE_NOW} FROM rate_slots WHERE source = :source"
)
#: PostgreSQL: the server's clock, so every machine's workers agree; ``clock_timestamp()`` is
#: read as the statement runs, after the row lock is ours.
_PG_NOW = "extract(epoch from clock_timestamp())"
_PG_TAKE = sa.text(
    f"INSERT INTO rate_slots (source, next_free) VALUES (:source, {_PG_NOW} + :interval) "
    f"ON CONFLICT (source) DO UPDATE SET next_free = "
    f"GREATEST(rate_slots.next_free, {_PG_NOW}) + :interval "
    f"WHERE GREATEST(rate_slots.next_free, {_PG_NOW}) - {_PG_NOW} <= :max_wait "
    f"RETURNING next_free - :interval - {_PG_NOW}"
)
_PG_PEEK = sa.text(
    f"SELECT GREATEST(next_free, {_PG_NOW}) - {_PG_NOW} FROM rate_slots WHERE source = :source"
)


class DatabaseLimiter:
    """``rate`` requests a second for one source, across every process on the database."""

    def __init__(
        self,
        engine: Callable[[], sa.Engine],
        source: str,
        rate: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._engine = engine
        self.source = source
        self.rate = rate
        self.interval = 1.0 / rate + min(MARGIN / rate, MAX_MARGIN_SECONDS)
        self._sleep = sleep
        self._lock = threading.Lock()

    def reserve(self, max_wait: float = math.inf) -> float:
        """Take the next slot; the seconds to wait before using it. Raises :class:`WaitTooLong`
        (taking nothing) when the next slot is further away than ``max_wait``."""
        engine = self._engine()
        postgres = engine.dialect.name == "postgresql"
        params = {
            "source": self.source,
            "interval": self.interval,
            "max_wait": max_wait if math.isfinite(max_wait) else 1e12,
        }
        # One statement at a time per process: SQLite would make this process's own threads
        # queue on its write lock anyway, and the lock keeps them from retrying in a herd.
        with self._lock, engine.begin() as connection:
            wait = connection.execute(_PG_TAKE if postgres else _SQLITE_TAKE, params).scalar()
            answered = time.monotonic()
            if wait is None:
                ahead = connection.execute(_PG_PEEK if postgres else _SQLITE_PEEK, params).scalar()
                raise WaitTooLong(float(ahead or 0.0))
        # The wait was measured when the statement ran: the commit since then is part of it.
        return max(0.0, float(wait) - (time.monotonic() - answered))

    def acquire(self, max_wait: float = math.inf) -> float:
        """Wait for a slot; returns the seconds waited."""
        wait = self.reserve(max_wait)
        if wait > 0:
            self._sleep(wait)
        return wait

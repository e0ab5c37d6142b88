"""Per source, a *lane*: its own thread pool and what this process knows about the source.

A lane holds how many jobs the source has under way here, whether it is paused (a mirror of
``Source.blocked_until``, which every worker reads and writes), and whether batching pays.
Limits: ``max_concurrency`` requests at once (per process), and the source's rate limit, which
the provider layer applies to every real request (webapp/providers/ratelimit.py explains why
there and only there). A slow or dead source only ever holds up its own lane.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import timedelta

from webapp.config import SourceConfig
from webapp.refresher.scheduling import policy_for

log = logging.getLogger(__name__)

#: After this many batches in a row cost more calls than one GET per task would have (Conductor
#: without a search index answers each batch with a search plus the GETs), a source fetches per
#: task for BATCHING_OFF_SECONDS. One such batch proves nothing: a failed search falls back too.
BATCHING_MISSES = 3
BATCHING_OFF_SECONDS = 600.0


class SourceLane:
    """One source's own executor and queue depth, and what this process knows of its health."""

    def __init__(self, source: SourceConfig, batch_size: int) -> None:
        self.source = source
        self.batch_size = max(1, batch_size)
        self.policy = policy_for(source)
        rate = source.effective_rate_limit
        # Under a rate limit, more parallel requests than the rate lets through a second would
        # only queue behind the provider's bucket while their leases age.
        self.concurrency = (
            max(1, min(source.max_concurrency, math.floor(rate)))
            if rate
            else source.max_concurrency
        )
        # Jobs queued behind the running ones keep the threads busy between passes, and a pass
        # claims once twice the running jobs have drained: a pass costs a few queries whether it
        # claims 8 tasks or 32 (fetched a GET each, half the passes saved 10% of the CPU).
        self.depth = self.concurrency if rate else 4 * self.concurrency
        self.executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix=f"refresh-{source.name}"
        )
        self.lock = threading.Lock()
        #: Jobs claimed and not yet written (fetching, queued, or waiting for the writer).
        self.in_flight = 0
        #: The last claim filled the lane: more is due, so a finished job should wake the loop.
        self.backlog = False
        #: ``Source.blocked_until`` as last read or written by this process.
        self.paused_until: datetime | None = None
        self.batching_misses = 0
        self.batching_off_until: datetime | None = None

    def room(self) -> int:
        with self.lock:
            return self.depth - self.in_flight

    def wants_refill(self) -> bool:
        """Claim again once half the queue has drained, not for every finished job."""
        return self.room() >= max(1, self.depth // 2)

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def pause_until(self, until: datetime) -> None:
        if self.paused_until is None or self.paused_until < until:
            self.paused_until = until

    def batch(self, now: datetime) -> int:
        if self.batching_off_until is not None and self.batching_off_until > now:
            return 1
        return self.batch_size

    def weigh_batch(self, size: int, calls: int, now: datetime) -> None:
        """Stop batching a source whose batches keep costing more than single fetches."""
        self.batching_misses = self.batching_misses + 1 if calls > size else 0
        if self.batching_misses >= BATCHING_MISSES:
            self.batching_misses = 0
            self.batching_off_until = now + timedelta(seconds=BATCHING_OFF_SECONDS)
            log.info(
                "source %s: batches cost more calls than single fetches; "
                "fetching per task for %.0f s",
                self.source.name,
                BATCHING_OFF_SECONDS,
            )

    def shutdown(self, wait_for_jobs: bool = True) -> None:
        self.executor.shutdown(wait=wait_for_jobs, cancel_futures=True)

"""The refresher: the only part of Taskdeck that talks to upstreams while people watch.

Each pass claims due tasks with a lease (:mod:`~webapp.refresher.claims`: any number of workers
and app processes can run against one database without fetching a task twice), fetches them
through each source's own small thread pool (:mod:`~webapp.refresher.lanes`: a slow or dead
source only ever holds up itself), and hands the results to one writer thread
(:mod:`~webapp.refresher.writer`), which records them and the source's health
(:mod:`~webapp.refresher.health`). Views never call it.

Crash safety comes from the database: a result and its event commit together or not at all, and
a task whose worker died is due again once its lease runs out (``LEASE_SECONDS``).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from webapp.config import SourceConfig
from webapp.db.models import Source
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.follows.runner import FollowRunner
from webapp.links.linking import LinkPass
from webapp.links.linking import LinkReport
from webapp.notify.sending import DeliverySender
from webapp.overdue.marking import OverduePass
from webapp.refresher.claims import claims_for
from webapp.refresher.health import rate_limit_wait
from webapp.refresher.health import take_probe
from webapp.refresher.jobs import Chunk
from webapp.refresher.jobs import Outcome
from webapp.refresher.jobs import PassReport
from webapp.refresher.jobs import fetch_chunk
from webapp.refresher.lanes import SourceLane
from webapp.refresher.retention import Retention
from webapp.refresher.writer import ResultWriter
from webapp.sources.registry import SourceRegistry
from webapp.sources.registry import registry

log = logging.getLogger(__name__)

#: Shortest gap between passes when a lane with a backlog wakes the loop early.
MIN_PASS_GAP = 0.05


class Refresher:
    """Claims due tasks, fetches them per source, writes the results."""

    def __init__(
        self,
        app: Flask,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        lease_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self.clock = clock
        self.rng = rng or random.Random()
        with app.app_context():
            self.claims = claims_for(
                db.engine, self.owner, lease_seconds or app.config.get("LEASE_SECONDS")
            )
        self.writer = ResultWriter(app, self.claims, clock, self.rng)
        self.retention = Retention(app, clock, self.claims.writing)
        #: Alert and "notify me" deliveries go out from the refresher processes too, on a
        #: thread of their own so a slow receiver never holds up fetching.
        self.deliveries = DeliverySender(
            app, owner=self.owner, clock=clock, writing=self.claims.writing
        )
        self._sending: Future[int] | None = None
        self._sender_pool: ThreadPoolExecutor | None = None
        self.overdue = OverduePass(app, clock, self.claims.writing)
        #: Followed queries run on threads of their own (webapp/follows/runner.py).
        self.follows = FollowRunner(app, owner=self.owner, clock=clock, writing=self.claims.writing)
        #: Linked tasks are looked up on a thread of their own too: their requests wait for
        #: the sources' rate budgets (webapp.links).
        self.links = LinkPass(app, clock, self.claims.writing)
        self._linking: Future[LinkReport] | None = None
        self._links_pool: ThreadPoolExecutor | None = None
        self._lanes: dict[str, SourceLane] = {}
        self._lanes_lock = threading.Lock()
        self._wake = threading.Event()

    @property
    def registry(self) -> SourceRegistry:
        return registry(self.app)

    # -- passes -----------------------------------------------------------------------------
    def run_once(
        self, *, wait_for_results: bool = True, only_task_ids: list[int] | None = None
    ) -> PassReport:
        """Fetch what is due now.

        With ``wait_for_results`` (``--once``, ``track``, tests) round follows round until
        nothing that was due when the pass began is left, unless its source is paused, and the
        report covers it all. Without, one round is dispatched and the call returns at once
        (``run_forever``: results are written as they arrive).
        """
        cutoff = self.clock()
        if not wait_for_results:
            return self._dispatch(cutoff, only_task_ids)[0]
        report = PassReport()
        while True:
            claimed, futures = self._dispatch(cutoff, only_task_ids)
            report.merge(claimed)
            wait(futures)
            fetched = 0
            for future in futures:
                if future.cancelled():  # its lane was replaced (the source was edited)
                    continue
                job = future.result()
                fetched += job.fetched
                report.merge(job)
            # Every fetched task is now scheduled after the cutoff, so rounds end; a round that
            # fetched nothing (all deferred) would only repeat itself.
            if not fetched:
                return report

    def run_forever(self, stop: threading.Event, tick: float | None = None) -> None:
        """Pass after pass until ``stop`` is set; results are written as they arrive.

        Between passes it sleeps until the next task is due, at most ``tick`` seconds, and a
        lane that has more due than it could take wakes it as soon as it has room again.
        """
        tick = tick if tick is not None else float(self.app.config["REFRESH_TICK"])
        log.info("refresher %s started", self.owner)
        while not stop.is_set():
            started = time.monotonic()
            pause = tick
            try:
                self.run_once(wait_for_results=False)
                self.retention.purge_if_due()
                self.overdue.run_if_due()
                self.send_deliveries()
                self.follows.start_due()
                self.find_links()
                pause = self._until_next_due(tick)
            except Exception:  # noqa: BLE001 - one bad pass must not kill the loop
                if not threading.main_thread().is_alive():
                    # The interpreter is exiting under a daemon refresher (`taskdeck run`
                    # stopped): its thread pools refuse new work, so just stop.
                    return
                log.exception("refresher pass failed; carrying on")
            self._wake.wait(pause)
            self._wake.clear()
            # Woken early by a finished job: let a few more finish so claims stay batched.
            gap = MIN_PASS_GAP - (time.monotonic() - started)
            if gap > 0:
                stop.wait(gap)
        self.close()
        log.info("refresher %s stopped", self.owner)

    def send_deliveries(self) -> None:
        """Start sending due deliveries unless a send is still running (never waits)."""
        if self._sending is not None and not self._sending.done():
            return
        if not self.deliveries.anything_due():
            return
        if self._sender_pool is None:
            self.deliveries.stopping.clear()
            self._sender_pool = ThreadPoolExecutor(1, thread_name_prefix="deliveries")
        self._sending = self._sender_pool.submit(self.deliveries.send_all_due)

    def find_links(self) -> None:
        """Start the link pass when it is due, unless one is still running (never waits)."""
        if self._linking is not None and not self._linking.done():
            return
        if not self.links.is_due():
            return
        if self._links_pool is None:
            self._links_pool = ThreadPoolExecutor(1, thread_name_prefix="links")
        self._linking = self._links_pool.submit(self.links.run)
        self._linking.add_done_callback(self._links_done)

    def _links_done(self, done: Future[LinkReport]) -> None:
        if done.cancelled():
            return
        if done.exception() is not None:
            log.error("link pass failed; the next one carries on", exc_info=done.exception())
        elif done.result().tracked:
            self.wake()  # fetch the tasks it began to track now, not after the tick

    def wake(self) -> None:
        """Cut the current sleep short (a stop request, a test)."""
        self._wake.set()

    def close(self) -> None:
        """Finish running jobs, drop queued ones and give their tasks back (still due)."""
        with self._lanes_lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        self.follows.close()
        for lane in lanes:
            lane.shutdown()
        if self._sender_pool is not None:
            self.deliveries.stopping.set()
            self._sender_pool.shutdown(wait=True)  # a message in flight is recorded
            self._sender_pool = None
        if self._links_pool is not None:
            self._links_pool.shutdown(wait=True)
            self._links_pool = None
        self.writer.close()
        if not lanes:
            return
        try:
            with self.app.app_context(), self.claims.writing():
                self.claims.release()
        except sa.exc.SQLAlchemyError:
            log.warning("refresher %s: leases not given back; they will run out", self.owner)

    def _dispatch(
        self, cutoff: datetime, only: list[int] | None
    ) -> tuple[PassReport, list[Future[PassReport]]]:
        """One round: claim for every lane with room, and submit the jobs."""
        report = PassReport()
        futures: list[Future[PassReport]] = []
        with self.app.app_context():
            now = self.clock()
            rows = {row.name: row for row in db.session.scalars(sa.select(Source))}
            for source in self.registry:
                lane = self._lane(source)
                row = rows.get(source.name)
                lane.paused_until = row.blocked_until if row is not None else None
                if lane.is_paused(now):
                    report.skipped_sources.append(source.name)
                    continue
                if not lane.wants_refill() or not self.claims.anything_due(source, now, cutoff):
                    continue
                batch = lane.batch(now)
                limit = lane.room() * batch
                with self.claims.writing():
                    claim = self._claim(source, row, now, cutoff, limit, only)
                if claim is None:
                    continue
                claimed, probe = claim
                lane.backlog = len(claimed) >= limit
                report.claimed += len(claimed)
                for start in range(0, len(claimed), batch):
                    futures.append(self._submit(lane, claimed[start : start + batch], probe))
        return report, futures

    def _claim(
        self,
        source: SourceConfig,
        row: Source | None,
        now: datetime,
        cutoff: datetime,
        limit: int,
        only: list[int] | None,
    ) -> tuple[Chunk, bool] | None:
        """Lease up to ``limit`` due tasks of ``source``: ``(claimed, probe)``.

        A source whose circuit is open gets one probe task once its wait is over, and only one
        worker gets to send it (``None`` for the others).
        """
        probe = row is not None and row.circuit != "closed"
        if probe:
            if not take_probe(source, now):
                return None
            limit = 1
        return self.claims.claim(source, now, cutoff, limit, only), probe

    def _until_next_due(self, tick: float) -> float:
        """Seconds until the earliest scheduled task is due, between MIN_PASS_GAP and tick."""
        with self.app.app_context():
            now = self.clock()
            nearest = db.session.scalar(
                sa.select(sa.func.min(Task.next_poll_at)).where(Task.next_poll_at > now)
            )
        if nearest is None:
            return tick
        return min(tick, max(MIN_PASS_GAP, (nearest - now).total_seconds()))

    def _lane(self, source: SourceConfig) -> SourceLane:
        with self._lanes_lock:
            lane = self._lanes.get(source.name)
            if lane is None or lane.source != source:
                if lane is not None:
                    lane.shutdown(wait_for_jobs=False)
                batch_size = self.registry.provider(source.name).batch_size
                lane = SourceLane(source, batch_size)
                self._lanes[source.name] = lane
            return lane

    # -- jobs -------------------------------------------------------------------------------
    def _submit(self, lane: SourceLane, chunk: Chunk, probe: bool = False) -> Future[PassReport]:
        """Queue a fetch job; the returned future resolves once its results are written."""
        written: Future[PassReport] = Future()
        with lane.lock:
            lane.in_flight += 1

        def settled(f: Future[PassReport]) -> None:
            with lane.lock:
                lane.in_flight -= 1
            if not f.cancelled() and f.exception() is not None:
                # Its leases run out and another pass takes the tasks up again.
                log.error("source %s: refresh job failed", lane.source.name, exc_info=f.exception())
            if lane.backlog and lane.wants_refill():
                self._wake.set()

        def fetched(f: Future[None]) -> None:
            # A job that never ran (shut down) or broke before handing over settles here.
            if f.cancelled():
                written.cancel()
            elif f.exception() is not None and not written.done():
                written.set_exception(f.exception())

        written.add_done_callback(settled)
        lane.executor.submit(self._run_job, lane, chunk, probe, written).add_done_callback(fetched)
        return written

    def _run_job(
        self, lane: SourceLane, chunk: Chunk, probe: bool, written: Future[PassReport]
    ) -> None:
        """Fetch one chunk and hand the results to the writer; the thread never waits for the
        database, so it is free for the next request at once."""
        if lane.is_paused(self.clock()):
            # Paused after the claim (a 429, an exhausted budget, an opened circuit).
            with self.app.app_context(), self.claims.writing():
                self.claims.release([pk for pk, _ in chunk])
            written.set_result(PassReport(deferred=len(chunk)))
            return
        provider = self.registry.provider(lane.source.name)
        results, calls = fetch_chunk(provider, [task_id for _, task_id in chunk])
        now = self.clock()
        failures = [r for r in results.values() if isinstance(r, FetchError)]
        wait_seconds = rate_limit_wait(failures, provider, now)
        if wait_seconds:
            # Hold this process's other jobs at once; the writer records it for every worker.
            lane.pause_until(now + timedelta(seconds=wait_seconds))
        self.writer.put(Outcome(lane, chunk, results, calls, probe, written))

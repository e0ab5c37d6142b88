"""The refresher: the only part of Taskdeck that talks to upstreams while people watch.

Each pass claims due tasks with a lease (so any number of workers and app processes can run
against one database without fetching a task twice), fetches them through each source's own
small thread pool (so a slow or dead source only ever holds up itself), and hands the results
to one writer thread, which writes whatever has arrived in one transaction per source: each
task's state, next poll time and history event together, and only while the task's lease is
still ours. Views never call it.

Per source, a *lane* holds the thread pool and what this process knows about the source: how
many jobs it has under way, whether the source is paused (a mirror of ``Source.blocked_until``,
which every worker reads and writes), and whether batching pays. Limits: ``max_concurrency``
requests at once (per process), and the source's rate limit, which the provider layer applies
to every real request (webapp/ratelimit.py explains why there and only there).

Crash safety comes from the database: a result and its event commit together or not at all, and
a task whose worker died is due again once its lease runs out (``LEASE_SECONDS``).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait
from contextlib import AbstractContextManager
from contextlib import nullcontext
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

import httpx
import sqlalchemy as sa
from flask import Flask

from webapp.config import SourceConfig
from webapp.db.models import Source
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.db.store import apply_fetch
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.providers.base import Provider
from webapp.refresher.scheduling import PollPolicy
from webapp.refresher.scheduling import after_failure
from webapp.refresher.scheduling import after_success
from webapp.refresher.scheduling import circuit_delay
from webapp.refresher.scheduling import make_policy
from webapp.sources.registry import SourceRegistry
from webapp.sources.registry import registry

log = logging.getLogger(__name__)

#: Kinds of failure that say something about the source rather than one task.
SOURCE_FAILURES = frozenset(
    {FetchErrorKind.UPSTREAM_ERROR, FetchErrorKind.TIMEOUT, FetchErrorKind.NETWORK}
)
AUTH_FAILURES = frozenset({FetchErrorKind.UNAUTHORIZED, FetchErrorKind.FORBIDDEN})
#: After this many batches in a row cost more calls than one GET per task would have (Conductor
#: without a search index answers each batch with a search plus the GETs), a source fetches per
#: task for BATCHING_OFF_SECONDS. One such batch proves nothing: a failed search falls back too.
BATCHING_MISSES = 3
BATCHING_OFF_SECONDS = 600.0
#: Shortest gap between passes when a lane with a backlog wakes the loop early.
MIN_PASS_GAP = 0.05
#: How often the worker applies RETENTION_DAYS.
PURGE_EVERY_SECONDS = 3600.0


@dataclass
class PassReport:
    """What one refresher pass did (``taskdeck refresh --once`` prints it)."""

    claimed: int = 0
    fetched: int = 0
    changed: int = 0
    failed: int = 0
    #: Claimed, then given back unfetched because the source was paused meanwhile.
    deferred: int = 0
    skipped_sources: list[str] = field(default_factory=list)
    #: Real HTTP requests sent (token exchanges included), counted as httpx sends them.
    upstream_calls: int = 0

    def merge(self, other: PassReport) -> None:
        self.claimed += other.claimed
        self.fetched += other.fetched
        self.changed += other.changed
        self.failed += other.failed
        self.deferred += other.deferred
        self.upstream_calls += other.upstream_calls
        for name in other.skipped_sources:
            if name not in self.skipped_sources:
                self.skipped_sources.append(name)


def policy_for(source: SourceConfig) -> PollPolicy:
    """A source's polling policy (the importer uses it for the first schedule too)."""
    return make_policy(
        source.poll_interval,
        batched=PROVIDERS[source.provider].batch_size > 1,
        rate_limited=source.effective_rate_limit is not None,
    )


# -- counting real upstream calls ------------------------------------------------------------

_calls = threading.local()
_instrument_lock = threading.Lock()


def _count_request(request: httpx.Request) -> None:
    # httpx runs request hooks on the sending thread and a job runs on one thread, so this
    # counts exactly the job's requests, auth round trips included.
    _calls.count = getattr(_calls, "count", 0) + 1


def _instrument(provider: Provider) -> None:
    with _instrument_lock:
        hooks = provider.client.event_hooks["request"]
        if _count_request not in hooks:
            hooks.append(_count_request)


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


# -- lanes ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One job's fetch results on their way to the writer."""

    lane: SourceLane
    chunk: list[tuple[int, str]]
    results: dict[str, NormalizedTask | FetchError]
    calls: int
    probe: bool
    #: Resolved with the job's report once written.
    written: Future[PassReport]
    ok: int = 0
    failures: list[FetchError] = field(default_factory=list)


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
        # Jobs queued behind the running ones keep the threads busy between passes.
        self.depth = self.concurrency if rate else 2 * self.concurrency
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
        """Claim again once the queued half has drained, not for every finished job."""
        return self.room() >= max(1, self.depth - self.concurrency)

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def pause_until(self, until: datetime) -> None:
        if self.paused_until is None or self.paused_until < until:
            self.paused_until = until

    def batch(self, now: datetime) -> int:
        if self.batching_off_until is not None and self.batching_off_until > now:
            return 1
        return self.batch_size

    def shutdown(self, wait_for_jobs: bool = True) -> None:
        self.executor.shutdown(wait=wait_for_jobs, cancel_futures=True)


# -- the refresher -------------------------------------------------------------------------


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
        self.lease_seconds = lease_seconds or app.config.get("LEASE_SECONDS")
        self.rng = rng or random.Random()
        self._lanes: dict[str, SourceLane] = {}
        self._lanes_lock = threading.Lock()
        self._pending: set[Future[PassReport]] = set()
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._last_purge: float | None = None
        with app.app_context():
            self._sqlite = db.engine.dialect.name == "sqlite"
        self._sqlite_writer = threading.Lock()
        self._outcomes: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

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
                self._purge_if_due()
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

    def wake(self) -> None:
        """Cut the current sleep short (a stop request, a test)."""
        self._wake.set()

    def close(self) -> None:
        """Finish running jobs, drop queued ones and give their tasks back (still due)."""
        with self._lanes_lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.shutdown()
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._outcomes.put(None)
            writer.join()
        if not lanes:
            return
        try:
            with self.app.app_context(), self._writing():
                db.session.execute(
                    sa.update(Task)
                    .where(Task.lease_owner == self.owner)
                    .values(lease_owner=None, lease_until=None)
                    .execution_options(synchronize_session=False)
                )
                db.session.commit()
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
                if not lane.wants_refill() or not self._anything_due(source, now, cutoff):
                    continue
                batch = lane.batch(now)
                limit = lane.room() * batch
                with self._writing():
                    claim = self._claim(lane, row, now, cutoff, limit, only)
                if claim is None:
                    continue
                claimed, probe = claim
                lane.backlog = len(claimed) >= limit
                report.claimed += len(claimed)
                for start in range(0, len(claimed), batch):
                    futures.append(self._submit(lane, claimed[start : start + batch], probe))
        return report, futures

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

    # -- claiming ---------------------------------------------------------------------------
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

    def _lease_for(self, lane: SourceLane, count: int) -> timedelta:
        source = lane.source
        seconds = float(self.lease_seconds or max(60.0, source.timeout * 4))
        rate = source.effective_rate_limit
        if rate:
            # Worst case one request per task, each waiting for its slot in the budget.
            seconds += count / rate
        return timedelta(seconds=seconds)

    @staticmethod
    def _unleased(now: datetime) -> sa.ColumnElement[bool]:
        return sa.or_(Task.lease_until.is_(None), Task.lease_until < now)

    def _anything_due(self, source: SourceConfig, now: datetime, cutoff: datetime) -> bool:
        """A read before the claim, which is a write: most passes find nothing due for most
        sources, and SQLite has one writer at a time."""
        due = (
            sa.select(Task.id)
            .where(Task.source == source.name, Task.next_poll_at <= cutoff, self._unleased(now))
            .limit(1)
        )
        return db.session.scalar(due) is not None

    def _claim(
        self,
        lane: SourceLane,
        row: Source | None,
        now: datetime,
        cutoff: datetime,
        limit: int,
        only: list[int] | None,
    ) -> tuple[list[tuple[int, str]], bool] | None:
        """Lease up to ``limit`` due tasks of the lane's source: ``(claimed, probe)``.

        A source whose circuit is open gets one probe task once its wait is over, and only one
        worker gets to send it (``None`` for the others).
        """
        source = lane.source
        probe = row is not None and row.circuit != "closed"
        if probe:
            if not self._take_probe(source, now):
                return None
            limit = 1
        due = (
            sa.select(Task.id)
            .where(
                Task.source == source.name,
                Task.next_poll_at.is_not(None),
                Task.next_poll_at <= cutoff,
                self._unleased(now),
            )
            .order_by(Task.next_poll_at)
            .limit(limit)
        )
        if only is not None:
            due = due.where(Task.id.in_(only))
        if db.engine.dialect.name == "postgresql":
            # Concurrent claims skip each other's rows instead of waiting for them.
            due = due.with_for_update(skip_locked=True, key_share=True)
        statement = (
            sa.update(Task)
            .where(Task.id.in_(due.scalar_subquery()))
            .values(lease_owner=self.owner, lease_until=now + self._lease_for(lane, limit))
            .returning(Task.id, Task.task_id)
            .execution_options(synchronize_session=False)
        )
        claimed = [(pk, task_id) for pk, task_id in db.session.execute(statement)]
        db.session.commit()
        return claimed, probe

    def _take_probe(self, source: SourceConfig, now: datetime) -> bool:
        """Whether this worker may probe a source whose circuit is open (one worker at a time).

        Whoever moves ``blocked_until`` forward first owns the probe; its result reopens or
        closes the circuit, and if it never comes (a crash) the hold simply runs out.
        """
        hold = now + timedelta(seconds=source.timeout * 2 + 5)
        taken = db.session.execute(
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

    def _release(self, chunk: list[tuple[int, str]]) -> None:
        """Give leased tasks back unfetched; they stay due."""
        db.session.execute(
            sa.update(Task)
            .where(Task.id.in_([pk for pk, _ in chunk]), Task.lease_owner == self.owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()

    # -- fetching and writing ----------------------------------------------------------------
    def _submit(
        self, lane: SourceLane, chunk: list[tuple[int, str]], probe: bool = False
    ) -> Future[PassReport]:
        """Queue a fetch job; the returned future resolves once its results are written."""
        written: Future[PassReport] = Future()
        with lane.lock:
            lane.in_flight += 1

        def settled(f: Future[PassReport]) -> None:
            with lane.lock:
                lane.in_flight -= 1
            with self._pending_lock:
                self._pending.discard(f)
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
                written.set_exception(f.exception())  # type: ignore[arg-type]

        with self._pending_lock:
            self._pending.add(written)
        written.add_done_callback(settled)
        lane.executor.submit(self._run_job, lane, chunk, probe, written).add_done_callback(fetched)
        return written

    def _run_job(
        self,
        lane: SourceLane,
        chunk: list[tuple[int, str]],
        probe: bool,
        written: Future[PassReport],
    ) -> None:
        """Fetch one chunk and hand the results to the writer; the thread never waits for the
        database, so it is free for the next request at once."""
        if lane.is_paused(self.clock()):
            # Paused after the claim (a 429, an exhausted budget, an opened circuit).
            with self.app.app_context(), self._writing():
                self._release(chunk)
            written.set_result(PassReport(deferred=len(chunk)))
            return
        provider = self.registry.provider(lane.source.name)
        _instrument(provider)
        _calls.count = 0
        task_ids = [task_id for _, task_id in chunk]
        results: dict[str, NormalizedTask | FetchError]
        try:
            if len(task_ids) == 1:
                try:
                    results = {task_ids[0]: provider.fetch(task_ids[0])}
                except FetchError as exc:
                    results = {task_ids[0]: exc}
            else:
                results = provider.fetch_many(task_ids)
            provider.add_extras(results)
        except Exception as exc:  # noqa: BLE001 - a provider bug is a fetch error, not a crash
            log.exception("source %s: provider failed", lane.source.name)
            error = FetchError(FetchErrorKind.BAD_PAYLOAD, f"provider error: {type(exc).__name__}")
            results = {task_id: error for task_id in task_ids}
        now = self.clock()
        failures = [r for r in results.values() if isinstance(r, FetchError)]
        wait_seconds = rate_limit_wait(failures, provider, now)
        if wait_seconds:
            # Hold this process's other jobs at once; the writer records it for every worker.
            lane.pause_until(now + timedelta(seconds=wait_seconds))
        self._outcomes.put(Outcome(lane, chunk, results, _calls.count, probe, written))
        self._start_writer()

    def _start_writer(self) -> None:
        with self._writer_lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="refresh-writer", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        """The writer: everything that has arrived, one transaction per source (a group
        commit), so a thousand single-task fetches do not cost a thousand commits."""
        while True:
            first = self._outcomes.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    more = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._outcomes.put(None)  # stop after this batch
                    break
                batch.append(more)
            by_lane: dict[int, list[Outcome]] = {}
            for outcome in batch:
                by_lane.setdefault(id(outcome.lane), []).append(outcome)
            for outcomes in by_lane.values():
                try:
                    with self.app.app_context(), self._writing():
                        reports = self._write(outcomes[0].lane, outcomes)
                except Exception as exc:  # noqa: BLE001 - reported through the jobs' futures
                    for outcome in outcomes:
                        outcome.written.set_exception(exc)
                else:
                    for outcome, report in zip(outcomes, reports, strict=True):
                        outcome.written.set_result(report)

    def _writing(self) -> AbstractContextManager[object]:
        """SQLite takes one writer at a time: queue this process's writers on a lock rather
        than in SQLite's busy handler, whose sleeps leave the database idle."""
        return self._sqlite_writer if self._sqlite else nullcontext()

    def _write(self, lane: SourceLane, batch: list[Outcome]) -> list[PassReport]:
        """Write a lane's fetch results in one transaction; one report per job."""
        now = self.clock()
        source = lane.source
        provider = self.registry.provider(source.name)
        ids = [pk for outcome in batch for pk, _ in outcome.chunk]
        owned = {task.id: task for task in self._own_tasks(ids)}
        reports = []
        for outcome in batch:
            report = PassReport(fetched=len(outcome.chunk), upstream_calls=outcome.calls)
            reports.append(report)
            if len(outcome.chunk) > 1:
                self._weigh_batching(lane, outcome, now)
            for pk, task_id in outcome.chunk:
                task = owned.get(pk)
                if task is None:
                    continue  # its lease ran out and another worker took it over
                task.lease_owner = task.lease_until = None
                result = outcome.results.get(task_id) or FetchError(
                    FetchErrorKind.BAD_PAYLOAD, "the upstream answer left this task out"
                )
                applied = apply_fetch(task, result, now)
                if isinstance(result, FetchError):
                    outcome.failures.append(result)
                    report.failed += 1
                    task.failed_polls += 1
                    task.next_poll_at = after_failure(
                        lane.policy,
                        kind=result.kind,
                        failed_polls=task.failed_polls,
                        retry_after=result.retry_after,
                        gone_upstream=task.gone_upstream,
                        now=now,
                        rng=self.rng,
                    )
                else:
                    outcome.ok += 1
                    task.failed_polls = 0
                    task.next_poll_at, task.unchanged_polls = after_success(
                        lane.policy,
                        state=TaskState(task.state),
                        terminal=task.terminal,
                        changed=applied.state_changed,
                        unchanged_polls=task.unchanged_polls,
                        now=now,
                    )
                    report.changed += applied.state_changed
        db.session.flush()
        # FOR NO KEY UPDATE on PostgreSQL: writing tasks may take KEY SHARE locks on this row
        # (the foreign key), which a plain FOR UPDATE would have to wait out.
        row = db.session.get(
            Source, source.name, with_for_update={"key_share": True}, populate_existing=True
        )
        if row is not None:
            for outcome in batch:
                self._record_health(row, lane, outcome, now=now, provider=provider)
        db.session.commit()
        if row is not None:
            lane.paused_until = row.blocked_until
        return reports

    def _weigh_batching(self, lane: SourceLane, outcome: Outcome, now: datetime) -> None:
        """Stop batching a source whose batches keep costing more than single fetches."""
        size = len(outcome.chunk)
        lane.batching_misses = lane.batching_misses + 1 if outcome.calls > size else 0
        if lane.batching_misses >= BATCHING_MISSES:
            lane.batching_misses = 0
            lane.batching_off_until = now + timedelta(seconds=BATCHING_OFF_SECONDS)
            log.info(
                "source %s: batches cost more calls than single fetches; "
                "fetching per task for %.0f s",
                lane.source.name,
                BATCHING_OFF_SECONDS,
            )

    def _own_tasks(self, ids: list[int]) -> list[Task]:
        """The tasks among ``ids`` whose lease is still ours, locked until the commit.

        A worker that took one over after our lease ran out wins: its result is the newer one.
        """
        if db.engine.dialect.name == "postgresql":
            # Row locks; the lease is re-read once the lock is ours.
            return list(
                db.session.scalars(
                    sa.select(Task)
                    .where(Task.id.in_(ids), Task.lease_owner == self.owner)
                    .with_for_update(key_share=True)
                )
            )
        # SQLite has no row locks: an UPDATE first takes the database's write lock, so the
        # leases it matched cannot change before we commit.
        mine = db.session.scalars(
            sa.update(Task)
            .where(Task.id.in_(ids), Task.lease_owner == self.owner)
            .values(lease_owner=None, lease_until=None)
            .returning(Task.id)
            .execution_options(synchronize_session=False)
        ).all()
        return list(db.session.scalars(sa.select(Task).where(Task.id.in_(mine))))

    def _record_health(
        self, row: Source, lane: SourceLane, outcome: Outcome, *, now: datetime, provider: Provider
    ) -> None:
        """Health counters, the circuit breaker, and source-wide pauses (429, bad credentials,
        an exhausted Mixpeek budget) after one job. ``row`` is locked: concurrent jobs add up."""
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
            pause(lane.policy.auth_retry)
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
            delay = circuit_delay(row.consecutive_failures, self.rng)
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

    # -- retention ----------------------------------------------------------------------------
    def _purge_if_due(self) -> None:
        days = self.app.config.get("RETENTION_DAYS")
        if not days:
            return
        if self._last_purge is not None and time.monotonic() - self._last_purge < (
            PURGE_EVERY_SECONDS
        ):
            return
        self._last_purge = time.monotonic()
        with self.app.app_context(), self._writing():
            purged = purge_finished(float(days), self.clock())
        if purged:
            log.info("retention: purged %s finished tasks older than %s days", purged, days)


def purge_finished(days: float, now: datetime) -> int:
    """Delete terminal tasks (and, by cascade, their events) that finished ``days`` ago."""
    cutoff = now - timedelta(days=days)
    ids = db.session.scalars(
        sa.select(Task.id).where(
            Task.terminal.is_(True), Task.next_poll_at.is_(None), Task.finished_at < cutoff
        )
    ).all()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.session.execute(sa.delete(Task).where(Task.id.in_(chunk)))
    db.session.commit()
    return len(ids)


# -- running in the web process ----------------------------------------------------------------


class BackgroundRefresher:
    """The refresher on a daemon thread of the web process (``taskdeck run``, the demo)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self.refresher = Refresher(app)
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self.thread is not None:
                return
            self.thread = threading.Thread(
                target=self.refresher.run_forever,
                args=(self.stop_event,),
                name="refresher",
                daemon=True,
            )
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.refresher.wake()
        if self.thread is not None:
            self.thread.join(timeout=10)


def init_app(app: Flask) -> None:
    background = BackgroundRefresher(app)
    app.extensions["taskdeck.refresher"] = background

    @app.before_request
    def _start_refresher() -> None:
        # Under gunicorn nothing else starts it: the first request does (idempotent). Read at
        # request time, so `taskdeck run --no-refresher` can still turn it off.
        if app.config["REFRESHER"]:
            background.start()


def start_background(app: Flask) -> BackgroundRefresher:
    background: BackgroundRefresher = app.extensions["taskdeck.refresher"]
    background.start()
    return background

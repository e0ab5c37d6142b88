"""The refresher: the only part of Taskdeck that talks to upstreams while people watch.

Each pass claims due tasks with a lease (so any number of workers and app processes can run
against one database without fetching a task twice), fetches them through each source's own
small thread pool (so a slow or dead source only ever holds up itself), and writes every result
with its next poll time in the same transaction as its history event. Views never call it.
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
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from webapp.config import SourceConfig
from webapp.models import Source
from webapp.models import Task
from webapp.models import db
from webapp.models import utcnow
from webapp.providers.base import FetchError
from webapp.providers.base import FetchErrorKind
from webapp.providers.base import NormalizedTask
from webapp.providers.base import TaskState
from webapp.ratelimit import TokenBucket
from webapp.scheduling import PollPolicy
from webapp.scheduling import after_failure
from webapp.scheduling import after_success
from webapp.sources import SourceRegistry
from webapp.store import apply_fetch

log = logging.getLogger(__name__)

#: Consecutive source-level failures that open a source's circuit.
CIRCUIT_THRESHOLD = 5
#: First and longest wait before probing a source whose circuit is open.
CIRCUIT_BASE_SECONDS = 15.0
CIRCUIT_MAX_SECONDS = 300.0
#: Kinds of failure that say something about the source rather than one task.
SOURCE_FAILURES = frozenset(
    {
        FetchErrorKind.UPSTREAM_ERROR,
        FetchErrorKind.TIMEOUT,
        FetchErrorKind.NETWORK,
    }
)
AUTH_FAILURES = frozenset({FetchErrorKind.UNAUTHORIZED, FetchErrorKind.FORBIDDEN})


def policy_for(source: SourceConfig) -> PollPolicy:
    return PollPolicy(poll_interval=source.poll_interval)


@dataclass
class PassReport:
    """What one refresher pass did (``taskdeck refresh --once`` prints it)."""

    claimed: int = 0
    fetched: int = 0
    changed: int = 0
    failed: int = 0
    skipped_sources: list[str] = field(default_factory=list)
    upstream_calls: int = 0

    def merge(self, other: PassReport) -> None:
        self.claimed += other.claimed
        self.fetched += other.fetched
        self.changed += other.changed
        self.failed += other.failed
        self.upstream_calls += other.upstream_calls


class SourceLane:
    """One source's own executor, concurrency budget and rate limit."""

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        self.executor = ThreadPoolExecutor(
            max_workers=source.max_concurrency, thread_name_prefix=f"refresh-{source.name}"
        )
        self.in_flight = 0
        self.lock = threading.Lock()
        rate = source.effective_rate_limit
        self.bucket = TokenBucket(rate, burst=max(1.0, rate)) if rate else None

    def capacity(self) -> int:
        with self.lock:
            return self.source.max_concurrency - self.in_flight

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


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
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.rng = rng or random.Random()
        self._lanes: dict[str, SourceLane] = {}
        self._lanes_lock = threading.Lock()
        self._pending: set[Future[PassReport]] = set()
        self._pending_lock = threading.Lock()

    @property
    def registry(self) -> SourceRegistry:
        return self.app.extensions["taskdeck.sources"]

    # -- passes -----------------------------------------------------------------------------
    def run_once(
        self, *, wait_for_results: bool = True, only_task_ids: list[int] | None = None
    ) -> PassReport:
        """Claim what is due now and dispatch it; with ``wait_for_results``, wait and report."""
        report = PassReport()
        futures: list[Future[PassReport]] = []
        with self.app.app_context():
            now = self.clock()
            for source in self.registry:
                lane = self._lane(source)
                capacity = lane.capacity()
                if capacity <= 0:
                    continue
                batch = self._provider_batch_size(source)
                claimed, probing = self._claim(source, now, capacity * batch, only_task_ids)
                if claimed is None:
                    report.skipped_sources.append(source.name)
                    continue
                report.claimed += len(claimed)
                chunks = [claimed[i : i + batch] for i in range(0, len(claimed), batch)]
                if probing:
                    chunks = chunks[:1]
                for chunk in chunks:
                    futures.append(self._submit(lane, chunk))
        if wait_for_results:
            wait(futures)
            for future in futures:
                report.merge(future.result())
        return report

    def run_forever(self, stop: threading.Event, tick: float | None = None) -> None:
        """Pass after pass until ``stop`` is set; results are written as they arrive."""
        tick = tick if tick is not None else float(self.app.config["REFRESH_TICK"])
        log.info("refresher %s started", self.owner)
        while not stop.is_set():
            try:
                self.run_once(wait_for_results=False)
                self._purge_if_due()
            except Exception:  # noqa: BLE001 - one bad pass must not kill the loop
                log.exception("refresher pass failed; carrying on")
            stop.wait(tick)
        self.close()
        log.info("refresher %s stopped", self.owner)

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every dispatched job (tests and ``--once``)."""
        with self._pending_lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)

    def close(self) -> None:
        with self._lanes_lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.shutdown()

    # -- claiming ---------------------------------------------------------------------------
    def _lane(self, source: SourceConfig) -> SourceLane:
        with self._lanes_lock:
            lane = self._lanes.get(source.name)
            if lane is None or lane.source != source:
                if lane is not None:
                    lane.executor.shutdown(wait=False)
                lane = SourceLane(source)
                self._lanes[source.name] = lane
            return lane

    def _provider_batch_size(self, source: SourceConfig) -> int:
        provider = self.registry.provider(source.name)
        return max(1, int(getattr(provider, "batch_size", 1)))

    def _lease_for(self, source: SourceConfig) -> timedelta:
        seconds = self.lease_seconds or max(60.0, source.timeout * 4)
        return timedelta(seconds=seconds)

    def _claim(
        self, source: SourceConfig, now: datetime, limit: int, only: list[int] | None
    ) -> tuple[list[tuple[int, str]] | None, bool]:
        """Lease up to ``limit`` due tasks of ``source``: ``(claimed, probing)``.

        ``None`` when the source is blocked (rate limit, open circuit not yet due a probe).
        A source whose circuit is open gets one probe task once its wait is over.
        """
        row = db.session.get(Source, source.name)
        probing = False
        if row is not None and row.blocked_until is not None and row.blocked_until > now:
            return None, False
        if row is not None and row.circuit != "closed":
            probing = True
            limit = 1
        due = (
            sa.select(Task.id)
            .where(
                Task.source == source.name,
                Task.next_poll_at.is_not(None),
                Task.next_poll_at <= now,
                sa.or_(Task.lease_until.is_(None), Task.lease_until < now),
            )
            .order_by(Task.next_poll_at)
            .limit(limit)
        )
        if only is not None:
            due = due.where(Task.id.in_(only))
        if db.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        statement = (
            sa.update(Task)
            .where(Task.id.in_(due.scalar_subquery()))
            .values(lease_owner=self.owner, lease_until=now + self._lease_for(source))
            .returning(Task.id, Task.task_id)
            .execution_options(synchronize_session=False)
        )
        claimed = [(row_id, task_id) for row_id, task_id in db.session.execute(statement)]
        db.session.commit()
        return claimed, probing

    # -- fetching and writing ----------------------------------------------------------------
    def _submit(self, lane: SourceLane, chunk: list[tuple[int, str]]) -> Future[PassReport]:
        with lane.lock:
            lane.in_flight += 1
        future = lane.executor.submit(self._run_job, lane, chunk)

        def done(f: Future[PassReport]) -> None:
            with lane.lock:
                lane.in_flight -= 1
            with self._pending_lock:
                self._pending.discard(f)

        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(done)
        return future

    def _run_job(self, lane: SourceLane, chunk: list[tuple[int, str]]) -> PassReport:
        source = lane.source
        task_ids = [task_id for _, task_id in chunk]
        if lane.bucket is not None:
            lane.bucket.acquire()
        provider = self.registry.provider(source.name)
        try:
            if len(task_ids) == 1:
                try:
                    results: dict[str, NormalizedTask | FetchError] = {
                        task_ids[0]: provider.fetch(task_ids[0])
                    }
                except FetchError as exc:
                    results = {task_ids[0]: exc}
            else:
                results = provider.fetch_many(task_ids)
        except Exception as exc:  # noqa: BLE001 - a provider bug is a fetch error, not a crash
            log.exception("source %s: provider failed", source.name)
            error = FetchError(FetchErrorKind.BAD_PAYLOAD, f"provider error: {type(exc).__name__}")
            results = {task_id: error for task_id in task_ids}
        with self.app.app_context():
            return self._write(source, chunk, results)

    def _write(
        self,
        source: SourceConfig,
        chunk: list[tuple[int, str]],
        results: dict[str, NormalizedTask | FetchError],
    ) -> PassReport:
        now = self.clock()
        policy = policy_for(source)
        report = PassReport(fetched=len(chunk), upstream_calls=1)
        tasks = db.session.scalars(
            sa.select(Task).where(
                Task.id.in_([pk for pk, _ in chunk]), Task.lease_owner == self.owner
            )
        ).all()
        failures: list[FetchError] = []
        ok = 0
        for task in tasks:
            result = results.get(task.task_id) or FetchError(
                FetchErrorKind.BAD_PAYLOAD, "the upstream answer left this task out"
            )
            outcome = apply_fetch(task, result, now)
            if isinstance(result, FetchError):
                failures.append(result)
                report.failed += 1
                task.failed_polls += 1
                task.next_poll_at = after_failure(
                    policy,
                    kind=result.kind,
                    failed_polls=task.failed_polls,
                    retry_after=result.retry_after,
                    gone_upstream=task.gone_upstream,
                    now=now,
                    rng=self.rng,
                )
            else:
                ok += 1
                task.failed_polls = 0
                task.next_poll_at, task.unchanged_polls = after_success(
                    policy,
                    state=TaskState(task.state),
                    terminal=task.terminal,
                    changed=outcome.state_changed,
                    unchanged_polls=task.unchanged_polls,
                    now=now,
                )
                if outcome.state_changed:
                    report.changed += 1
            task.lease_owner = None
            task.lease_until = None
        self._record_source_health(source, ok=ok, failures=failures, now=now)
        db.session.commit()
        return report

    def _record_source_health(
        self, source: SourceConfig, *, ok: int, failures: list[FetchError], now: datetime
    ) -> None:
        """Health counters, the circuit breaker, and source-wide waits (429, bad credentials)."""
        row = db.session.get(Source, source.name)
        if row is None:
            return
        row.requests_total += ok + len(failures)
        counted = [f for f in failures if f.kind in SOURCE_FAILURES | AUTH_FAILURES]
        row.failures_total += len(counted)
        if ok:
            row.last_success_at = now
        for failure in failures:
            if failure.kind is FetchErrorKind.RATE_LIMITED:
                wait_seconds = max(failure.retry_after or 0.0, 1.0)
                until = now + timedelta(seconds=wait_seconds)
                row.blocked_until = max(row.blocked_until or until, until)
        if counted:
            last = counted[-1]
            row.last_failure_at = now
            row.last_error = last.describe()
            row.last_error_kind = last.kind.value
        if any(f.kind in AUTH_FAILURES for f in counted) and not ok:
            if row.circuit != "unauthorized":
                log.warning("source %s: %s; pausing it", source.name, counted[-1].describe())
            row.circuit = "unauthorized"
            row.blocked_until = now + timedelta(seconds=policy_for(source).auth_retry)
            return
        if ok and not counted:
            if row.circuit != "closed":
                log.info("source %s: healthy again", source.name)
            row.consecutive_failures = 0
            row.circuit = "closed"
            return
        if counted and not ok:
            row.consecutive_failures += 1
            if row.consecutive_failures >= CIRCUIT_THRESHOLD:
                opened = row.consecutive_failures - CIRCUIT_THRESHOLD
                delay = min(CIRCUIT_BASE_SECONDS * 2**opened, CIRCUIT_MAX_SECONDS)
                if row.circuit != "open":
                    log.warning(
                        "source %s: circuit open after %s failures",
                        source.name,
                        row.consecutive_failures,
                    )
                row.circuit = "open"
                row.blocked_until = now + timedelta(seconds=delay * (0.75 + self.rng.random() / 2))

    # -- retention ----------------------------------------------------------------------------
    _last_purge: float = 0.0

    def _purge_if_due(self) -> None:
        days = self.app.config.get("RETENTION_DAYS")
        if not days or time.monotonic() - self._last_purge < 3600:
            return
        self._last_purge = time.monotonic()
        with self.app.app_context():
            purged = purge_finished(float(days), self.clock())
            if purged:
                log.info("retention: purged %s finished tasks older than %s days", purged, days)


def purge_finished(days: float, now: datetime) -> int:
    """Delete terminal tasks (and their events) that finished more than ``days`` ago."""
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
        if self.thread is not None:
            self.thread.join(timeout=10)


def init_app(app: Flask) -> None:
    background = BackgroundRefresher(app)
    app.extensions["taskdeck.refresher"] = background

    if app.config["REFRESHER"]:

        @app.before_request
        def _start_refresher() -> None:
            # Under gunicorn nothing else starts it: the first request does (idempotent).
            background.start()


def start_background(app: Flask) -> BackgroundRefresher:
    background: BackgroundRefresher = app.extensions["taskdeck.refresher"]
    background.start()
    return background

"""Running followed queries: each refresher process runs the follows that are due, on threads
of its own so the fetch loop never waits for a search.

A run takes its follow with a lease (a conditional UPDATE: two processes never run one follow
at once, and a lease left by a process that died runs out), walks the query newest first
(:meth:`~webapp.providers.base.Provider.search_newest`) through the source's own provider, so
the source's shared request budget holds, and stops where the last run got to:

- by creation time, back to the newest one the last run saw (``watermark``) less
  :data:`OVERLAP`, for tasks that the upstream lists a little late;
- for tasks without creation times (Mixpeek), at the first id the last run saw first
  (``frontier``).

Each new task is tracked (``via="follow"``) with what the search showed, as an import stores
it (:func:`webapp.imports.importer.store_found`). A first run tracks at most the follow's
``backfill_limit`` newest matches and says so. An upstream error ends the run with what it
tracked kept, is recorded on the follow, and the run is tried again after a backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from webapp.db.models import Follow
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.domain import NormalizedTask
from webapp.imports.importer import notify_tracked
from webapp.imports.importer import store_found
from webapp.providers.base import Provider
from webapp.refresher.periodic import Writing
from webapp.sources.registry import registry

log = logging.getLogger(__name__)

#: How far behind the newest creation time a run still looks, for late-indexed tasks.
OVERLAP = timedelta(minutes=2)
#: How long a run holds its follow before another process may take it (renewed every page).
LEASE = timedelta(minutes=10)
#: Ids a run remembers from the top of the list, where the next one stops on an upstream
#: without creation times (a few, in case some of them expire upstream).
FRONTIER_SIZE = 20
#: The most new tasks a later run tracks; the rest wait for the next run or an import.
MAX_NEW_PER_RUN = 10_000
#: Longest wait before retrying a follow that keeps failing.
MAX_BACKOFF = timedelta(hours=1)
#: Threads per process running follows (each waits mostly on its upstream).
WORKERS = 2


@dataclass
class FollowRun:
    """What one run did."""

    source: str
    found: int = 0
    skipped: int = 0
    pages: int = 0
    error: str | None = None
    retry_after: float | None = None
    note: str | None = None
    #: Where the next run stops, once this one has finished without an error.
    watermark: datetime | None = None
    frontier: list[str] = field(default_factory=list)
    #: False when the process stopped it part way: the next run reads the rest.
    complete: bool = True


@dataclass
class _Walk:
    """A run's position in its walk."""

    stop_before: datetime | None
    frontier: set[str]
    cap: int
    #: A first run tracks tasks that were there before anyone followed: no alert for them.
    backfill: bool = False
    considered: int = 0
    newest: datetime | None = None
    seen: list[str] = field(default_factory=list)
    reached: bool = False
    capped: bool = False

    def reaches_last_run(self, found: NormalizedTask) -> bool:
        if found.created_at is not None and self.stop_before is not None:
            return found.created_at < self.stop_before
        return found.task_id in self.frontier

    def reached_back(self, read_back_to: datetime | None) -> bool:
        """Whether a page filtered here read back past the last run (even if it kept none)."""
        if read_back_to is None or self.stop_before is None:
            return False
        return read_back_to < self.stop_before

    def note(self, found: NormalizedTask) -> None:
        self.considered += 1
        if len(self.seen) < FRONTIER_SIZE:
            self.seen.append(found.task_id)
        if found.created_at is not None and (self.newest is None or found.created_at > self.newest):
            self.newest = found.created_at


class FollowRunner:
    """The follows of one refresher process (``owner``)."""

    def __init__(
        self,
        app: Flask,
        *,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        writing: Writing = nullcontext,
        page_size: int | None = None,
    ) -> None:
        self.app = app
        self.owner = owner
        self.clock = clock
        #: Held around each write transaction (one writer at a time per process on SQLite).
        self.writing = writing
        #: Tasks asked for per search request; ``None``: the provider's largest page.
        self.page_size = page_size
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[str, Future[FollowRun | None]] = {}
        self._lock = threading.Lock()
        #: Set by :meth:`close`: runs in flight stop after their current page.
        self.stopping = threading.Event()

    # -- when --------------------------------------------------------------------------------
    def due(self) -> list[str]:
        """The sources whose follow is due now, unpaused and not held by a live lease."""
        now = self.clock()
        with self.app.app_context():
            known = {source.name for source in registry(self.app)}
            names = db.session.scalars(
                sa.select(Follow.source).where(*_takeable(now)).order_by(Follow.next_run_at)
            ).all()
            db.session.rollback()
        return [name for name in names if name in known]

    def start_due(self) -> int:
        """Start every due follow on this process's follow threads; never waits. Returns how
        many runs were started."""
        started = 0
        for name in self.due():
            with self._lock:
                running = self._running.get(name)
                if running is not None and not running.done():
                    continue
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="follow")
                self._running[name] = self._pool.submit(self._run_logged, name)
            started += 1
        return started

    def run_due(self) -> list[FollowRun]:
        """Run every due follow now, one after the other (``taskdeck refresh --once``)."""
        runs = [self.run(name) for name in self.due()]
        return [run for run in runs if run is not None]

    def close(self) -> None:
        """Stop runs in flight after their current page (giving their follows back, due at
        once) and drop queued ones."""
        self.stopping.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.stopping.clear()

    # -- one run -----------------------------------------------------------------------------
    def run(self, source: str) -> FollowRun | None:
        """Run ``source``'s follow if it is due and no other process holds it; ``None`` if not."""
        with self.app.app_context():
            if not self._take(source):
                return None
            report = FollowRun(source)
            query: str | None = None
            try:
                follow = db.session.get(Follow, source)
                if follow is None:
                    return None
                query = follow.query
                self._walk(follow, registry(self.app).provider(source), report)
            except FetchError as exc:
                db.session.rollback()
                report.error, report.retry_after = exc.describe(), exc.retry_after
            except ValueError as exc:
                db.session.rollback()
                reason = str(exc).removeprefix("--query").lstrip(": ")
                report.error = f"the query cannot be read: {reason}"
            except Exception:
                log.exception("follow of %s failed", source)
                db.session.rollback()
                report.error = "the run stopped on an internal error (see the log)"
            self._finish(source, query, report)
            return report

    def _run_logged(self, source: str) -> FollowRun | None:
        try:
            return self.run(source)
        except Exception:  # noqa: BLE001 - a thread of the refresher must not die silently
            log.exception("follow of %s could not be run", source)
            return None

    def _take(self, source: str) -> bool:
        """Lease the follow for this process if it is due and free (commits)."""
        now = self.clock()
        with self.writing():
            taken = db.session.execute(
                sa.update(Follow)
                .where(Follow.source == source, *_takeable(now))
                .values(lease_owner=self.owner, lease_until=now + LEASE, last_started_at=now)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
        return getattr(taken, "rowcount", 0) == 1

    def _walk(self, follow: Follow, provider: Provider, report: FollowRun) -> None:
        first_run = follow.last_success_at is None
        walk = _Walk(
            stop_before=follow.watermark - OVERLAP if follow.watermark is not None else None,
            frontier=set(follow.frontier or []),
            cap=follow.backfill_limit if first_run else MAX_NEW_PER_RUN,
            backfill=first_run,
        )
        total: int | None = None
        for page in provider.search_newest(follow.query, self.page_size):
            report.pages += 1
            if report.pages == 1:
                total = page.total
            self._track_page(follow.source, provider, page.tasks, walk, report)
            if walk.reached_back(page.read_back_to):
                break
            if walk.reached or walk.capped:
                break
            if walk.considered >= walk.cap and total is not None:
                # The count says whether more are left: no request just to find out.
                walk.capped = total > walk.considered
                break
            if self.stopping.is_set():
                report.complete = False
                return
        report.watermark = walk.newest or follow.watermark
        report.frontier = list(dict.fromkeys([*walk.seen, *(follow.frontier or [])]))[
            :FRONTIER_SIZE
        ]
        if walk.capped:
            report.note = _capped_note(first_run, walk.considered, total)

    def _track_page(
        self,
        source: str,
        provider: Provider,
        tasks: list[NormalizedTask],
        walk: _Walk,
        report: FollowRun,
    ) -> None:
        """Track the page's tasks down to where the last run got to; commits."""
        now = self.clock()
        tracked: list[Task] = []
        with self.writing():
            # Still ours: a long walk keeps its lease. Written first, so the page's transaction
            # begins with a write and waits its turn for the lock. Begun by a savepoint's read
            # instead (store_found), SQLite refuses the later write at once with "database is
            # locked" whenever another process wrote in between (its snapshot is stale).
            db.session.execute(
                sa.update(Follow)
                .where(Follow.source == source, Follow.lease_owner == self.owner)
                .values(lease_until=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            for found in tasks:
                if walk.reaches_last_run(found):
                    walk.reached = True
                    break
                if walk.considered >= walk.cap:
                    walk.capped = True
                    break
                walk.note(found)
                try:
                    task = store_found(source, provider, found, now, via="follow")
                except ValueError:
                    task = None  # an id Taskdeck cannot key (empty, oversized)
                if task is None:
                    report.skipped += 1
                else:
                    tracked.append(task)
            report.found += len(tracked)
            notify_tracked(tracked, now, backfill=walk.backfill)
            db.session.commit()

    def _finish(self, source: str, query: str | None, report: FollowRun) -> None:
        """Record the run on the follow and give the lease back (commits)."""
        now = self.clock()
        with self.writing():
            follow = db.session.get(Follow, source, populate_existing=True)
            if follow is None:  # removed while it ran
                db.session.rollback()
                return
            follow.runs += 1
            follow.last_finished_at = now
            follow.last_found = report.found
            follow.total_found += report.found
            if follow.lease_owner == self.owner:
                follow.lease_owner = follow.lease_until = None
            if report.error is not None:
                follow.last_error = report.error
                follow.consecutive_failures += 1
                follow.next_run_at = now + _backoff(follow, report.retry_after)
            elif not report.complete:
                follow.next_run_at = None  # the next process to look carries on at once
            else:
                follow.last_success_at = now
                follow.last_error = None
                follow.consecutive_failures = 0
                follow.last_note = report.note
                follow.next_run_at = now + timedelta(seconds=follow.interval_seconds)
                if follow.query == query:  # not edited meanwhile: else it starts over
                    follow.watermark = report.watermark
                    follow.frontier = report.frontier
            db.session.commit()


def _takeable(now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """Conditions of a follow that is due now and held by no live lease."""
    return (
        Follow.paused.is_(False),
        sa.or_(Follow.next_run_at.is_(None), Follow.next_run_at <= now),
        sa.or_(Follow.lease_owner.is_(None), Follow.lease_until < now),
    )


def _backoff(follow: Follow, retry_after: float | None) -> timedelta:
    """The wait before retrying a failing follow: its interval, doubled for each failure in
    a row, at most :data:`MAX_BACKOFF`, and at least what the upstream asked for."""
    doubled = follow.interval_seconds * 2 ** min(follow.consecutive_failures - 1, 16)
    wait = min(timedelta(seconds=doubled), MAX_BACKOFF)
    return max(wait, timedelta(seconds=retry_after or 0))


def _capped_note(first_run: bool, considered: int, total: int | None) -> str:
    if not first_run:
        return (
            f"stopped after {considered:,} new matches; the next run carries on from the "
            "newest, so import older ones from the list"
        )
    if total is not None and total > considered:
        shown = f"{considered:,} of {total:,}"
    else:
        shown = f"{considered:,}"
    return f"tracked the newest {shown} matches; import older ones from the list"

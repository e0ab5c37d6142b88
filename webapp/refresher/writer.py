"""The writer: one thread that writes every job's results, so fetching threads never wait for
the database.

Whatever has arrived is written in one transaction per source (a group commit, so a thousand
single-task fetches do not cost a thousand commits): each task's state, next poll time and
history event together, only while the task's lease is still ours, and then the source's
health. A result and its event commit together or not at all.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable
from datetime import datetime

from flask import Flask
from sqlalchemy.orm.attributes import flag_modified

from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.store import apply_fetch
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.notify.triggers import tasks_changed
from webapp.overdue.marking import mark_written
from webapp.refresher.claims import Claims
from webapp.refresher.health import lock_source_row
from webapp.refresher.health import record_health
from webapp.refresher.jobs import Outcome
from webapp.refresher.jobs import PassReport
from webapp.refresher.lanes import SourceLane
from webapp.refresher.scheduling import after_failure
from webapp.refresher.scheduling import after_success
from webapp.sources.registry import registry

#: Columns a successful fetch often rewrites with the same value (a payload with no new
#: progress, a counter reset): written on every success anyway. The flush sends one UPDATE per
#: run of rows that changed the same columns, and tasks whose payload moved interleave with
#: tasks whose payload did not, so without this a batch of 100 took about 50 statements
#: instead of one executemany. Changed tasks (state, times) still differ; they are few.
SUCCESS_COLUMNS = ("raw", "details", "links", "related_key", "unchanged_polls")


def same_update_shape(task: Task) -> None:
    """Mark :data:`SUCCESS_COLUMNS` written, changed or not (values stay as they are)."""
    for column in SUCCESS_COLUMNS:
        flag_modified(task, column)


class ResultWriter:
    """Takes :class:`Outcome` s from any thread; resolves each one's ``written`` future."""

    def __init__(
        self, app: Flask, claims: Claims, clock: Callable[[], datetime], rng: random.Random
    ) -> None:
        self.app = app
        self.claims = claims
        self.clock = clock
        self.rng = rng
        self._outcomes: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, outcome: Outcome) -> None:
        self._outcomes.put(outcome)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="refresh-writer", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Write what has arrived, then stop the thread (a later :meth:`put` starts another)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._outcomes.put(None)
            thread.join()

    def _loop(self) -> None:
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
                    with self.app.app_context(), self.claims.writing():
                        reports = self._write(outcomes[0].lane, outcomes)
                except Exception as exc:  # noqa: BLE001 - reported through the jobs' futures
                    for outcome in outcomes:
                        outcome.written.set_exception(exc)
                else:
                    for outcome, report in zip(outcomes, reports, strict=True):
                        outcome.written.set_result(report)

    def _write(self, lane: SourceLane, batch: list[Outcome]) -> list[PassReport]:
        """Write a lane's fetch results in one transaction; one report per job."""
        now = self.clock()
        source = lane.source
        provider = registry(self.app).provider(source.name)
        ids = [pk for outcome in batch for pk, _ in outcome.chunk]
        owned = {task.id: task for task in self.claims.own_tasks(ids)}
        reports = []
        changed: list[int] = []
        written = []
        for outcome in batch:
            report = PassReport(fetched=len(outcome.chunk), upstream_calls=outcome.calls)
            reports.append(report)
            if len(outcome.chunk) > 1:
                lane.weigh_batch(len(outcome.chunk), outcome.calls, now)
            for pk, task_id in outcome.chunk:
                task = owned.get(pk)
                if task is None:
                    continue  # its lease ran out and another worker took it over
                task.lease_owner = task.lease_until = None
                written.append(task)
                result = outcome.results.get(task_id) or FetchError(
                    FetchErrorKind.BAD_PAYLOAD, "the upstream answer left this task out"
                )
                applied = apply_fetch(task, result, now)
                if task.changed_at == now:
                    changed.append(task.id)
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
                    same_update_shape(task)
        mark_written(self.app, written, now)
        db.session.flush()
        # Alerts and "notify me" commit with the change that caused them (webapp.notify).
        tasks_changed(changed, now)
        row = lock_source_row(source.name)
        if row is not None:
            for outcome in batch:
                record_health(row, outcome, now=now, provider=provider, rng=self.rng)
        db.session.commit()
        if row is not None:
            lane.paused_until = row.blocked_until
        return reports

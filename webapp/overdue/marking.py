"""Writing overdue verdicts on tasks: with every fetch result the refresher writes
(:func:`mark_written`), and in a periodic pass of the refresher processes (:class:`OverduePass`),
since a task that is not fetched (backed off, its source paused) still grows late.

A change of the flag or of its reason moves the task's ``version`` and ``changed_at``, so the
list's live rows and the task page's poller show it; a change of the flag also calls
:func:`overdue_changed` in the same transaction, for alert rules (``is:overdue``). The same
pass ends "notify me" subscriptions left on finished tasks
(:func:`webapp.notify.triggers.finish_left_subscriptions`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from flask import Flask

from webapp.db.models import Task
from webapp.db.models import db
from webapp.notify.triggers import finish_left_subscriptions
from webapp.notify.triggers import tasks_changed
from webapp.overdue.history import history
from webapp.overdue.judge import ACTIVE
from webapp.overdue.judge import Subject
from webapp.overdue.judge import verdict
from webapp.overdue.judge import wants_payload
from webapp.refresher.periodic import PeriodicPass
from webapp.sources.registry import registry

log = logging.getLogger(__name__)

#: How often a running refresher re-judges every active task.
CHECK_EVERY_SECONDS = 30.0
#: ``Task.overdue_reason``'s length.
REASON_LIMIT = 300


def overdue_changed(task_pks: list[int]) -> None:
    """The alert hook: called with the tasks that just became, or stopped being, overdue,
    inside the transaction that changed them (before its commit), so that an ``is:overdue``
    rule's delivery is written with the change or not at all."""
    tasks_changed(task_pks)


def mark(task: Task, reason: str | None, now: datetime) -> bool:
    """Write a verdict on ``task`` (not committed); True when the overdue flag flipped."""
    reason = reason[:REASON_LIMIT] if reason else None
    overdue = reason is not None
    if task.overdue == overdue and task.overdue_reason == reason:
        return False
    flipped = task.overdue != overdue
    task.overdue = overdue
    task.overdue_reason = reason
    task.version += 1
    task.changed_at = now
    return flipped


def mark_written(app: Flask, tasks: Iterable[Task], now: datetime) -> list[int]:
    """Judge tasks just written by the refresher (learned bounds as last computed; this never
    reads history itself) and call :func:`overdue_changed` for the flipped ones."""
    known = registry(app)
    learned = history(app)
    flipped = [
        task.id
        for task in tasks
        if mark(
            task,
            verdict(
                Subject.of(task),
                known.get(task.source),
                learned.get(task.source, task.task_type),
                now,
            ),
            now,
        )
    ]
    if flipped:
        overdue_changed(flipped)
    return flipped


_LIGHT = (
    Task.id,
    Task.version,
    Task.source,
    Task.provider,
    Task.state,
    Task.terminal,
    Task.upstream_status,
    Task.task_type,
    Task.created_at,
    Task.updated_at,
    Task.sort_at,
    Task.overdue,
    Task.overdue_reason,
)


def judge_all(app: Flask, now: datetime) -> list[int]:
    """Re-judge every active task and every task marked overdue, with the learned bounds as
    last computed; write the changes and commit.

    Reads light columns only (through the state and overdue indexes), and the payloads of the
    few tasks an upstream signal looks at. A row the refresher rewrote meanwhile (its version
    moved) is left alone: its writer judged it. Returns the ids whose flag flipped.
    """
    learned = history(app)
    known = registry(app)
    # Two reads, each through its own index (an OR of the two would scan the table).
    active = db.session.execute(sa.select(*_LIGHT).where(Task.state.in_(sorted(ACTIVE)))).all()
    # Through the ids, read from the index alone: SQLite's statistics see one value of
    # ``overdue`` (nearly every task is not) and would otherwise scan the table.
    overdue_ids = sa.select(Task.id).where(Task.overdue == sa.true())
    marked = db.session.execute(sa.select(*_LIGHT).where(Task.id.in_(overdue_ids))).all()
    seen = {row.id for row in active}
    rows = [*active, *(row for row in marked if row.id not in seen)]
    wanted = [row.id for row in rows if wants_payload(row.provider, row.upstream_status)]
    payloads = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        statement = sa.select(Task.id, Task.details, Task.raw).where(Task.id.in_(chunk))
        payloads.update({pk: (details, raw) for pk, details, raw in db.session.execute(statement)})
    flipped: list[int] = []
    for row in rows:
        details, raw = payloads.get(row.id, (None, None))
        subject = Subject(
            source=row.source,
            provider=row.provider,
            state=row.state,
            terminal=row.terminal,
            upstream_status=row.upstream_status,
            task_type=row.task_type,
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.created_at or row.sort_at,
            details=details,
            raw=raw,
        )
        found = verdict(subject, known.get(row.source), learned.get(row.source, row.task_type), now)
        reason = found[:REASON_LIMIT] if found else None
        if row.overdue == (reason is not None) and row.overdue_reason == reason:
            continue
        updated = db.session.execute(
            sa.update(Task)
            .where(Task.id == row.id, Task.version == row.version)
            .values(
                overdue=reason is not None,
                overdue_reason=reason,
                version=Task.version + 1,
                changed_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount and row.overdue != (reason is not None):  # type: ignore[attr-defined]
            flipped.append(row.id)
    if flipped:
        overdue_changed(flipped)
    db.session.commit()
    return flipped


class OverduePass(PeriodicPass):
    """The refresher's periodic overdue pass, at most every :data:`CHECK_EVERY_SECONDS`."""

    every_seconds = CHECK_EVERY_SECONDS

    def run_if_due(self) -> None:
        if self.is_due():
            self.run()

    def run(self) -> list[int]:
        """One pass now; the ids whose overdue flag flipped."""
        self.started()
        with self.app.app_context():
            # A read, outside the writers' lock: it is the one query of the pass that scans.
            now = self.clock()
            history(self.app).refresh_if_due(now)
            with self.writing():
                flipped = judge_all(self.app, now)
            with self.writing():
                # "Notify me" asked just as its task finished: told now (webapp.notify).
                told = finish_left_subscriptions(now)
                db.session.commit()
        if told:
            log.info("notify me: %s subscriptions of finished tasks ended", told)
        if flipped:
            log.info("overdue: %s tasks changed", len(flipped))
        return flipped

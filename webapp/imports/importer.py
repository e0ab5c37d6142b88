"""Tracking what an upstream search returns (``taskdeck import``, the import form)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.domain import NormalizedTask
from webapp.notify.triggers import tasks_changed
from webapp.overdue.marking import mark_written
from webapp.providers.base import Provider
from webapp.refresher.scheduling import after_success
from webapp.refresher.scheduling import policy_for


@dataclass
class ImportReport:
    tracked: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None


ProgressFactory = Callable[[int | None], Any]


def import_tasks(
    source_name: str,
    provider: Provider,
    query: str | None,
    limit: int,
    *,
    progress: ProgressFactory | None = None,
) -> ImportReport:
    """Track every task the search returns (up to ``limit``), writing what the search showed.

    The search answer already holds each task, so it is stored at once and no extra fetch is
    made. Raises ``ValueError`` for a query the provider cannot read; an upstream failure part
    way stops the import and is reported in ``error``, keeping what was imported.
    """
    report = ImportReport()
    written: list[Task] = []
    total: int | None = None
    try:
        total = provider.search_total(query)
    except FetchError:
        total = None  # the main loop reports the failure
    if total is not None:
        total = min(total, limit)
    bar = progress(total) if progress else nullcontext()
    with bar as ticker:
        try:
            for found in provider.search(query, limit=limit):
                now = utcnow()
                try:
                    task = store_found(source_name, provider, found, now, via="import")
                except ValueError:
                    report.failed += 1
                    continue
                if task is None:
                    report.skipped += 1
                else:
                    written.append(task)
                    report.tracked += 1
                if (report.tracked + report.skipped) % 200 == 0:
                    notify_tracked(written, now, backfill=True)
                    db.session.commit()
                if ticker is not None:
                    ticker.update(1)
        except FetchError as exc:
            report.error = exc.describe()
        finally:
            notify_tracked(written, utcnow(), backfill=True)
            db.session.commit()
    return report


def store_found(
    source_name: str, provider: Provider, found: NormalizedTask, now: datetime, *, via: str
) -> Task | None:
    """Track one task a search showed and store what it showed (no extra fetch): the new
    task, or ``None`` when it is tracked already (by hand, a push, or another process a moment
    ago). Not committed; raises ``ValueError`` for an id that cannot be tracked."""
    try:
        # A savepoint: another process inserting the same task between our look and our
        # insert costs this one task, not the caller's whole transaction.
        with db.session.begin_nested():
            task, created = store.track(source_name, found.task_id, now=now, via=via)
    except sa.exc.IntegrityError:
        return None
    if not created:
        return None
    outcome = store.apply_fetch(task, found, now)
    # Tracked already late (stuck upstream for hours): say so at once.
    mark_written(current_app._get_current_object(), [task], now)  # type: ignore[attr-defined]
    task.next_poll_at, task.unchanged_polls = after_success(
        policy_for(provider.source),
        state=found.state,
        terminal=found.terminal,
        changed=outcome.state_changed,
        unchanged_polls=0,
        now=now,
    )
    return task


def notify_tracked(tasks: list[Task], now: datetime, *, backfill: bool) -> None:
    """Alert rules see newly tracked tasks as the refresher's first fetch would show them: a
    task found failed alerts at once, unless it comes from a ``backfill`` (an import, a
    follow's first run), whose matches are recorded without a delivery; empties ``tasks``."""
    tasks_changed([task.id for task in tasks], now, quiet=backfill)
    tasks.clear()

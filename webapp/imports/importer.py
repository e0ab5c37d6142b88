"""Tracking what an upstream search returns (``taskdeck import``, the import form)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from flask import current_app

from webapp.db import store
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
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
                    task, created = store.track(source_name, found.task_id, now=now, via="import")
                except ValueError:
                    report.failed += 1
                    continue
                if not created:
                    report.skipped += 1
                else:
                    outcome = store.apply_fetch(task, found, now)
                    # Imported already late (stuck upstream for hours): say so at once.
                    mark_written(current_app._get_current_object(), [task], now)  # type: ignore[attr-defined]
                    task.next_poll_at, task.unchanged_polls = after_success(
                        policy_for(provider.source),
                        state=found.state,
                        terminal=found.terminal,
                        changed=outcome.state_changed,
                        unchanged_polls=0,
                        now=now,
                    )
                    report.tracked += 1
                if (report.tracked + report.skipped) % 200 == 0:
                    db.session.commit()
                if ticker is not None:
                    ticker.update(1)
        except FetchError as exc:
            report.error = exc.describe()
        finally:
            db.session.commit()
    return report

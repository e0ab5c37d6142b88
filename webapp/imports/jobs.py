"""Importing from an upstream search from the web UI: a preview, then a background import.

These are the only places where a web request reaches an upstream, and only because a person
asked: the preview waits at most :data:`PREVIEW_TIMEOUT` seconds for one page of results, and
the import itself runs in a thread, writing its progress to an :class:`ImportJob` row that the
page polls, so no request waits on a long search.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import current_app

from webapp.db.models import ImportJob
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.domain import NormalizedTask
from webapp.imports.importer import import_tasks
from webapp.logs import with_request_id
from webapp.providers import provider_class
from webapp.providers.base import Provider
from webapp.sources.registry import registry

log = logging.getLogger(__name__)

#: Seconds a preview waits for the upstream before saying so.
PREVIEW_TIMEOUT = 15.0
PREVIEW_SIZE = 20
MAX_IMPORT = 10_000
#: Seconds between progress writes (each is a small transaction).
PROGRESS_EVERY = 0.5
#: A running job whose progress has not moved for this long has lost its process.
STALLED_AFTER = timedelta(minutes=2)

# A few threads for previews, so that a request can stop waiting while the search finishes
# (or times out in httpx) on its own.
_preview_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="import-preview")


class ImportProblem(Exception):
    """Why a preview or an import cannot go ahead, in words for the person who asked."""


class ImportCancelled(Exception):
    """Raised inside the import when someone pressed "Stop"."""


@dataclass
class Preview:
    source: str
    query: str | None
    tasks: list[NormalizedTask]
    total: int | None
    #: Ids among ``tasks`` that are tracked already.
    tracked: set[str]


def searchable_sources() -> list[Any]:
    """The configured sources whose upstream has a task search."""
    known = registry()
    return [s for s in known if provider_class(s.provider).can_search]


def _provider(source_name: str) -> Provider:
    known = registry()
    if source_name not in known:
        raise ImportProblem(f"There is no source called “{source_name}”.")
    provider: Provider = known.provider(source_name)
    if not provider.can_search:
        raise ImportProblem(f"{provider.label} has no task search to import from.")
    return provider


def _query_problem(exc: ValueError) -> ImportProblem:
    # Providers word these for the CLI's --query option.
    return ImportProblem(
        f"The search cannot be read: {str(exc).removeprefix('--query').lstrip(': ')}"
    )


def preview(source_name: str, query: str | None) -> Preview:
    """The first results of the upstream search; raises :class:`ImportProblem`."""
    provider = _provider(source_name)
    future = _preview_pool.submit(with_request_id(provider.search_page), query, 0, PREVIEW_SIZE)
    try:
        page = future.result(timeout=PREVIEW_TIMEOUT)
    except FutureTimeout:
        raise ImportProblem(
            f"{provider.label} did not answer within {PREVIEW_TIMEOUT:.0f} s; try again, or "
            "narrow the search."
        ) from None
    except FetchError as exc:
        raise ImportProblem(f"{provider.label} answered with an error: {exc.describe()}") from None
    except ValueError as exc:
        raise _query_problem(exc) from None
    ids = [t.task_id for t in page.tasks]
    tracked = (
        set(
            db.session.scalars(
                sa.select(Task.task_id).where(Task.source == source_name, Task.task_id.in_(ids))
            )
        )
        if ids
        else set()
    )
    return Preview(source_name, query, page.tasks, page.total, tracked)


def start(source_name: str, query: str | None, limit: int) -> ImportJob:
    """Record an import and start it in a background thread."""
    _provider(source_name)
    if not 1 <= limit <= MAX_IMPORT:
        raise ImportProblem(f"Import between 1 and {MAX_IMPORT:,} tasks at a time.")
    job = ImportJob(source=source_name, query=query, limit=limit, status="running")
    db.session.add(job)
    db.session.commit()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    threading.Thread(
        target=with_request_id(_run), args=(app, job.id), name=f"import-{job.id}", daemon=True
    ).start()
    return job


def cancel(job: ImportJob) -> None:
    """Ask a running import to stop (it stops at its next progress write)."""
    db.session.execute(
        sa.update(ImportJob)
        .where(ImportJob.id == job.id, ImportJob.status == "running")
        .values(status="cancelling")
    )
    db.session.commit()
    db.session.refresh(job)


def is_stalled(job: ImportJob) -> bool:
    return job.status in ("running", "cancelling") and utcnow() - job.updated_at > STALLED_AFTER


def recent_jobs(limit: int = 5) -> list[ImportJob]:
    return list(db.session.scalars(sa.select(ImportJob).order_by(ImportJob.id.desc()).limit(limit)))


class _Progress:
    """The ``progress`` that :func:`import_tasks` reports to, writing it to the job row."""

    def __init__(self, job: ImportJob, total: int | None) -> None:
        self.job = job
        self.last_write = 0.0
        job.total = total
        self._write()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, steps: int) -> None:
        self.job.processed += steps
        if time.monotonic() - self.last_write >= PROGRESS_EVERY:
            self._write()

    def _write(self) -> None:
        self.job.updated_at = utcnow()
        status = db.session.scalar(sa.select(ImportJob.status).where(ImportJob.id == self.job.id))
        db.session.commit()
        self.last_write = time.monotonic()
        if status == "cancelling":
            raise ImportCancelled


def _run(app: Flask, job_id: int) -> None:
    with app.app_context():
        job = db.session.get(ImportJob, job_id)
        if job is None:
            return
        try:
            provider = _provider(job.source)
            report = import_tasks(
                job.source,
                provider,
                job.query,
                job.limit,
                progress=lambda total: _Progress(job, total),
            )
        except ImportCancelled:
            db.session.rollback()
            job.status = "cancelled"
        except ValueError as exc:
            db.session.rollback()
            job.status, job.error = "failed", str(_query_problem(exc))
        except ImportProblem as exc:
            db.session.rollback()
            job.status, job.error = "failed", str(exc)
        except Exception:
            log.exception("import %s failed", job_id)
            db.session.rollback()
            job.status, job.error = (
                "failed",
                "The import stopped on an internal error (see the log).",
            )
        else:
            job.tracked, job.skipped, job.failed = report.tracked, report.skipped, report.failed
            job.status = "failed" if report.error else "done"
            job.error = f"The upstream stopped answering: {report.error}" if report.error else None
        job.finished_at = job.updated_at = utcnow()
        db.session.commit()

"""Importing tasks from an upstream search: the form, its preview, and the import's progress.

Routes on the ``tasks`` blueprint (``tasks.import_page``…). The work is in
:mod:`webapp.imports.jobs`; with JavaScript the preview and the progress are fragments of the
import page (the progress polls itself and answers 286 once the import is over), without it
each answer is the whole page.
"""

from __future__ import annotations

from typing import Any

from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.db.models import ImportJob
from webapp.db.models import db
from webapp.imports import jobs as import_jobs
from webapp.providers import provider_specs
from webapp.views.tasks import bp
from webapp.web.htmx import STOP_POLLING
from webapp.web.htmx import is_partial

IMPORT_TEMPLATE = "tasks/_list_import.html"
DEFAULT_LIMIT = 100


def _form() -> dict[str, Any]:
    values = request.form if request.method == "POST" else request.args
    try:
        limit = int(values.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        limit = 0
    return {
        "source": values.get("source", "").strip(),
        "query": values.get("query", "").strip() or None,
        "limit": limit,
    }


def _context(**extra: Any) -> dict[str, Any]:
    return {
        "sources": import_jobs.searchable_sources(),
        "form": _form(),
        "recent": import_jobs.recent_jobs(),
        "max_import": import_jobs.MAX_IMPORT,
        "preview_timeout": import_jobs.PREVIEW_TIMEOUT,
        "is_stalled": import_jobs.is_stalled,
        "search_help": [(s.label, s.search_help) for s in provider_specs() if s.search_help],
        **extra,
    }


def _answer(block: str, status: int = 200, **extra: Any) -> Response:
    """The block alone for htmx, the whole import page otherwise."""
    context = _context(**extra)
    if is_partial():
        return make_response(render_block(IMPORT_TEMPLATE, block, **context), status)
    return make_response(render_template(IMPORT_TEMPLATE, **context), status)


@bp.get("/tasks/import")
def import_page() -> Response:
    """The import form, and the latest imports."""
    return make_response(render_template(IMPORT_TEMPLATE, **_context()))


@bp.post("/tasks/import/preview")
def import_preview() -> Response:
    """The first results of the upstream search (the one request here that waits on an
    upstream, for at most ``PREVIEW_TIMEOUT`` seconds)."""
    form = _form()
    try:
        found = import_jobs.preview(form["source"], form["query"])
    except import_jobs.ImportProblem as exc:
        return _answer("import_result", 200, problem=str(exc))
    return _answer("import_result", preview=found)


@bp.post("/tasks/import")
def import_start() -> Response:
    """Start importing in the background; answers with the progress widget (or its page)."""
    form = _form()
    try:
        job = import_jobs.start(form["source"], form["query"], form["limit"])
    except import_jobs.ImportProblem as exc:
        return _answer("import_result", 200, problem=str(exc))
    audit.record(
        "task.import", job.source, query=job.query, limit=job.limit, job_id=job.id, commit=True
    )
    if is_partial():
        return _answer("import_result", job=job)
    return redirect(url_for("tasks.import_progress", job_id=job.id), 303)


@bp.get("/tasks/import/<int:job_id>")
def import_progress(job_id: int) -> Response:
    """An import's progress: polls itself while it runs, answers 286 once it is over."""
    job = db.get_or_404(ImportJob, job_id)
    running = job.status in ("running", "cancelling") and not import_jobs.is_stalled(job)
    response = _answer("import_result", job=job)
    if is_partial() and not running:
        response.status_code = STOP_POLLING
    return response


@bp.post("/tasks/import/<int:job_id>/cancel")
def import_cancel(job_id: int) -> Response:
    """Stop an import part way (what it imported so far stays tracked)."""
    job = db.get_or_404(ImportJob, job_id)
    import_jobs.cancel(job)
    if is_partial():
        return _answer("import_result", job=job)
    return redirect(url_for("tasks.import_progress", job_id=job.id), 303)

"""The task detail page, its polling fragment and its actions. Reads the cache only.

The list views (``/``, ``/tasks/live``, ``/tasks/track``) are in :mod:`webapp.views.task_list`
and register on this module's blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block
from jinja2_fragments.flask import render_blocks

from webapp import store
from webapp.htmx import STOP_POLLING
from webapp.htmx import is_htmx
from webapp.models import Task
from webapp.models import db
from webapp.models import utcnow
from webapp.providers import PROVIDERS

bp = Blueprint("tasks", __name__)

DETAIL_TEMPLATE = "tasks/detail.html"


def get_task_or_404(source: str, task_id: str) -> Task:
    """The tracked task, or a 404 that says whether the source or the task is unknown."""
    registry = current_app.extensions["taskdeck.sources"]
    if source not in registry:
        abort(404, description=f"There is no source called “{source}”.")
    task = store.get_task(source, task_id)
    if task is None:
        abort(404, description=f"Task “{task_id}” of {source} is not tracked.")
    return task


@bp.get("/tasks/<source>/<taskid:task_id>")
def detail(source: str, task_id: str) -> Response:
    """The shareable page of one task."""
    task = get_task_or_404(source, task_id)
    return make_response(render_template(DETAIL_TEMPLATE, **detail_context(task)))


@bp.get("/tasks/<source>/<taskid:task_id>/status")
def status(source: str, task_id: str) -> Response:
    """The polling widget: 204 while nothing changed, new markup when it did, 286 once final."""
    task = get_task_or_404(source, task_id)
    seen = request.args.get("v", type=int)
    if seen == task.version and not task.terminal:
        return Response(status=204)
    context = detail_context(task)
    blocks = ["status", "history", "details"]
    body = render_blocks(DETAIL_TEMPLATE, blocks, oob_blocks=True, **context)
    return make_response(body, STOP_POLLING if task.terminal else 200)


def detail_context(task: Task) -> dict[str, Any]:
    registry = current_app.extensions["taskdeck.sources"]
    source = registry.get(task.source)
    provider_class = PROVIDERS.get(task.provider)
    events = list(task.events)
    now = utcnow()
    timeline = []
    for index, event in enumerate(events):
        ended = events[index + 1].at if index + 1 < len(events) else None
        if ended is None and task.terminal:
            spent = None
        else:
            spent = ((ended or now) - event.at).total_seconds()
        timeline.append(
            {"event": event, "seconds": spent, "ongoing": ended is None and not task.terminal}
        )
    total = sum(item["seconds"] or 0 for item in timeline) or 1
    return {
        "task": task,
        "source": source,
        "provider_label": provider_class.label if provider_class else task.provider,
        "times_note": provider_class.times_note if provider_class else None,
        "timeline": timeline,
        "timeline_total": total,
        "poll_seconds": current_app.config["UI_POLL_SECONDS"],
    }


@bp.post("/tasks/<source>/<taskid:task_id>/refresh")
def refresh_now(source: str, task_id: str) -> Response:
    """Ask the refresher to fetch this task on its next pass (this view never calls upstream)."""
    task = get_task_or_404(source, task_id)
    task.next_poll_at = utcnow()
    task.unchanged_polls = 0
    db.session.commit()
    if is_htmx():
        return make_response(
            render_block(DETAIL_TEMPLATE, "refresh_button", queued=True, **detail_context(task))
        )
    flash("Refresh queued: the task is fetched on the refresher's next pass.", "info")
    return redirect(url_for("tasks.detail", source=source, task_id=task_id), 303)


@bp.post("/tasks/<source>/<taskid:task_id>/untrack")
def untrack(source: str, task_id: str) -> Response:
    """Stop tracking a task and forget its history."""
    task = get_task_or_404(source, task_id)
    store.untrack(task)
    db.session.commit()
    flash(f"Stopped tracking {task_id}.", "info")
    return redirect(url_for("tasks.index"), 303)

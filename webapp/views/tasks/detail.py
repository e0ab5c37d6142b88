"""The task detail page, its polling fragment and its actions. Reads the cache only.

The list views (``/``, ``/tasks/live``, ``/tasks/track``) are in :mod:`webapp.views.tasks.index`
and register on this module's blueprint.
"""

from __future__ import annotations

import json

from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block
from jinja2_fragments.flask import render_blocks
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.access.guard import requires
from webapp.access.roles import Role
from webapp.db import store
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.views.tasks import bp
from webapp.web.htmx import STOP_POLLING
from webapp.web.htmx import is_htmx
from webapp.web.lookup import get_task_or_404
from webapp.web.task_page import DETAIL_TEMPLATE
from webapp.web.task_page import detail_context


@bp.get("/tasks/<source>/<taskid:task_id>")
def detail(source: str, task_id: str) -> Response:
    """The shareable page of one task."""
    task = get_task_or_404(source, task_id)
    return make_response(render_template(DETAIL_TEMPLATE, **detail_context(task)))


@bp.get("/tasks/<source>/<taskid:task_id>/status")
def status(source: str, task_id: str) -> Response:
    """The polling widget: 204 while nothing changed, new markup when it did, 286 once final.

    The page polls with the task's version (``v``) and its family's (``f``): the answer
    carries the family block only when the family changed, else just this task's own cells in
    it (its state, its time so far).
    """
    seen = request.args.get("v", type=int)
    # The most frequent request of all: two columns decide it, the task is loaded only after.
    if seen is not None and store.unchanged_since(source, task_id, seen):
        return Response(status=204)
    task = get_task_or_404(source, task_id)
    context = detail_context(task)
    blocks = ["status", "history", "details", "upstream_actions"]
    own_cells_alone = request.args.get("f") == context["family_version"]
    if not own_cells_alone:
        blocks.append("family")
    elif context["own_bar"] is not None:
        blocks += ["family_self_state", "family_self_took"]
    body = render_blocks(
        DETAIL_TEMPLATE, blocks, oob_blocks=True, own_cells_alone=own_cells_alone, **context
    )
    return make_response(body, STOP_POLLING if task.terminal else 200)


@bp.get("/tasks/<source>/<taskid:task_id>/raw.json")
def raw_payload(source: str, task_id: str) -> Response:
    """The last upstream payload as a file."""
    task = get_task_or_404(source, task_id)
    response = make_response(json.dumps(task.raw, indent=2, sort_keys=True, ensure_ascii=False))
    response.mimetype = "application/json"
    filename = secure_filename(f"{task.source}-{task.task_id}.json") or "task.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.post("/tasks/<source>/<taskid:task_id>/annotations")
def annotate(source: str, task_id: str) -> Response:
    """Save the task's labels and note."""
    task = get_task_or_404(source, task_id)
    store.set_annotations(task, request.form.get("labels", ""), request.form.get("note", ""))
    audit.record(
        "task.annotate", audit.task_target(source, task_id), labels=task.labels, note=task.note
    )
    db.session.commit()
    if is_htmx():
        context = detail_context(task)
        return make_response(render_block(DETAIL_TEMPLATE, "annotations", saved=True, **context))
    flash("Labels and note saved.", "info")
    return redirect(url_for("tasks.detail", source=source, task_id=task_id), 303)


@bp.post("/tasks/<source>/<taskid:task_id>/refresh")
# A viewer may ask: it fetches sooner what the refresher fetches anyway, and changes nothing
# that anyone wrote.
@requires(Role.VIEWER)
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
    audit.record("task.untrack", audit.task_target(source, task_id))
    db.session.commit()
    flash(f"Stopped tracking {task_id}.", "info")
    return redirect(url_for("tasks.index"), 303)

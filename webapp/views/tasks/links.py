"""Tracking a linked task from the page of the task that leads to it (webapp.links)."""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import url_for
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.access.guard import requires
from webapp.access.roles import Role
from webapp.db import store
from webapp.db.models import db
from webapp.links.family import link_rows
from webapp.refresher.background import wake_background
from webapp.views.tasks import bp
from webapp.web.htmx import is_htmx
from webapp.web.lookup import get_task_or_404
from webapp.web.task_page import DETAIL_TEMPLATE
from webapp.web.task_page import detail_context


@bp.post("/tasks/<source>/<taskid:task_id>/links/<int:link_id>/track")
@requires(Role.EDITOR)
def track_link(source: str, task_id: str, link_id: int) -> Response:
    """Track one of the task's found links (the refresher fetches it next)."""
    task = get_task_or_404(source, task_id)
    row = next((r for r in link_rows(task) if r.link_id == link_id), None)
    if row is None:
        abort(404, description=f"{task_id} has no such link.")
    if not row.trackable or row.source is None:
        message = f"{row.task_id} cannot be tracked from here: it is {row.status.replace('_', ' ')}"
        message += " or tracked already." if row.status == "found" else "."
        abort(409, description=message)
    try:
        store.track(row.source, row.task_id, via="link")
    except (store.UnknownSource, ValueError) as exc:
        abort(409, description=f"{row.task_id} cannot be tracked: {exc}")
    audit.record("task.track", audit.task_target(row.source, row.task_id), via="link")
    db.session.commit()
    wake_background(current_app)
    if is_htmx():
        return make_response(render_block(DETAIL_TEMPLATE, "family", **detail_context(task)))
    flash(f"Tracking {row.task_id} on {row.source}.", "info")
    return redirect(url_for("tasks.detail", source=source, task_id=task_id) + "#task-family", 303)

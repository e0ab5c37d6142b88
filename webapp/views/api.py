"""``/api/v1``: the same tasks as the pages, as JSON (DESIGN.md, "Normalized task")."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for

from webapp.listing import pages
from webapp.listing.counts import state_counts
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.web.lookup import get_task_or_404
from webapp.web.serialize import task_json

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.get("/tasks")
def list_tasks() -> Response:
    """Tasks with the same filters, search, sort and paging as ``/``."""
    try:
        query = TaskQuery.from_args(request.args, default_limit=current_app.config["PAGE_SIZE"])
    except QueryError as exc:
        response = jsonify({"error": str(exc)})
        response.status_code = 400
        return response
    page = pages.list_tasks(query)
    counts = state_counts(query)
    return jsonify(
        {
            "tasks": [task_json(t, with_history=False) for t in page.tasks],
            "total": counts.total,
            "total_exact": counts.exact,
            "next": url_for("api.list_tasks", **query.args(after=page.next_cursor), _external=True)
            if page.next_cursor
            else None,
            "prev": url_for("api.list_tasks", **query.args(before=page.prev_cursor), _external=True)
            if page.prev_cursor
            else None,
        }
    )


@bp.get("/tasks/<source>/<taskid:task_id>")
def get_task(source: str, task_id: str) -> Response:
    """One task, with its history."""
    return jsonify(task_json(get_task_or_404(source, task_id)))

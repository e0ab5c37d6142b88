"""``/api/v1``: the same tasks as the pages, as JSON (DESIGN.md, "Normalized task")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for

from webapp import queries
from webapp.models import Task
from webapp.views.tasks import get_task_or_404

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def task_json(task: Task, *, with_history: bool = True) -> dict[str, Any]:
    """The normalized task object."""
    links = dict(task.links or {})
    links["self"] = url_for(
        "tasks.detail", source=task.source, task_id=task.task_id, _external=True
    )
    data: dict[str, Any] = {
        "source": task.source,
        "provider": task.provider,
        "task_id": task.task_id,
        "state": task.state,
        "upstream_status": task.upstream_status,
        "terminal": task.terminal,
        "task_type": task.task_type,
        "name": task.name,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "finished_at": iso(task.finished_at),
        "error": task.error,
        "links": links,
        "details": task.details or {},
        "raw": task.raw,
        "last_fetched_at": iso(task.last_fetched_at),
        "fetch_error": task.fetch_error,
        "fetch_error_kind": task.fetch_error_kind,
        "gone_upstream": task.gone_upstream,
    }
    if with_history:
        data["history"] = [
            {"at": iso(e.at), "state": e.state, "upstream_status": e.upstream_status}
            for e in task.events
        ]
    return data


@bp.get("/tasks")
def list_tasks() -> Response:
    """Tasks with the same filters, search, sort and paging as ``/``."""
    try:
        query = queries.TaskQuery.from_args(
            request.args, default_limit=current_app.config["PAGE_SIZE"]
        )
    except queries.QueryError as exc:
        response = jsonify({"error": str(exc)})
        response.status_code = 400
        return response
    page = queries.list_tasks(query)
    counts = queries.state_counts(query)
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

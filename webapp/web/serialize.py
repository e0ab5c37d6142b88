"""The normalized task object (DESIGN.md, "Normalized task"), shared by the API and exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from webapp.db.models import Task


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

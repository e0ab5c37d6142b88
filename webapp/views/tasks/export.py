"""Export the list's current view (every page of it) as CSV or JSON, streamed.

Routes on the ``tasks`` blueprint (``tasks.export``), taking the same query string as ``/``.
Rows are read a keyset page at a time and written as they come, so memory stays flat however
many tasks match.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response
from flask import jsonify
from flask import stream_with_context
from flask import url_for

from webapp.db.models import Task
from webapp.db.models import utcnow
from webapp.listing.pages import iter_tasks
from webapp.listing.query import QueryError
from webapp.views.tasks import bp
from webapp.views.tasks.index import parse_query
from webapp.web.serialize import iso
from webapp.web.serialize import task_json

CSV_COLUMNS = (
    "source",
    "provider",
    "task_id",
    "state",
    "upstream_status",
    "terminal",
    "task_type",
    "name",
    "created_at",
    "updated_at",
    "finished_at",
    "duration_seconds",
    "error",
    "fetch_error",
    "labels",
    "note",
    "last_fetched_at",
    "url",
)
#: Rows read per query (one keyset page): memory stays flat however many tasks match.
BATCH = 500
#: A spreadsheet reads a cell starting with one of these as a formula: upstream text must not
#: be able to run one (OWASP, "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_row(task: Task) -> list[Any]:
    duration = (
        round((task.finished_at - task.created_at).total_seconds(), 3)
        if task.created_at and task.finished_at
        else None
    )
    values = {
        "source": task.source,
        "provider": task.provider,
        "task_id": task.task_id,
        "state": task.state,
        "upstream_status": task.upstream_status,
        "terminal": task.terminal,
        "task_type": task.task_type,
        "name": task.name,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "finished_at": task.finished_at,
        "duration_seconds": duration,
        "error": task.error,
        "fetch_error": task.fetch_error,
        "labels": " ".join(task.labels or []),
        "note": task.note,
        "last_fetched_at": task.last_fetched_at,
        "url": url_for("tasks.detail", source=task.source, task_id=task.task_id, _external=True),
    }
    return [_cell(values[name]) for name in CSV_COLUMNS]


def _csv(tasks: Iterator[Task]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for index, task in enumerate(tasks, 1):
        writer.writerow(_csv_row(task))
        if index % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(tasks: Iterator[Task]) -> Iterator[str]:
    yield "["
    for index, task in enumerate(tasks):
        data = {
            **task_json(task, with_history=False),
            "labels": task.labels or [],
            "note": task.note,
        }
        yield ("," if index else "") + "\n" + json.dumps(data, ensure_ascii=False)
    yield "\n]\n"


@bp.get("/tasks/export.<any(csv, json):fmt>")
def export(fmt: str) -> Response:
    """Every task of the view (all pages, in the view's order) as a CSV or JSON download."""
    try:
        query = parse_query()
    except QueryError as exc:
        response = jsonify({"error": str(exc)})
        response.status_code = 400
        return response
    rows = iter_tasks(query, batch=BATCH)
    body = _csv(rows) if fmt == "csv" else _json(rows)
    filename = f"tasks-{utcnow():%Y%m%dT%H%M%SZ}.{fmt}"
    return Response(
        stream_with_context(body),
        mimetype="text/csv" if fmt == "csv" else "application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

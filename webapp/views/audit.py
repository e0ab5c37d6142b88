"""``/audit``: the audit log for admins, filtered by the query string, and its exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint
from flask import Response
from flask import make_response
from flask import render_template
from flask import request
from flask import stream_with_context

from webapp.access import audit
from webapp.access.guard import requires
from webapp.access.roles import Role
from webapp.db.models import AuditEvent

bp = Blueprint("audit", __name__, url_prefix="/audit")

CSV_COLUMNS = ("at", "actor", "actor_kind", "action", "target", "details", "remote_addr")
#: A spreadsheet runs a cell that starts with one of these as a formula; targets come from
#: upstream ids and names, which are not ours to trust.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@bp.get("")
@requires(Role.ADMIN)
def index() -> Response:
    """The newest events first, a page at a time, with the filters in the query string."""
    audit_filter = audit.AuditFilter.from_args(request.args)
    found = audit.page(audit_filter, audit.PAGE_SIZE)
    return make_response(
        render_template(
            "audit/list.html",
            filter=audit_filter,
            page=found,
            actions=audit.known_actions(),
            action_labels=audit.ACTIONS,
            actors=audit.known_actors(),
        ),
        400 if audit_filter.problems else 200,
    )


@bp.get("/export.csv")
@requires(Role.ADMIN)
def export_csv() -> Response:
    """Every matching event as CSV, streamed."""
    audit_filter = audit.AuditFilter.from_args(request.args)
    return _download(_csv_lines(audit_filter), "text/csv", "taskdeck-audit.csv")


@bp.get("/export.json")
@requires(Role.ADMIN)
def export_json() -> Response:
    """Every matching event as a JSON array, streamed."""
    audit_filter = audit.AuditFilter.from_args(request.args)
    return _download(_json_chunks(audit_filter), "application/json", "taskdeck-audit.json")


def event_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "actor_kind": event.actor_kind,
        "action": event.action,
        "target": event.target,
        "details": event.details,
        "remote_addr": event.remote_addr,
    }


def _download(chunks: Iterator[str], mimetype: str, filename: str) -> Response:
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _csv_lines(audit_filter: audit.AuditFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(list(CSV_COLUMNS))
    for event in audit.stream(audit_filter):
        row = event_dict(event)
        row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
        yield line([_cell(row[column]) for column in CSV_COLUMNS])


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _json_chunks(audit_filter: audit.AuditFilter) -> Iterator[str]:
    yield "["
    separator = "\n"
    for event in audit.stream(audit_filter):
        yield separator + json.dumps(event_dict(event), ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"

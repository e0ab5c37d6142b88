"""``/api/v1``: the same tasks as the pages, as JSON (DESIGN.md, "Normalized task").

Answers are the pydantic models of :mod:`webapp.web.serialize`; ``/api/v1/openapi.json``
describes them.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for
from pydantic import BaseModel

from webapp import actions
from webapp.access import audit
from webapp.db.models import db
from webapp.listing import pages
from webapp.listing.counts import state_counts
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.refresher.background import wake_background
from webapp.web import openapi
from webapp.web.lookup import get_task_or_404
from webapp.web.serialize import ActionOut
from webapp.web.serialize import ErrorOut
from webapp.web.serialize import TaskPageOut
from webapp.web.serialize import task_out

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _answer(model: BaseModel, status: int = 200, exclude: object = None) -> Response:
    return Response(
        model.model_dump_json(exclude=exclude),  # type: ignore[arg-type]
        status=status,
        mimetype="application/json",
    )


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(openapi.document())


@bp.get("/tasks")
def list_tasks() -> Response:
    """Tasks with the same filters, search, sort and paging as ``/``."""
    try:
        query = TaskQuery.from_args(request.args, default_limit=current_app.config["PAGE_SIZE"])
    except QueryError as exc:
        return _answer(ErrorOut(error=str(exc), status=400), 400)
    page = pages.list_tasks(query)
    counts = state_counts(query)
    return _answer(
        TaskPageOut(
            tasks=[task_out(t, with_history=False) for t in page.tasks],
            total=counts.total,
            total_exact=counts.exact,
            next=url_for("api.list_tasks", **query.args(after=page.next_cursor), _external=True)
            if page.next_cursor
            else None,
            prev=url_for("api.list_tasks", **query.args(before=page.prev_cursor), _external=True)
            if page.prev_cursor
            else None,
        ),
        # A page's tasks come without their history (one query per task otherwise).
        exclude={"tasks": {"__all__": {"history"}}},
    )


@bp.get("/tasks/<source>/<taskid:task_id>")
def get_task(source: str, task_id: str) -> Response:
    """One task, with its history."""
    return _answer(task_out(get_task_or_404(source, task_id)))


#: The API's status for each outcome of an action.
ACTION_STATUS = {"done": 200, "refused": 409, "unavailable": 409, "failed": 502}


@bp.post("/tasks/<source>/<taskid:task_id>/actions/<action>")
def act(source: str, task_id: str, action: str) -> Response:
    """Take an upstream action (``cancel``, ``delete``, ``retry``) on the task: 200 when the
    upstream accepted it, 409 when the task's state does not allow it (or the upstream said
    no), 404 for an unknown action or task, 502 when the upstream failed."""
    task = get_task_or_404(source, task_id)
    try:
        attempt = actions.perform(task, action, audit.current_actor()[0])
    except actions.UnknownAction as exc:
        return _answer(ErrorOut(error=str(exc), status=404), 404)
    db.session.commit()
    wake_background(current_app)
    status = ACTION_STATUS[attempt.outcome]
    answer = ActionOut(
        action=attempt.action,
        outcome=attempt.outcome,
        message=attempt.message,
        task=task_out(task),
    )
    return _answer(answer, status)

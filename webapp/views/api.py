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
from webapp.access.guard import requires
from webapp.access.roles import Role
from webapp.db.models import db
from webapp.listing import pages
from webapp.listing.counts import state_counts
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.refresher.background import wake_background
from webapp.sources.registry import registry
from webapp.web import openapi
from webapp.web import push
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
    return jsonify(openapi.document(registry().names()))


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


@bp.post("/tasks")
@requires(Role.EDITOR)
def push_tasks() -> Response:
    """Track one task (an object) or several (a list), idempotently, without waiting on any
    upstream: new tasks are due at once and the refresher is woken. Answers the task objects:
    201 (with ``Location`` for one object) when any is new, 200 when all were tracked already;
    400 naming each bad item and field (nothing tracked), 413 past the body limit, 415 for a
    body that is not JSON."""
    if not request.is_json:
        return _answer(ErrorOut(error=push.NOT_JSON, status=415), 415)
    body = _body_within(push.MAX_BODY_BYTES)
    if body is None:
        return _answer(ErrorOut(error=push.TOO_LARGE, status=413), 413)
    try:
        pushed = push.read(body, registry())
    except push.PushRefused as refusal:
        return _answer(refusal.answer(), 400)
    tracked = push.track(pushed)
    # Drawn before the commit, so it shows what was posted even if the refresher, woken below
    # (or a worker) fetches the new tasks at once.
    answer = push.answer(pushed, tracked)
    db.session.commit()
    created = any(new for _, new in tracked)
    if created:
        wake_background(current_app)
    response = _answer(answer, 201 if created else 200)
    if created and pushed.single:
        response.headers["Location"] = push.location(tracked[0][0])
    return response


def _body_within(limit: int) -> bytes | None:
    """The request body, or ``None`` when it is longer than ``limit`` bytes (said up front by
    Content-Length, or found while reading a chunked body: never read past the limit)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = request.stream.read(limit + 1)
    return body if len(body) <= limit else None


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

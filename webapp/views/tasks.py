"""The task list, the task detail page and the fragments htmx polls. Reads the cache only."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
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

from webapp import queries
from webapp import store
from webapp.htmx import STOP_POLLING
from webapp.htmx import add_vary
from webapp.htmx import is_htmx
from webapp.htmx import is_partial
from webapp.models import Task
from webapp.models import db
from webapp.models import utcnow
from webapp.providers import PROVIDERS
from webapp.tracking import parse_task_references

bp = Blueprint("tasks", __name__)

LIST_TEMPLATE = "tasks/list.html"
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


def list_context(query: queries.TaskQuery) -> dict[str, Any]:
    page = queries.list_tasks(query)
    return {
        "query": query,
        "page": page,
        "counts": queries.state_counts(query),
        "live": live_context([t for t in page.tasks if not t.terminal]),
    }


def live_context(active: list[Task], since: datetime | None = None) -> dict[str, Any]:
    """What the list's one poller needs: the ids of the active rows and a watermark."""
    return {
        "ids": [t.id for t in active],
        "since": (since or utcnow()).isoformat(),
        "interval": current_app.config["UI_POLL_SECONDS"],
    }


@bp.get("/")
def index() -> Response:
    """The task list; every filter, the search, the sort and the page are in the query string."""
    try:
        query = queries.TaskQuery.from_args(
            request.args, default_limit=current_app.config["PAGE_SIZE"]
        )
    except queries.QueryError as exc:
        query = queries.TaskQuery()
        context = list_context(query)
        context["query_error"] = str(exc)
        return add_vary(make_response(render_template(LIST_TEMPLATE, **context), 400))
    context = list_context(query)
    if is_partial():
        return add_vary(make_response(render_block(LIST_TEMPLATE, "results", **context)))
    return add_vary(make_response(render_template(LIST_TEMPLATE, **context)))


@bp.get("/tasks/live")
def live() -> Response:
    """One request per page per interval: the rows that changed since ``since``, out of band.

    Answers 286 (stop polling) once none of the page's rows is active any more.
    """
    ids = [int(part) for part in request.args.get("ids", "").split(",") if part.isdigit()][:500]
    try:
        since = datetime.fromisoformat(request.args.get("since", ""))
    except ValueError:
        since = datetime.fromtimestamp(0, UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    now = utcnow()
    changed = queries.changed_tasks(ids, since)
    still_active = [i for i in ids if i not in {t.id for t in changed if t.terminal}]
    active_tasks = (
        db.session.scalars(
            db.select(Task).where(Task.id.in_(still_active), Task.terminal.is_(False))
        ).all()
        if still_active
        else []
    )
    live = live_context(list(active_tasks), since=now)
    body = render_template("tasks/_live.html", changed=changed, live=live)
    return make_response(body, 200 if live["ids"] else STOP_POLLING)


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


@bp.post("/tasks/track")
def track() -> Response:
    """Start tracking one or many task ids (or upstream URLs) pasted into the form."""
    registry = current_app.extensions["taskdeck.sources"]
    source_name = request.form.get("source", "").strip()
    text = request.form.get("task_ids", "")
    references, problems = parse_task_references(text, source_name or None, registry)
    tracked: list[Task] = []
    for source, task_id in references:
        try:
            task, created = store.track(source, task_id)
        except (store.UnknownSource, ValueError) as exc:
            problems.append(f"{task_id}: {exc}")
            continue
        tracked.append(task)
    db.session.commit()
    for problem in problems:
        flash(problem, "error")
    if len(tracked) == 1 and not problems:
        task = tracked[0]
        flash(f"Tracking {task.task_id}; the first fetch is on its way.", "info")
        return redirect(url_for("tasks.detail", source=task.source, task_id=task.task_id), 303)
    if tracked:
        flash(f"Tracking {len(tracked)} tasks.", "info")
    return redirect(request.form.get("next") or url_for("tasks.index"), 303)


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

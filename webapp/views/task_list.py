"""The task list (``/``), its live-update fragment, and tracking from the list.

Routes live on the ``tasks`` blueprint defined in :mod:`webapp.views.tasks`, so endpoint names
stay ``tasks.index``, ``tasks.live`` and ``tasks.track``.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Response
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block

from webapp import queries
from webapp import store
from webapp.htmx import STOP_POLLING
from webapp.htmx import add_vary
from webapp.htmx import is_partial
from webapp.models import Task
from webapp.models import db
from webapp.models import utcnow
from webapp.tracking import parse_task_references
from webapp.views.tasks import bp

LIST_TEMPLATE = "tasks/list.html"


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



"""Upstream actions from the pages: one task's buttons, and the same action on the ticked rows.

Editors and admins only (the guard's default for a POST), refused in read-only mode, CSRF
checked like every form. The work is :mod:`webapp.actions`; these views show the answer: in
place for htmx (the actions block, with the history swapped out of band), else a redirect with
a flash.
"""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from webapp import actions
from webapp.access import audit
from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing.pages import tasks_by_ids
from webapp.providers.spec import ACTION_NAMES
from webapp.refresher.background import wake_background
from webapp.views.tasks import bp
from webapp.views.tasks.index import MAX_BULK
from webapp.web.htmx import is_htmx
from webapp.web.lookup import get_task_or_404
from webapp.web.task_page import DETAIL_TEMPLATE
from webapp.web.task_page import detail_context
from webapp.web.urls import local_path


@bp.post("/tasks/<source>/<taskid:task_id>/actions/<action>")
def act(source: str, task_id: str, action: str) -> Response:
    """Take an upstream action on the task (after the page's confirmation)."""
    task = get_task_or_404(source, task_id)
    try:
        attempt = actions.perform(task, action, audit.current_actor()[0])
    except actions.UnknownAction as exc:
        abort(404, description=str(exc))
    db.session.commit()
    wake_background(current_app)
    if is_htmx():
        context = detail_context(task)
        body = render_block(DETAIL_TEMPLATE, "upstream_actions", action_result=attempt, **context)
        body += render_block(DETAIL_TEMPLATE, "history", oob_blocks=True, **context)
        # 200 whatever the outcome: htmx swaps no 4xx answer, and the block says what happened.
        return make_response(body)
    flash(result_line(attempt), "info" if attempt.succeeded else "error")
    return redirect(url_for("tasks.detail", source=source, task_id=task_id), 303)


@bp.post("/tasks/actions")
def act_selected() -> Response:
    """The same action on the rows ticked on the list: first what will be attempted and what
    skipped (a confirmation page), then, once confirmed, each task's result."""
    name = request.form.get("action", "")
    ids = [int(v) for v in request.form.getlist("task") if v.isdigit()][:MAX_BULK]
    tasks = tasks_by_ids(ids)
    back = local_path(request.form.get("next"))
    if not tasks:
        flash("Tick the tasks to act on first.", "error")
        return redirect(back, 303)
    if name not in ACTION_NAMES:
        flash("Choose an action for the ticked tasks.", "error")
        return redirect(back, 303)
    if request.form.get("confirmed") != "1":
        ready = [t for t in tasks if name in actions.available_names(t)]
        skipped = [t for t in tasks if t not in ready]
        return make_response(
            render_template(
                "tasks/bulk_action.html",
                action=name,
                ready=ready,
                skipped=skipped,
                consequence=_consequences(name, ready),
                outcome_words=actions.OUTCOME_WORDS,
                back=back,
            )
        )
    actor = audit.current_actor()[0]
    results = [_attempt_or_skip(task, name, actor) for task in tasks]
    db.session.commit()
    wake_background(current_app)
    return make_response(
        render_template(
            "tasks/bulk_action.html",
            action=name,
            results=results,
            outcome_words=actions.OUTCOME_WORDS,
            back=back,
        )
    )


def _attempt_or_skip(task: Task, name: str, actor: str) -> actions.Attempt:
    """The attempt on one ticked task; an upstream without the action is skipped, audited."""
    try:
        return actions.perform(task, name, actor)
    except actions.UnknownAction as exc:
        audit.record(
            "task.action",
            audit.task_target(task.source, task.task_id),
            action=name,
            outcome="unavailable",
            message=str(exc),
        )
        return actions.Attempt(task, name, "unavailable", str(exc))


def _consequences(name: str, tasks: list[Task]) -> list[str]:
    """What the action does on each upstream among ``tasks``, once each."""
    found: list[str] = []
    for task in tasks:
        spec = next((a for a in actions.declared(task) if a.name == name), None)
        if spec is not None and spec.consequence not in found:
            found.append(spec.consequence)
    return found


def result_line(attempt: actions.Attempt) -> str:
    """One line for a flash or a result list: "cancel of X: accepted upstream (message)"."""
    word = actions.OUTCOME_WORDS[attempt.outcome]
    return f"{attempt.action.capitalize()} of {attempt.task.task_id}: {word}. {attempt.message}"

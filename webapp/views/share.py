"""Share links: making and revoking them from a task's page, and ``/share/<token>``, the
read-only page of that one task for someone without an account.

The share pages are public: the signed token in the URL is the only credential they take, and
they validate it themselves (:func:`webapp.access.shares.resolve`). They render the task page's
own template with a context that has no way out: no site navigation, no actions or forms, no
links to other tasks; their status fragment polls under the same token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import abort
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_blocks
from werkzeug.wrappers import Response

from webapp import logs
from webapp.access import shares
from webapp.access.guard import public
from webapp.access.guard import requires
from webapp.access.roles import Role
from webapp.db.models import ShareLink
from webapp.db.models import Task
from webapp.db.models import db
from webapp.web.htmx import STOP_POLLING
from webapp.web.lookup import get_task_or_404
from webapp.web.task_page import DETAIL_TEMPLATE
from webapp.web.task_page import detail_context
from webapp.web.urls import local_path

bp = Blueprint("share", __name__)
bp.record_once(lambda _state: shares.hide_tokens_in_logs(logs.HANDLER_NAME))

SHARE_TEMPLATE = "share/task.html"
NO_LONGER_VALID = "This share link is no longer valid: it expired, was revoked, or is wrong."


@bp.post("/tasks/<source>/<taskid:task_id>/share")
@requires(Role.EDITOR)
def create(source: str, task_id: str) -> Response:
    """Make a read-only link to this task that expires after the chosen time."""
    task = get_task_or_404(source, task_id)
    try:
        link, token = shares.create_link(task, request.form.get("expires", ""))
    except shares.ShareProblem as exc:
        flash(str(exc), "error")
        return redirect(url_for("tasks.detail", source=source, task_id=task_id), 303)
    db.session.commit()
    response = make_response(
        render_template(
            "share/created.html",
            task=task,
            link=link,
            url=url_for("share.page", token=token, _external=True),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/share/links/<int:link_id>/revoke")
@requires(Role.EDITOR)
def revoke(link_id: int) -> Response:
    """End a share link now."""
    link = db.get_or_404(ShareLink, link_id, description="There is no such share link.")
    shares.revoke(link)
    db.session.commit()
    flash(f"Revoked the share link to {link.task_id}.", "info")
    fallback = url_for("tasks.detail", source=link.source, task_id=link.task_id)
    return redirect(local_path(request.form.get("next") or fallback), 303)


@bp.get("/share/<token>")
@public
def page(token: str) -> Response:
    """The shared task's page, read-only."""
    link, task = _resolve_or_404(token)
    context = _shared_context(token, link, task)
    return _private(make_response(render_template(SHARE_TEMPLATE, **context)))


@bp.get("/share/<token>/status")
@public
def status(token: str) -> Response:
    """The shared page's polling fragment: as the task page's, 286 once the task is final."""
    link, task = _resolve_or_404(token)
    if request.args.get("v", type=int) == task.version and not task.terminal:
        return _private(Response(status=204))
    context = _shared_context(token, link, task)
    body = render_blocks(
        DETAIL_TEMPLATE, ["status", "history", "details"], oob_blocks=True, **context
    )
    return _private(make_response(body, STOP_POLLING if task.terminal else 200))


@bp.app_template_global("share_links_for")
def share_links_for(source: str, task_id: str) -> list[ShareLink]:
    """The task page's list of its open links (a global, so that page's view stays as it is)."""
    return shares.active_links_for(source, task_id)


@bp.app_template_global("share_expiries")
def share_expiries() -> tuple[shares.Expiry, ...]:
    return shares.EXPIRIES


def _resolve_or_404(token: str) -> tuple[ShareLink, Task]:
    found = shares.resolve(token)
    if found is None:
        # Its own page, not the site's 404: that one offers the task list and the sources.
        page = render_template("share/invalid.html", message=NO_LONGER_VALID)
        abort(_private(make_response(page, 404)))
    return found


def _shared_context(token: str, link: ShareLink, task: Task) -> dict[str, Any]:
    """The task page's context, less everything that leads elsewhere in Taskdeck."""
    return {
        **detail_context(task),
        "share_token": token,
        "share_link": link,
        # Related and linked tasks are other tasks; the source's health banner links to /sources.
        "related": [],
        "task_links": [],
        "family": [],
        "own_bar": None,
        "source_health": None,
    }


def _private(response: Response) -> Response:
    # The token is in the URL: keep it out of shared caches, search engines and the Referer
    # header sent to the upstream links the page shows.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response

"""Saved views: a named task-list filter shared with the whole team, and the team's default.

A saved view is the list's query string (without paging) under a name. ``/views/<id>`` is a
link to it that keeps working when the view is changed; ``/`` alone opens the default one.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.db.models import SavedView
from webapp.db.models import db
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.listing.saved_views import query_string
from webapp.listing.saved_views import view_url
from webapp.web.urls import local_path

bp = Blueprint("saved_views", __name__, url_prefix="/views")

MAX_NAME = 120


def _get_or_404(view_id: int) -> SavedView:
    return db.get_or_404(SavedView, view_id, description="There is no such saved view.")


@bp.post("")
def create() -> Response:
    """Save the list's current view under a name (optionally as the team's default)."""
    name = " ".join(request.form.get("name", "").split())
    back = local_path(request.form.get("next"))
    try:
        query = TaskQuery.from_args(
            MultiDict(parse_qsl(request.form.get("query", ""))),
            default_limit=current_app.config["PAGE_SIZE"],
        )
    except QueryError as exc:
        flash(f"This view cannot be saved: {exc}", "error")
        return redirect(back, 303)
    if not name or len(name) > MAX_NAME:
        flash(f"Give the view a name (at most {MAX_NAME} characters).", "error")
        return redirect(back, 303)
    if db.session.scalar(sa.select(SavedView.id).where(SavedView.name == name)) is not None:
        flash(f"A view called “{name}” exists already; choose another name.", "error")
        return redirect(back, 303)
    view = SavedView(name=name, query_string=query_string(query))
    db.session.add(view)
    if request.form.get("default"):
        _make_default(view)
    audit.record("view.create", name, query=view.query_string, default=bool(view.is_default))
    db.session.commit()
    flash(f"Saved the view “{name}” for the team.", "info")
    return redirect(view_url(view), 303)


@bp.get("/<int:view_id>")
def open_view(view_id: int) -> Response:
    """A lasting link to a saved view: it follows the view when it changes."""
    return redirect(view_url(_get_or_404(view_id)), 302)


@bp.post("/<int:view_id>/default")
def set_default(view_id: int) -> Response:
    """Make a view the team's default (what ``/`` opens), or stop it being the default."""
    view = _get_or_404(view_id)
    if request.form.get("default") == "1":
        _make_default(view)
        flash(f"“{view.name}” is now what the task list opens with.", "info")
    else:
        view.is_default = False
        flash("The task list opens with every task again.", "info")
    audit.record("view.default", view.name, default=view.is_default)
    db.session.commit()
    return redirect(local_path(request.form.get("next")), 303)


@bp.post("/<int:view_id>/delete")
def delete(view_id: int) -> Response:
    """Delete a saved view (for everyone)."""
    view = _get_or_404(view_id)
    db.session.delete(view)
    audit.record("view.delete", view.name, query=view.query_string)
    db.session.commit()
    flash(f"Deleted the view “{view.name}”.", "info")
    return redirect(local_path(request.form.get("next")), 303)


def _make_default(view: SavedView) -> None:
    db.session.execute(
        sa.update(SavedView).where(SavedView.is_default.is_(True)).values(is_default=False)
    )
    view.is_default = True

"""Saved views: a named task-list filter shared with the team, and the team's default one."""

from __future__ import annotations

from urllib.parse import urlencode

import sqlalchemy as sa
from flask import url_for

from webapp.db.models import SavedView
from webapp.db.models import db
from webapp.listing.query import TaskQuery


def all_views() -> list[SavedView]:
    return list(db.session.scalars(sa.select(SavedView).order_by(sa.func.lower(SavedView.name))))


def default_view() -> SavedView | None:
    return db.session.scalar(sa.select(SavedView).where(SavedView.is_default.is_(True)).limit(1))


def query_string(query: TaskQuery) -> str:
    """The canonical query string of a view: the same view always gives the same string."""
    return urlencode(query.args())


def view_url(view: SavedView) -> str:
    return url_for("tasks.index") + "?" + view.query_string


def matching(views: list[SavedView], query: TaskQuery) -> SavedView | None:
    """The saved view that shows exactly ``query`` (to mark it current), if any."""
    wanted = query_string(query)
    return next((v for v in views if v.query_string == wanted), None)

"""``/healthz``: liveness, the database and its schema revision; ``/favicon.ico``."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import jsonify
from flask import redirect
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access.guard import public
from webapp.db import migrate
from webapp.db.models import db
from webapp.db.setup import shown_url
from webapp.version import __version__

bp = Blueprint("health", __name__)


@bp.get("/favicon.ico")
@public
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page says: send them the SVG."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/healthz")
@public
def healthz() -> Response:
    """200 when the database answers at the schema this code needs, 503 otherwise.

    Says which database (backend, URL without password) and which schema revision it runs, and
    the Taskdeck version, so an operator can tell which deployment answered.
    """
    # ``database`` stays the one word monitors already read; the details sit beside it.
    answer: dict[str, object] = {
        "version": __version__,
        "backend": db.engine.dialect.name,
        "database_url": shown_url(),
    }
    try:
        with db.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
            schema = migrate.state(connection)
    except sa.exc.SQLAlchemyError as exc:
        answer.update(status="error", database=type(exc).__name__)
        return _json(answer, 503)
    answer["schema"] = {"revision": schema.label, "head": schema.head, "current": schema.at_head}
    if not schema.at_head:
        answer.update(status="error", database="ok", error=schema.refusal())
        return _json(answer, 503)
    answer.update(status="ok", database="ok")
    return _json(answer, 200)


def _json(data: dict[str, object], status: int) -> Response:
    response = jsonify(data)
    response.status_code = status
    return response

"""``/healthz``: liveness and a database round trip."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import redirect
from flask import url_for

from webapp.db.models import db

bp = Blueprint("health", __name__)


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page says: send them the SVG."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the database answers, 503 when it does not."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        response = jsonify({"status": "error", "database": type(exc).__name__})
        response.status_code = 503
        return response
    return jsonify({"status": "ok", "database": "ok"})

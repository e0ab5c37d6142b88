"""Per-person display preferences, kept in cookies so the server renders them."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import request
from werkzeug.wrappers import Response

from webapp.web.formatting import TIME_MODE_COOKIE
from webapp.web.formatting import TIME_MODES
from webapp.web.urls import local_path

bp = Blueprint("preferences", __name__)

ONE_YEAR = 365 * 24 * 3600


@bp.get("/preferences/time")
def set_time_mode() -> Response:
    """Show times in UTC, in the browser's zone, or relative to now."""
    mode = request.args.get("mode", "")
    if mode not in TIME_MODES:
        abort(
            400, description=f"Unknown time display {mode!r}; use one of {', '.join(TIME_MODES)}."
        )
    response = redirect(local_path(request.args.get("next")), 303)
    response.set_cookie(TIME_MODE_COOKIE, mode, max_age=ONE_YEAR, samesite="Lax", httponly=True)
    return response

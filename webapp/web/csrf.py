"""CSRF protection for forms and htmx requests alike, through Flask-WTF's ``CSRFProtect``.

Pages carry the token twice: a ``csrf_token`` hidden field in each form (for plain
submissions) and ``<body hx-headers='{"X-CSRF-Token": …}'>`` (for every htmx request). Every
write must carry it, except an API call authenticated with ``Authorization: Bearer``: a
browser never adds that header by itself, so such a request cannot be forged from another
site, and scripts using tokens have no page to read a CSRF token from.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: What a person sees when a write is refused for its token.
REFUSAL = "The form expired or came from another site; reload the page and try again."

csrf = CSRFProtect()

SETTINGS: dict[str, Any] = {
    # Checked by :func:`protect` below, which knows about bearer tokens.
    "WTF_CSRF_CHECK_DEFAULT": False,
    "WTF_CSRF_FIELD_NAME": CSRF_FIELD,
    "WTF_CSRF_HEADERS": [CSRF_HEADER],
    # The token is bound to the session (its secret lives in the signed session cookie and
    # goes with it at sign-out), so it needs no clock of its own; an hour's limit would
    # refuse the first click on a dashboard left open since the morning.
    "WTF_CSRF_TIME_LIMIT": None,
}


def is_bearer_api_call() -> bool:
    """An ``/api/`` request authenticated by a bearer token (which the guard then checks)."""
    authorization = request.authorization
    return (
        request.path.startswith("/api/")
        and authorization is not None
        and authorization.type == "bearer"
    )


def protect() -> None:
    """Before every request: refuse a write without the session's token (a 400)."""
    if is_bearer_api_call() or not current_app.config["WTF_CSRF_ENABLED"]:
        return
    csrf.protect()


def refused(error: CSRFError) -> Any:
    """The 400 for a missing or wrong token: the page says what to do; the API says it in
    JSON. (Flask-WTF's own reason, such as "The CSRF token is missing.", is logged by it.)"""
    if request.path.startswith("/api/"):
        answer = jsonify({"error": REFUSAL, "status": 400})
        answer.status_code = 400
        return answer
    error.description = REFUSAL
    return render_template("errors/error.html", error=error), 400


def init_app(app: Flask) -> None:
    for key, value in SETTINGS.items():
        app.config.setdefault(key, value)
    csrf.init_app(app)  # also makes ``csrf_token()`` a template global
    app.before_request(protect)
    app.register_error_handler(CSRFError, refused)

"""CSRF protection for forms and htmx requests: a per-session token, checked on every write."""

from __future__ import annotations

import secrets

from flask import Flask
from flask import abort
from flask import current_app
from flask import request
from flask import session

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if token is None:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(24)
    return token


def check_csrf() -> None:
    """Before every request: refuse a write that does not carry the session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS") or current_app.config.get("CSRF_DISABLED"):
        return
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    if not sent or not secrets.compare_digest(sent, session.get(CSRF_FIELD, "")):
        abort(
            400,
            description=(
                "The form expired or came from another site; reload the page and try again."
            ),
        )


def init_app(app: Flask) -> None:
    app.add_template_global(csrf_token)
    app.before_request(check_csrf)

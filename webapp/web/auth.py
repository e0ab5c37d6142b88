"""Optional sign-in: once ``taskdeck create-user`` has made a user, every page needs one.

With no users the dashboard is open, which suits the demo and a service behind a company
proxy that already authenticates people. Scripts use HTTP basic auth on ``/api/``.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask
from flask import g
from flask import jsonify
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from webapp.db.models import User
from webapp.db.models import db

#: Endpoints reachable without signing in.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "health.healthz", "health.favicon", "static"})
MIN_PASSWORD_LENGTH = 10
MACHINE_PATHS = ("/api/", "/metrics")


def users_exist() -> bool:
    return db.session.scalar(sa.select(sa.exists().select_from(User))) or False


def check_credentials(username: str, password: str) -> User | None:
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if user is not None and check_password_hash(user.password_hash, password):
        return user
    return None


def is_machine_request() -> bool:
    """The API and ``/metrics`` answer scripts: a 401 to authenticate, never a login page."""
    return request.path.startswith(MACHINE_PATHS)


def require_sign_in() -> Response | None:
    """Before every request: let it through, or send the person to the sign-in page."""
    g.user = None
    if request.endpoint in PUBLIC_ENDPOINTS or not users_exist():
        return None
    user_id = session.get("user_id")
    if user_id is not None:
        g.user = db.session.get(User, user_id)
    if g.user is None and request.authorization and request.authorization.type == "basic":
        g.user = check_credentials(
            request.authorization.username or "", request.authorization.password or ""
        )
    if g.user is not None:
        return None
    if is_machine_request():
        refused = jsonify({"error": "Sign in first.", "status": 401})
        refused.status_code = 401
        refused.headers["WWW-Authenticate"] = 'Basic realm="Taskdeck"'
        return refused
    if request.headers.get("HX-Request") == "true":
        response = Response("Sign in first.", status=401, mimetype="text/plain")
        # htmx follows HX-Redirect for fragment requests whose session ran out.
        response.headers["HX-Redirect"] = url_for("auth.login", next=request.full_path)
        return response
    return redirect(url_for("auth.login", next=request.full_path))


def init_app(app: Flask) -> None:
    app.before_request(require_sign_in)

    @app.context_processor
    def signed_in_user() -> dict[str, object]:
        return {"current_user": g.get("user")}

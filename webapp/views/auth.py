"""Signing in and out (``local`` sign-in; the other modes sign people in elsewhere)."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import accounts
from webapp.access import oidc
from webapp.access import proxy
from webapp.access import throttle
from webapp.access.guard import public
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.web.urls import local_path

bp = Blueprint("auth", __name__)

LOGIN_TEMPLATE = "auth/login.html"


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response:
    """Sign in with a user name and password (throttled per name and per client address)."""
    if oidc.is_enabled():
        # No passwords in this mode: the OpenID provider signs people in.
        page = render_template("auth/oidc_login.html", provider_name=oidc.provider_name())
        return make_response(page, 200 if request.method == "GET" else 400)
    if current_app.config["AUTH"] != "local":
        # Nothing to type here: the proxy signs people in, or sign-in is off.
        status = 200 if request.method == "GET" else 400
        return make_response(render_template(LOGIN_TEMPLATE), status)
    if request.method == "GET":
        return make_response(render_template(LOGIN_TEMPLATE, no_users=not accounts.users_exist()))
    username = request.form.get("username", "").strip()
    address = proxy.client_address()
    blocked = throttle.blocked_until(username, address)
    if blocked is None:
        user = accounts.check_password(username, request.form.get("password", ""))
        if user is not None:
            return signed_in(user)
        blocked = throttle.record_failure(username, address)
        if blocked is None:
            flash("Unknown user name or wrong password.", "error")
            return make_response(render_template(LOGIN_TEMPLATE, username=username))
    return too_many_attempts(blocked, username)


def signed_in(user: User) -> Response:
    throttle.record_success(user.username)
    accounts.record_sign_in(user)
    db.session.commit()
    # A new session: whatever a visitor (or someone who planted a cookie) had before is gone.
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    return redirect(local_path(request.args.get("next")), 303)


def too_many_attempts(until: datetime, username: str) -> Response:
    seconds = max(1, int((until - utcnow()).total_seconds()) + 1)
    response = make_response(
        render_template(
            LOGIN_TEMPLATE,
            retry_at=until,
            retry_minutes=(seconds + 59) // 60,
            username=username,
        ),
        429,
    )
    response.headers["Retry-After"] = str(seconds)
    return response


@bp.post("/logout")
@public
def logout() -> Response:
    """Sign out."""
    session.clear()
    return redirect(url_for("auth.login"), 303)

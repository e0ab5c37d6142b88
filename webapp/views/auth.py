"""Signing in and out."""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import oidc
from webapp.access.accounts import check_password
from webapp.access.guard import public
from webapp.web.urls import local_path

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response | str:
    """Sign in."""
    if oidc.is_enabled():
        # No passwords in this mode: the OpenID provider signs people in.
        return render_template("auth/oidc_login.html", provider_name=oidc.provider_name())
    if request.method == "POST":
        user = check_password(request.form.get("username", ""), request.form.get("password", ""))
        if user is not None:
            session.clear()
            session["user_id"] = user.id
            return redirect(local_path(request.args.get("next")), 303)
        flash("Unknown user name or wrong password.", "error")
    return render_template("auth/login.html")


@bp.post("/logout")
@public
def logout() -> Response:
    """Sign out."""
    session.clear()
    return redirect(url_for("auth.login"), 303)

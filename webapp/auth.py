"""Optional sign-in: once ``taskdeck create-user`` has made a user, every page needs one.

With no users the dashboard is open, which suits the demo and a service behind a company
proxy that already authenticates people. Scripts use HTTP basic auth on ``/api/``.
"""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.cli import with_appcontext
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from webapp.models import User
from webapp.models import db
from webapp.views.preferences import local_path

bp = Blueprint("auth", __name__)

#: Endpoints reachable without signing in.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "health.healthz", "static"})
MIN_PASSWORD_LENGTH = 10


def users_exist() -> bool:
    return db.session.scalar(sa.select(sa.exists().select_from(User))) or False


def check_credentials(username: str, password: str) -> User | None:
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if user is not None and check_password_hash(user.password_hash, password):
        return user
    return None


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
    if request.path.startswith("/api/") or request.headers.get("HX-Request") == "true":
        response = Response("Sign in first.", status=401, mimetype="text/plain")
        if request.path.startswith("/api/"):
            response.headers["WWW-Authenticate"] = 'Basic realm="Taskdeck"'
        else:
            # htmx follows HX-Redirect for fragment requests whose session ran out.
            response.headers["HX-Redirect"] = url_for("auth.login", next=request.full_path)
        return response
    return redirect(url_for("auth.login", next=request.full_path))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    """Sign in."""
    if request.method == "POST":
        user = check_credentials(request.form.get("username", ""), request.form.get("password", ""))
        if user is not None:
            session.clear()
            session["user_id"] = user.id
            return redirect(local_path(request.args.get("next")), 303)
        flash("Unknown user name or wrong password.", "error")
    return render_template("auth/login.html")


@bp.post("/logout")
def logout() -> Response:
    """Sign out."""
    session.clear()
    return redirect(url_for("auth.login"), 303)


@click.command("create-user")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--update", is_flag=True, help="Change the password of an existing user.")
@with_appcontext
def create_user_command(username: str, password_stdin: bool, update: bool) -> None:
    """Create a user who can sign in (from then on, signing in is required)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if user is not None and not update:
        raise click.ClickException(
            f"user {username!r} exists (use --update to change its password)"
        )
    if user is None:
        user = User(username=username)
        db.session.add(user)
    user.password_hash = generate_password_hash(password)
    db.session.commit()
    click.echo(f"user {username} {'updated' if update else 'created'}; signing in is now required")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(require_sign_in)
    app.cli.add_command(create_user_command)

    @app.context_processor
    def signed_in_user() -> dict[str, object]:
        return {"current_user": g.get("user")}

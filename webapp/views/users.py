"""``/users``: who may sign in and with which role (admins only).

The accounts logic is :mod:`webapp.access.accounts`'s; these views turn its refusals into
messages. Every change goes through :func:`user_changed`, the one place the audit log is to
hear about it.
"""

from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import accounts
from webapp.access import audit
from webapp.access.guard import requires
from webapp.access.principal import current_principal
from webapp.access.roles import ROLE_NAMES
from webapp.access.roles import Role
from webapp.access.settings import access_settings
from webapp.db.models import User
from webapp.db.models import db

bp = Blueprint("users", __name__, url_prefix="/users")


def _back() -> Response:
    return redirect(url_for("users.index"), 303)


def _user_or_404(user_id: int) -> User:
    return db.get_or_404(User, user_id, description="There is no such user.")


def _role(value: str | None) -> Role | None:
    try:
        return Role.parse(value or "")
    except ValueError:
        return None


@bp.get("")
@requires(Role.ADMIN)
def index() -> str:
    """Everyone who may sign in, their role and their last sign-in."""
    principal = current_principal()
    return render_template(
        "users/list.html",
        users=accounts.list_users(),
        kind_of=accounts.user_kind,
        roles=ROLE_NAMES,
        me=principal.user_id if principal else None,
        password_required=current_app.config["AUTH"] == "local",
        min_password=accounts.MIN_PASSWORD_LENGTH,
        default_role_label=access_settings().default_role.label,
    )


@bp.post("")
@requires(Role.ADMIN)
def create() -> Response:
    """Add someone, with a password (local sign-in) or without (they come through the proxy)."""
    role = _role(request.form.get("role"))
    password = request.form.get("password", "")
    if role is None:
        flash("Choose a role.", "error")
        return _back()
    if not password and current_app.config["AUTH"] == "local":
        flash("Give a password: people sign in here with one.", "error")
        return _back()
    try:
        user = accounts.create_user(
            request.form.get("username", ""),
            role,
            password or None,
            request.form.get("email", "").strip() or None,
        )
    except accounts.AccountError as exc:
        flash(f"Not added: {exc}.", "error")
        return _back()
    audit.record("user.create", user.username, role=role.label)
    db.session.commit()
    flash(f"Added {user.username} as {role.label}.", "info")
    return _back()


@bp.post("/<int:user_id>/role")
@requires(Role.ADMIN)
def set_role(user_id: int) -> Response:
    """Change someone's role (the last admin stays one)."""
    user = _user_or_404(user_id)
    role = _role(request.form.get("role"))
    if role is None:
        flash("Choose a role.", "error")
        return _back()
    before = user.role
    try:
        accounts.set_role(user, role)
    except accounts.AccountError as exc:
        flash(f"Not changed: {exc}.", "error")
        return _back()
    if before != role.label:
        audit.record("user.update", user.username, role=role.label, previous=before)
    db.session.commit()
    flash(f"{user.username} is {role.label}.", "info")
    return _back()


@bp.post("/<int:user_id>/delete")
@requires(Role.ADMIN)
def remove(user_id: int) -> Response:
    """Remove someone (the last admin stays); a session of theirs ends at its next request."""
    user = _user_or_404(user_id)
    try:
        accounts.remove_user(user)
    except accounts.AccountError as exc:
        flash(f"Not removed: {exc}.", "error")
        return _back()
    audit.record("user.delete", user.username)
    db.session.commit()
    flash(f"Removed {user.username}.", "info")
    return _back()

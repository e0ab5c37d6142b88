"""``taskdeck create-user`` and ``taskdeck users``: people who may sign in, and their roles."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from webapp.access import accounts
from webapp.access import audit
from webapp.access.roles import ROLE_NAMES
from webapp.access.roles import Role
from webapp.access.settings import OUTSIDE_SIGN_IN
from webapp.commands.common import fail
from webapp.commands.common import refuse_when_read_only
from webapp.commands.common import with_database
from webapp.db.models import db


@click.command("create-user")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(ROLE_NAMES),
    default=None,
    help="viewer (reads), editor (also tracks, imports, labels) or admin (also sources and "
    "users). New users: viewer unless given.",
)
@click.option("--email", default=None, help="Their e-mail address (optional).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--update",
    is_flag=True,
    help="Change an existing user: the role or e-mail given, or else the password.",
)
@with_appcontext
@refuse_when_read_only
@with_database
def create_user_command(
    username: str, role: str | None, email: str | None, password_stdin: bool, update: bool
) -> None:
    """Create a user who may sign in, or change one with --update.

    With TASKDECK_AUTH=proxy or oidc no password is asked (they sign in elsewhere): create the first
    admin with `taskdeck create-user NAME --role admin` under the name the proxy sends.
    """
    user = accounts.find_user(username.strip())
    if user is not None and not update:
        fail(f"user {user.username!r} exists (use --update to change it)")
    if user is None and update:
        fail(f"there is no user {username.strip()!r} to update")
    # Outside sign-in (a proxy, an OpenID provider) needs no password; a password change
    # needs nothing else asked.
    wants_password = password_stdin or (
        current_app.config["AUTH"] not in OUTSIDE_SIGN_IN
        and (user is None or (role is None and email is None))
    )
    password = _read_password(password_stdin) if wants_password else None
    try:
        if user is None:
            user = accounts.create_user(username, Role.parse(role or "viewer"), password, email)
            done = "created"
        else:
            if role is not None:
                accounts.set_role(user, Role.parse(role))
            if email is not None:
                user.email = email or None
            if password is not None:
                accounts.set_password(user, password)
            done = "updated"
    except accounts.AccountError as exc:
        fail(str(exc))
    audit.record(
        "user.create" if done == "created" else "user.update",
        user.username,
        role=user.role,
        changed=[
            name
            for name, value in (("role", role), ("email", email), ("password", password))
            if value is not None
        ],
    )
    db.session.commit()
    click.echo(f"user {user.username} {done} ({user.role})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@click.command("users")
@with_appcontext
@with_database
def users_command() -> None:
    """List the users: name, role, how they sign in, last sign-in."""
    users = accounts.list_users()
    if not users:
        click.echo("no users (create the first admin: taskdeck create-user NAME --role admin)")
        return
    for user in users:
        last = user.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if user.last_login_at else "never"
        click.echo(f"{user.username:<24} {user.role:<7} {accounts.user_kind(user):<6} {last}")

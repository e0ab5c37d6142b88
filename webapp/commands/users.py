"""``taskdeck create-user``: people who may sign in."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from webapp.access.accounts import MIN_PASSWORD_LENGTH
from webapp.access.accounts import hash_password
from webapp.commands.common import with_database
from webapp.db.models import User
from webapp.db.models import db


@click.command("create-user")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--update", is_flag=True, help="Change the password of an existing user.")
@with_appcontext
@with_database
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
    user.password_hash = hash_password(password)
    db.session.commit()
    click.echo(f"user {username} {'updated' if update else 'created'}; signing in is now required")

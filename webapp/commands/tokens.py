"""``taskdeck token create|revoke|list``: bearer tokens for ``/api/v1`` and ``/metrics``."""

from __future__ import annotations

from datetime import datetime

import click
from flask.cli import with_appcontext

from webapp.access import tokens
from webapp.access.roles import ROLE_NAMES
from webapp.access.roles import Role
from webapp.commands.common import fail
from webapp.commands.common import refuse_when_read_only
from webapp.commands.common import with_database
from webapp.db.models import db


@click.group("token")
def token_group() -> None:
    """API tokens (Authorization: Bearer) for /api/v1 and /metrics."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(ROLE_NAMES),
    default=Role.VIEWER.label,
    show_default=True,
    help="The most the token may do.",
)
@with_appcontext
@refuse_when_read_only
@with_database
def create_token_command(name: str, role: str) -> None:
    """Create a token called NAME and print it, once.

    Standard output carries the token and nothing else, so a script can capture it
    (TOKEN=$(taskdeck token create ci --role viewer)); the notes go to standard error.
    """
    try:
        row, token = tokens.create_token(name, Role.parse(role))
    except tokens.TokenProblem as exc:
        fail(str(exc))
    db.session.commit()
    click.echo(token)
    click.echo(
        f"token {row.name} created with the {row.role} role; it is shown this once, "
        "so store it now",
        err=True,
    )


@token_group.command("revoke")
@click.argument("name")
@with_appcontext
@refuse_when_read_only
@with_database
def revoke_token_command(name: str) -> None:
    """Revoke the token called NAME: it stops working at once."""
    try:
        row = tokens.revoke_token(name)
    except tokens.TokenProblem as exc:
        fail(str(exc))
    db.session.commit()
    click.echo(f"token {row.name} revoked")


@token_group.command("list")
@with_appcontext
@with_database
def list_tokens_command() -> None:
    """List the tokens: name, role, start, creation and last use (never the token itself)."""
    rows = tokens.all_tokens()
    if not rows:
        click.echo("no API tokens (create one with: taskdeck token create NAME --role viewer)")
        return
    click.echo(f"{'NAME':<24} {'ROLE':<7} {'STARTS':<10} {'CREATED':<20} LAST USED")
    for row in rows:
        last_used = _when(row.last_used_at) if row.last_used_at else "never"
        click.echo(
            f"{row.name:<24} {row.role:<7} {row.prefix + '…':<10} "
            f"{_when(row.created_at):<20} {last_used}"
        )


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")

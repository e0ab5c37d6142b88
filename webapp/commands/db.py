"""``taskdeck db upgrade`` / ``current`` / ``revision`` and ``taskdeck init-db``: the schema."""

from __future__ import annotations

import click
from alembic.util import CommandError
from flask import current_app
from flask.cli import AppGroup
from flask.cli import with_appcontext

from webapp.config import ConfigError
from webapp.db import migrate
from webapp.db.models import db
from webapp.db.setup import schema_state
from webapp.db.setup import upgrade_database

db_group = AppGroup("db", help="The database schema: upgrade it, or show its revision.")


@db_group.command("upgrade")
def upgrade_command() -> None:
    """Bring the database to the current schema, keeping every row (safe to run again)."""
    click.echo(_upgrade())


@db_group.command("current")
def current_command() -> None:
    """Show the database's schema revision."""
    try:
        schema = schema_state()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if schema.at_head:
        click.echo(f"{schema.current} (head)")
    else:
        click.echo(f"{schema.current or 'none'}: {schema.refusal()}")


@db_group.command("revision")
@click.argument("message")
def revision_command(message: str) -> None:
    """Write a migration for what the models changed (for developers: on a database at head;
    read and edit the file before committing it)."""
    try:
        path = migrate.new_revision(db.engine, message)
    except CommandError as exc:
        raise click.ClickException(f"cannot write a migration: {exc}") from None
    click.echo(f"wrote {path}")


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database tables, or bring an older database up to date."""
    click.echo(_upgrade())
    click.echo(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")


def _upgrade() -> str:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        before, after = upgrade_database(app)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if before == after:
        return f"database schema at {after.label} (head): nothing to upgrade"
    return f"database schema upgraded from {before.label} to {after.label}"

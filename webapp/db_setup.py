"""Database wiring: the engine settings per backend, table creation, and sources sync."""

from __future__ import annotations

from typing import Any

import click
import sqlalchemy as sa
from flask import Flask
from flask import current_app

from webapp import list_schema
from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.models import Source
from webapp.models import db

#: Milliseconds a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def init_app(app: Flask) -> None:
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        options.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    elif url.get_backend_name() == "postgresql":
        app.config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("pool_pre_ping", True)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
            # Connections opened before the listener (none normally) get the pragmas too.
            db.engine.dispose()
        db.create_all()
        check_schema()
    list_schema.init_app(app)
    app.cli.add_command(init_db_command)


def check_schema() -> None:
    """Fail start-up clearly when the database was made by an older Taskdeck.

    ``create_all`` adds missing tables but never columns, and there are no migrations yet, so a
    missing column would otherwise surface later as an error on some page.
    """
    inspector = sa.inspect(db.engine)
    missing = []
    for table in db.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
    if missing:
        raise ConfigError(
            "the database was created by an older Taskdeck and lacks "
            + ", ".join(missing)
            + ": point TASKDECK_DATABASE_URL at a new database"
            + f" ({db.engine.url.render_as_string(hide_password=True)})"
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web process read while a worker writes; busy_timeout makes writers queue.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sync_sources(app: Flask) -> None:
    """Store configured sources in the database and load the ones added from the UI.

    A source from the file wins over a database one of the same name (DESIGN.md).
    """
    registry = app.extensions["taskdeck.sources"]
    configured: dict[str, SourceConfig] = {s.name: s for s in app.config["SOURCES"]}
    with app.app_context():
        for source in configured.values():
            row = db.session.get(Source, source.name)
            if row is None:
                row = Source(name=source.name)
                db.session.add(row)
            row.provider = source.provider
            row.origin = source.origin
            row.settings = source.public_settings()
        for row in db.session.scalars(sa.select(Source).where(Source.origin == "database")):
            if row.name in configured:
                continue
            try:
                registry.put(build_source(row.settings, origin="database"))
            except ConfigError as exc:
                app.logger.error("source %s from the database is not usable: %s", row.name, exc)
        db.session.commit()


def save_database_source(source: SourceConfig) -> None:
    """Store a source added or edited in the UI, and start using it."""
    row = db.session.get(Source, source.name)
    if row is None:
        row = Source(name=source.name)
        db.session.add(row)
    row.provider = source.provider
    row.origin = "database"
    row.settings = source.model_dump(exclude={"credentials", "origin"}, exclude_none=True)
    db.session.commit()
    current_app.extensions["taskdeck.sources"].put(source)


@click.command("init-db")
def init_db_command() -> None:
    """Create the database tables (the app does this at start too)."""
    db.create_all()
    click.echo(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")

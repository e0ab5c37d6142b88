"""Database wiring: the engine settings per backend, table creation, and sources sync."""

from __future__ import annotations

from typing import Any

import click
import sqlalchemy as sa
from flask import Flask
from flask import Response
from flask import current_app
from flask.cli import with_appcontext

from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db.models import Source
from webapp.db.models import db
from webapp.listing import schema as list_schema
from webapp.sources.registry import registry

#: Milliseconds a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
OPENED_KEY = "taskdeck.database_opened"


def init_app(app: Flask) -> None:
    """Configure the engine for its backend. No connection is opened here (flaskr's rule)."""
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
    app.before_request(_open_on_first_request)


def upgrade_database(app: Flask) -> None:
    """Bring the database to the current schema, keeping every row, then open it.

    Run by ``taskdeck init-db`` / ``db upgrade`` and at the start of ``run``, ``worker`` and
    ``demo``; never by the factory.
    """
    with app.app_context():
        db.create_all()
        check_schema()
        list_schema.install(db.engine)
    open_database(app)


def open_database(app: Flask) -> None:
    """Check the schema is current and load the sources added in the UI; once per app.

    Raises :class:`ConfigError` with one line when the database needs ``taskdeck db upgrade``.
    """
    if app.extensions.get(OPENED_KEY):
        return
    with app.app_context():
        check_schema()
    sync_sources(app)
    app.extensions[OPENED_KEY] = True


def _open_on_first_request() -> Response | None:
    """Under gunicorn nothing opens the database before the first request does."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.extensions.get(OPENED_KEY):
        return None
    try:
        open_database(app)
    except ConfigError as exc:
        app.logger.error("%s", exc)
        return Response(f"Taskdeck cannot serve yet: {exc}\n", 503, mimetype="text/plain")
    return None


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
    known = registry(app)
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
                known.put(build_source(row.settings, origin="database"))
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
    registry().put(source)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database tables, or bring an older database up to date."""
    upgrade_database(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")

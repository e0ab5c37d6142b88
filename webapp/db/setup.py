"""Database wiring: the engine settings per backend, the schema check and upgrade (through
:mod:`webapp.db.migrate`), and the sources sync."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.util import CommandError
from flask import Flask
from flask import Response
from flask import current_app

from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db import migrate
from webapp.db.models import Source
from webapp.db.models import db
from webapp.follows.sync import sync_follows
from webapp.logs import redactor
from webapp.notify.rules import sync_file_rules
from webapp.sources import sealed
from webapp.sources.registry import registry
from webapp.sources.sealed import SealedCredentialsError
from webapp.sources.sealed import SecretsBox
from webapp.sources.sealed import open_sealed
from webapp.sources.sealed import secrets_box

#: Milliseconds a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
OPENED_KEY = "taskdeck.database_opened"
#: Each SQLite connection's page cache.
SQLITE_CACHE_KIB = 8 * 1024


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


def upgrade_database(app: Flask) -> tuple[migrate.SchemaState, migrate.SchemaState]:
    """Bring the database to the current schema (``alembic upgrade head``), keeping every row,
    then open it; where the schema stood before and after.

    Run by ``taskdeck init-db`` / ``db upgrade`` and at the start of ``run``, ``worker`` and
    ``demo``; never by the factory. Raises :class:`ConfigError` with one line when it cannot.
    """
    with app.app_context():
        url = shown_url()
        try:
            before, after = migrate.upgrade(db.engine)
        except (CommandError, sa.exc.OperationalError) as exc:
            raise ConfigError(f"cannot upgrade the database ({url}): {_one_line(exc)}") from exc
    if before != after:
        app.logger.info(
            "database schema upgraded from %s to %s (%s)", before.label, after.label, url
        )
    open_database(app)
    return before, after


def open_database(app: Flask) -> None:
    """Check the schema is at the head revision and load the sources added in the UI; once per
    app, and cheap (one connection, two small queries).

    Raises :class:`ConfigError` with one line when the database needs ``taskdeck db upgrade``.
    """
    if app.extensions.get(OPENED_KEY):
        return
    with app.app_context():
        schema = schema_state()
        if not schema.at_head:
            raise ConfigError(f"{schema.refusal()} ({shown_url()})")
    sync_sources(app)
    with app.app_context():
        sync_follows(app)
    sync_file_rules(app)
    app.extensions[OPENED_KEY] = True


def schema_state() -> migrate.SchemaState:
    """Where the app's database stands against the migrations (in an app context)."""
    try:
        with db.engine.connect() as connection:
            return migrate.state(connection)
    except sa.exc.OperationalError as exc:
        raise ConfigError(f"cannot open the database ({shown_url()}): {_one_line(exc)}") from exc


def shown_url() -> str:
    return db.engine.url.render_as_string(hide_password=True)


def _one_line(exc: Exception) -> str:
    """The driver's own words for a database error, else the exception's, on one line."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web process read while a worker writes; busy_timeout makes writers queue.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Each connection keeps more of the indexes a list page walks (the default is 2 MB). No
    # memory map: every connection maps the file on its own, so a worker's few connections
    # each added up to the map's size to its memory, while SQLite's own time is a fraction
    # of a millisecond of a page (README "Performance").
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
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
        box = secrets_box(app)
        for row in db.session.scalars(sa.select(Source).where(Source.origin == "database")):
            if row.name in configured:
                continue
            try:
                known.put(load_database_source(row, box, app.config["ALLOW_LINK_LOCAL"]))
            except (ConfigError, SealedCredentialsError) as exc:
                app.logger.error("source %s from the database is not usable: %s", row.name, exc)
                known.set_problem(row.name, str(exc))
        db.session.commit()


def load_database_source(
    row: Source, box: SecretsBox | None, allow_link_local: bool
) -> SourceConfig:
    """A source added in the UI, with its typed secrets opened (and sealed again with the
    first key if an older one sealed them: key rotation)."""
    typed = open_sealed(row.encrypted_credentials, box)
    redactor.add(typed.values())
    source = build_source(
        row.settings, origin="database", typed=typed, allow_link_local=allow_link_local
    )
    if (
        box is not None
        and row.encrypted_credentials
        and not box.is_current(row.encrypted_credentials)
    ):
        row.encrypted_credentials = box.seal(typed)
    return source


def typed_secrets(source: SourceConfig) -> dict[str, str]:
    """The secrets of ``source`` that no environment variable holds: typed in the UI."""
    return {
        field: value.get_secret_value()
        for field, value in source.credentials.items()
        if source.setting(field) is None
    }


def save_database_source(source: SourceConfig) -> None:
    """Store a source added or edited in the UI, and start using it."""
    row = db.session.get(Source, source.name)
    if row is None:
        row = Source(name=source.name)
        db.session.add(row)
    row.provider = source.provider
    row.origin = "database"
    row.settings = source.model_dump(exclude={"credentials", "origin"}, exclude_none=True)
    typed = typed_secrets(source)
    if typed:
        box = secrets_box()
        if box is None:
            raise ConfigError(f"source {source.name!r}: typed secrets need {sealed.SETTING}")
        row.encrypted_credentials = box.seal(typed)
    else:
        row.encrypted_credentials = None
    db.session.commit()
    registry().put(source)

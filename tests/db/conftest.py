"""What the schema tests share: databases made by the last release (from its DDL) or by the
first migration, engines that are closed at the end of the test, and the release's schema."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.db.catalog import describe
from webapp.db import migrate

RELEASE_SCHEMA = Path(__file__).parent / "release_schema"
#: The first revision: the schema of the last release before migrations.
BASELINE = "0001"


def release_schema(dialect: str) -> dict[str, Any]:
    """What ``create_all`` and ``list_schema.install`` of that release made (its DDL, in
    order, and the resulting catalog; see ``made_by`` in the files)."""
    name = "sqlite" if dialect == "sqlite" else "postgresql"
    return json.loads((RELEASE_SCHEMA / f"{name}.json").read_text())


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on the test's database (SQLite file or PostgreSQL), disposed at the end."""
    made = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield made
    made.dispose()


@pytest.fixture
def other_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    """A second empty database on the same backend, for comparing two."""
    if engine.dialect.name == "sqlite":
        assert engine.url.database is not None
        other = sa.create_engine(engine.url.set(database=engine.url.database + ".other"))
        yield other
        other.dispose()
        return
    name = f"{engine.url.database}_other"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    other = sa.create_engine(engine.url.set(database=name), poolclass=sa.pool.NullPool)
    try:
        yield other
    finally:
        other.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def made_by_release(engine: sa.Engine) -> None:
    """Run the last release's own DDL on an empty database: a database made before migrations."""
    with engine.begin() as connection:
        for statement in release_schema(engine.dialect.name)["ddl"]:
            connection.exec_driver_sql(statement)


def made_by_first_migration(engine: sa.Engine) -> None:
    migrate.upgrade(engine, BASELINE)


MAKERS: dict[str, Callable[[sa.Engine], None]] = {
    "before migrations": made_by_release,
    "first migration": made_by_first_migration,
}


def reflect(engine: sa.Engine, only: list[str]) -> sa.MetaData:
    """The tables as the database has them (not as the live models declare them)."""
    tables = sa.MetaData()
    with warnings.catch_warnings():
        # SQLite does not reflect indexes over expressions (the task list's); no test needs them.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        tables.reflect(engine, only=only)
    return tables


def catalog(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return describe(connection)


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return migrate.state(connection).current

"""Alembic, driven from Taskdeck's code: the migrations ship in the package (``migrations/``),
so there is no ``alembic.ini``; :func:`alembic_config` builds the configuration instead.

:func:`upgrade` runs ``upgrade head`` while holding a lock no other Taskdeck process can take at
the same time, so several workers starting together upgrade once and the rest find it done.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from webapp.listing import schema as list_schema
from webapp.listing import search

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: A table every Taskdeck database has had since the first release.
TASKDECK_TABLE = "tasks"
#: How long a second process waits for another one's upgrade (a first upgrade of a large SQLite
#: database rebuilds its search index) before giving up.
UPGRADE_WAIT_MS = 600_000
#: ``pg_advisory_xact_lock`` key: one upgrade at a time per PostgreSQL database.
PG_LOCK = "taskdeck.migrations"

# Taskdeck prints what an upgrade did; Alembic would otherwise log its dialect at INFO on every
# connection it inspects, that is at every start.
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration; ``env.py`` runs the migrations on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    revision = script_directory().get_current_head()
    assert revision is not None, "the migrations have one head"
    return revision


@functools.cache
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in script_directory().walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revision (``None`` when it has none) against the head."""

    current: str | None
    head: str
    #: Holds Taskdeck tables (meaningful when there is no revision: made before migrations).
    has_tables: bool

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def label(self) -> str:
        """The revision, or what the database is without one."""
        if self.current is not None:
            return self.current
        return "unversioned (made before migrations)" if self.has_tables else "empty"

    @property
    def known(self) -> bool:
        return self.current is None or self.current in known_revisions()

    def refusal(self) -> str:
        """Why the app cannot use the database as it is, in one line."""
        if not self.known:
            return (
                f"the database schema is at revision {self.current}, which this Taskdeck does "
                "not know: it was upgraded by a newer Taskdeck, so run that one"
            )
        if self.current is None and self.has_tables:
            return "the database was made before schema migrations: run `taskdeck db upgrade`"
        if self.current is None:
            return "the database is empty: run `taskdeck db upgrade` to create its tables"
        return (
            f"the database schema is at revision {self.current} and this Taskdeck needs "
            f"{self.head}: run `taskdeck db upgrade`"
        )


def state(connection: sa.Connection) -> SchemaState:
    current = MigrationContext.configure(connection).get_current_revision()
    has_tables = current is not None or sa.inspect(connection).has_table(TASKDECK_TABLE)
    return SchemaState(current, head(), has_tables)


def upgrade(engine: sa.Engine, target: str = "head") -> tuple[SchemaState, SchemaState]:
    """Bring the database to the ``target`` revision; where it stood before and after.

    A database made before migrations runs the first revision, which adopts its tables (see
    ``migrations/versions/0001_release_baseline.py``). Raises :class:`CommandError` when the
    database cannot be upgraded (a revision this code does not know, a refusal by a migration).
    """
    with _locked(engine) as connection:
        before = state(connection)
        command.upgrade(alembic_config(connection), target)
        after = state(connection)
        if before != after and connection.dialect.name == "sqlite":
            # Migrations run with foreign keys off (see _sqlite_immediate): check what they left.
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise CommandError(f"the upgrade broke {len(broken)} foreign keys: rolled back")
    return before, after


def new_revision(engine: sa.Engine, message: str) -> str:
    """Write a migration for the difference between the models and the database (at head);
    the path of the file."""
    with _locked(engine) as connection, warnings.catch_warnings():
        # SQLite cannot reflect the task list's expression indexes, which autogenerate leaves
        # alone anyway (include_name).
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        script = command.revision(
            alembic_config(connection),
            message=message,
            autogenerate=True,
            rev_id=f"{int(head()) + 1:04d}" if head().isdigit() else None,
        )
    assert script is not None and not isinstance(script, list)
    return str(script.path)


@contextlib.contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that holds the upgrade lock, committed when the block
    ends without an error and rolled back otherwise."""
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": PG_LOCK}
                )
                yield connection
            return
        with _sqlite_immediate(connection):
            yield connection


@contextlib.contextmanager
def _sqlite_immediate(connection: sa.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` on this connection, with foreign keys off, then its settings back."""
    driver = connection.connection.driver_connection
    assert driver is not None
    saved = {
        pragma: connection.exec_driver_sql(f"PRAGMA {pragma}").scalar()
        for pragma in ("foreign_keys", "busy_timeout")
    }
    isolation_level = driver.isolation_level
    # Python's sqlite3 would begin a deferred transaction on its own: say BEGIN here.
    driver.isolation_level = None
    try:
        # Migrations run with foreign keys off: SQLite alters a table by copying it, and
        # dropping the old copy must not cascade. (The pragma is ignored inside a transaction.)
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql(f"PRAGMA busy_timeout={UPGRADE_WAIT_MS}")
        # IMMEDIATE takes the write lock now, before the revision is read: a second process
        # waits here until the first one has committed, then finds nothing left to do.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        if connection.in_transaction():  # BEGIN itself failed
            connection.rollback()
        for pragma, value in saved.items():
            connection.exec_driver_sql(f"PRAGMA {pragma}={int(value or 0)}")
        connection.commit()
        driver.isolation_level = isolation_level


#: What the task list keeps beside the models (webapp.listing): migrations create these, the
#: models do not declare them.
_UNMODELLED = frozenset(
    {
        search.FTS_TABLE,
        list_schema.COUNTS_TABLE,
        list_schema.LABELS_TABLE,
        search.PG_SEARCH_INDEX,
        search.PG_LABELS_INDEX,
        *list_schema.INDEXES,
    }
)


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate's filter: leave alone what the task list keeps beside the models (tables
    filled by triggers, FTS5's own tables, indexes over expressions), which migrations create
    but the models do not declare."""
    if name is None:
        return True
    if type_ == "table":
        return name not in _UNMODELLED and not name.startswith(f"{search.FTS_TABLE}_")
    if type_ == "index":
        return name not in _UNMODELLED
    return True


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate's filter: SQLite reports an index's columns without their order, so an
    index declared with ``DESC`` that differs from the database by nothing else is not a
    change (PostgreSQL reports the order, and compares it)."""
    if type_ != "index" or reflected:
        return True
    if not isinstance(obj, sa.Index) or not isinstance(compare_to, sa.Index):
        return True
    found = [column.name for column in compare_to.columns]
    if len(found) != len(compare_to.expressions):
        return True  # the database reports expressions: compare as usual
    return _without_order(obj) != found


def _without_order(index: sa.Index) -> list[str]:
    names = []
    for element in index.expressions:
        text = element.name if isinstance(element, sa.Column) else str(element)
        names.append(re.sub(r"\s+(ASC|DESC)$", "", text.strip(), flags=re.IGNORECASE))
    return names

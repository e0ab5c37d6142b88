"""What keeps the task list fast at a million tasks: indexes, search, and the state counts.

Set up once per start from :func:`webapp.db.setup.init_app`, after the tables exist, and safe
to run from several processes at once. ``models.py`` declares the table's own indexes; the ones
here serve the list's sorts and filters (and use expressions, which models do not declare).

- Indexes: every sort is a keyset over ``(sort key…, id)`` and has an index in that order, so a
  page is an index range scan whatever the sort; the common filters (state, source, provider,
  type, upstream word) lead an index that continues with the default sort.
- Search: FTS5 on SQLite, a GIN ``tsvector`` index on PostgreSQL (:mod:`webapp.listing.search`).
- Labels (SQLite): ``task_labels`` lists each task's labels, maintained by triggers, for an
  exact label filter read through an index.
- Counts (SQLite): ``task_counts`` holds how many tasks share each (source, provider, type,
  upstream word, state, has-fetch-error), maintained by triggers, so the summary bar's counts
  per state cost a few dozen rows, not a scan of every task. On PostgreSQL the counts come from
  ``tasks`` itself (see :func:`webapp.listing.counts.state_counts`): a counter row that every
  worker updates would serialize the refresher's concurrent writers there.
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa

from webapp.listing import search

log = logging.getLogger(__name__)

#: name -> columns (SQL), on both backends: the orders of ``columns.SORTS`` that the model's
#: indexes do not hold, and ``(dimension, sort_at DESC, id DESC)`` for the dimensions it lacks.
INDEXES: dict[str, str] = {
    "ix_tasks_changed_sort": "changed_at, id",
    "ix_tasks_provider_sort": "provider, sort_at DESC, id DESC",
    "ix_tasks_type_sort": "coalesce(task_type, ''), sort_at DESC, id DESC",
    "ix_tasks_upstream_sort": "coalesce(upstream_status, ''), sort_at DESC, id DESC",
    "ix_tasks_task_id_sort": "task_id, id",
    "ix_tasks_fresh_sort": "coalesce(last_fetched_at, tracked_at), id",
}

COUNTS_TABLE = "task_counts"
ON_INSERT = "AFTER INSERT ON tasks BEGIN"
ON_DELETE = "AFTER DELETE ON tasks BEGIN"
#: The dimensions the summary bar can count by without touching ``tasks``.
COUNT_KEYS = ("source", "provider", "task_type", "upstream_status", "state", "has_fetch_error")
counts_table = sa.table(
    COUNTS_TABLE,
    *(sa.column(name) for name in COUNT_KEYS),
    sa.column("n", sa.Integer),
)


def _count_key(row: str) -> list[str]:
    """The key of a task row (``new`` or ``old``), as the counts table stores it."""
    return [
        f"{row}.source",
        f"{row}.provider",
        f"coalesce({row}.task_type, '')",
        f"coalesce({row}.upstream_status, '')",
        f"{row}.state",
        f"({row}.fetch_error IS NOT NULL)",
    ]


def counts_schema() -> dict[str, str]:
    """The counts table and its triggers, by name."""
    keys = ", ".join(COUNT_KEYS)
    key_columns = ", ".join(
        f"{name} INTEGER NOT NULL" if name == "has_fetch_error" else f"{name} TEXT NOT NULL"
        for name in COUNT_KEYS
    )
    add = (
        f"INSERT INTO {COUNTS_TABLE}({keys}, n) VALUES ({', '.join(_count_key('new'))}, 1) "
        f"ON CONFLICT({keys}) DO UPDATE SET n = n + 1;"
    )
    old_key = " AND ".join(
        f"{name} = {value}" for name, value in zip(COUNT_KEYS, _count_key("old"), strict=True)
    )
    remove = (
        f"UPDATE {COUNTS_TABLE} SET n = n - 1 WHERE {old_key}; "
        f"DELETE FROM {COUNTS_TABLE} WHERE {old_key} AND n <= 0;"
    )
    key_changed = " OR ".join(
        f"({old}) IS NOT ({new})"
        for old, new in zip(_count_key("old"), _count_key("new"), strict=True)
    )
    watched = "source, provider, task_type, upstream_status, state, fetch_error"
    return {
        COUNTS_TABLE: (
            f"CREATE TABLE {COUNTS_TABLE} ({key_columns}, n INTEGER NOT NULL, "
            f"PRIMARY KEY ({keys})) WITHOUT ROWID"
        ),
        "task_counts_insert": f"CREATE TRIGGER task_counts_insert {ON_INSERT} {add} END",
        "task_counts_delete": f"CREATE TRIGGER task_counts_delete {ON_DELETE} {remove} END",
        "task_counts_update": (
            f"CREATE TRIGGER task_counts_update AFTER UPDATE OF {watched} ON tasks "
            f"WHEN {key_changed} BEGIN {remove} {add} END"
        ),
    }


def refill_counts_sql() -> str:
    keys = ", ".join(COUNT_KEYS)
    row_key = ", ".join(_count_key("tasks"))
    return (
        f"INSERT INTO {COUNTS_TABLE}({keys}, n) "
        f"SELECT {row_key}, count(*) FROM tasks GROUP BY {row_key}"
    )


LABELS_TABLE = "task_labels"
labels_table = sa.table(LABELS_TABLE, sa.column("label"), sa.column("task_pk", sa.Integer))


def _labels_of(row: str) -> str:
    # A value that is not JSON (never written by Taskdeck) has no labels rather than failing
    # the write that carries it.
    return (
        f"SELECT value, {row}.id FROM json_each(CASE WHEN json_valid({row}.labels) "
        f"THEN {row}.labels END) WHERE type = 'text'"
    )


def labels_schema() -> dict[str, str]:
    """``task_labels``: one row per (label, task), kept by triggers from the ``labels`` JSON
    list, so that the label filter is an exact index lookup (SQLite; PostgreSQL has a GIN
    index on ``labels::jsonb``)."""
    add = f"INSERT OR IGNORE INTO {LABELS_TABLE}(label, task_pk) {_labels_of('new')};"
    remove = (
        f"DELETE FROM {LABELS_TABLE} WHERE task_pk = old.id "
        f"AND label IN (SELECT value FROM json_each(CASE WHEN json_valid(old.labels) "
        "THEN old.labels END));"
    )
    return {
        LABELS_TABLE: (
            f"CREATE TABLE {LABELS_TABLE} (label TEXT NOT NULL, task_pk INTEGER NOT NULL, "
            "PRIMARY KEY (label, task_pk)) WITHOUT ROWID"
        ),
        "task_labels_insert": f"CREATE TRIGGER task_labels_insert {ON_INSERT} {add} END",
        "task_labels_delete": f"CREATE TRIGGER task_labels_delete {ON_DELETE} {remove} END",
        "task_labels_update": (
            f"CREATE TRIGGER task_labels_update AFTER UPDATE OF labels ON tasks "
            f"BEGIN {remove} {add} END"
        ),
    }


def refill_labels_sql() -> str:
    return (
        f"INSERT OR IGNORE INTO {LABELS_TABLE}(label, task_pk) "
        f"SELECT json_each.value, tasks.id FROM tasks, json_each(CASE WHEN "
        "json_valid(tasks.labels) THEN tasks.labels END) WHERE json_each.type = 'text'"
    )


def install(engine: sa.Engine) -> None:
    """Create (or bring up to date) the list's indexes, search index and counts."""
    if engine.dialect.name == "sqlite":
        _install_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        _install_postgresql(engine)


def _normalized(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").strip()


def _install_sqlite(engine: sa.Engine) -> None:
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert connection is not None
        saved = connection.isolation_level
        # Explicit transaction control: all of this happens in one IMMEDIATE transaction, so
        # two processes starting at once cannot both create (or both rebuild) the same thing.
        connection.isolation_level = None
        try:
            connection.execute("BEGIN IMMEDIATE")
            existing = dict(
                connection.execute(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE type IN ('table', 'trigger', 'index')"
                ).fetchall()
            )
            if _replace(connection, existing, search.sqlite_schema()):
                log.info("building the search index")
                connection.execute(
                    f"INSERT INTO {search.FTS_TABLE}({search.FTS_TABLE}) VALUES ('rebuild')"
                )
            if _replace(connection, existing, counts_schema()):
                connection.execute(refill_counts_sql())
            if _replace(connection, existing, labels_schema()):
                connection.execute(refill_labels_sql())
            for name, sql in index_schema().items():
                if _normalized(existing.get(name)) != _normalized(sql):
                    connection.execute(f"DROP INDEX IF EXISTS {name}")
                    connection.execute(sql)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.isolation_level = saved
    finally:
        raw.close()


def _replace(connection: object, existing: dict[str, str], wanted: dict[str, str]) -> bool:
    """Create the objects in ``wanted`` (table first, then triggers), replacing all of them when
    any is missing or differs; True when they were (re)created and need filling."""
    if all(_normalized(existing.get(name)) == _normalized(sql) for name, sql in wanted.items()):
        return False
    table, *_ = wanted
    for name in reversed(list(wanted)):
        kind = "TABLE" if name == table else "TRIGGER"
        connection.execute(f"DROP {kind} IF EXISTS {name}")  # type: ignore[attr-defined]
    for sql in wanted.values():
        connection.execute(sql)  # type: ignore[attr-defined]
    return True


def index_schema() -> dict[str, str]:
    return {name: f"CREATE INDEX {name} ON tasks ({columns})" for name, columns in INDEXES.items()}


def _install_postgresql(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        # One installer at a time (several workers may start together); released at commit.
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('taskdeck.list_schema'))")
        )
        indexes = [
            sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1)
            for sql in index_schema().values()
        ]
        for statement in [*indexes, *search.pg_schema(connection)]:
            connection.exec_driver_sql(statement)

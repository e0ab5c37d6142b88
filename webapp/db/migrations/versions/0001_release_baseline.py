"""Taskdeck's schema as released before migrations (commit f4e3f44): the baseline.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Every statement is written out here rather than taken from ``webapp.db.models`` or
``webapp.listing``, so this revision creates the same schema however the live code changes.

A database made before migrations (tables, no ``alembic_version``) runs this revision too, and
it does what that release did at every start: create whatever is missing, and rebuild the
search index, the state counts and the label rows (SQLite) where their definition differs. A
table that lacks a column predates that release too far to adopt and is refused.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = sa.MetaData()
UTC = sa.DateTime(timezone=True)


def _column(name: str, type_: sa.types.TypeEngine[Any], nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=nullable)


TABLES = [
    sa.Table(
        "sources",
        metadata,
        _column("name", sa.String(64)),
        _column("provider", sa.String(32)),
        _column("origin", sa.String(16)),
        _column("settings", sa.JSON()),
        _column("last_success_at", UTC, nullable=True),
        _column("last_failure_at", UTC, nullable=True),
        _column("last_error", sa.Text(), nullable=True),
        _column("last_error_kind", sa.String(32), nullable=True),
        _column("consecutive_failures", sa.Integer()),
        _column("requests_total", sa.BigInteger()),
        _column("failures_total", sa.BigInteger()),
        _column("circuit", sa.String(16)),
        _column("blocked_until", UTC, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_sources"),
    ),
    sa.Table(
        "saved_views",
        metadata,
        _column("id", sa.Integer()),
        _column("name", sa.String(120)),
        _column("query_string", sa.String(2000)),
        _column("is_default", sa.Boolean()),
        _column("created_at", UTC),
        sa.PrimaryKeyConstraint("id", name="pk_saved_views"),
        sa.UniqueConstraint("name", name="uq_saved_views_name"),
    ),
    sa.Table(
        "users",
        metadata,
        _column("id", sa.Integer()),
        _column("username", sa.String(80)),
        _column("password_hash", sa.String(256)),
        _column("created_at", UTC),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    ),
    sa.Table(
        "import_jobs",
        metadata,
        _column("id", sa.Integer()),
        _column("source", sa.String(64)),
        _column("query", sa.Text(), nullable=True),
        _column("limit", sa.Integer()),
        _column("status", sa.String(16)),
        _column("total", sa.Integer(), nullable=True),
        _column("processed", sa.Integer()),
        _column("tracked", sa.Integer()),
        _column("skipped", sa.Integer()),
        _column("failed", sa.Integer()),
        _column("error", sa.Text(), nullable=True),
        _column("started_at", UTC),
        _column("updated_at", UTC),
        _column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_import_jobs"),
    ),
    sa.Table(
        "tasks",
        metadata,
        _column("id", sa.Integer()),
        _column("source", sa.String(64)),
        _column("provider", sa.String(32)),
        _column("task_id", sa.String(512)),
        _column("state", sa.String(16)),
        _column("upstream_status", sa.String(128), nullable=True),
        _column("terminal", sa.Boolean()),
        _column("task_type", sa.String(128), nullable=True),
        _column("name", sa.String(512), nullable=True),
        _column("created_at", UTC, nullable=True),
        _column("updated_at", UTC, nullable=True),
        _column("finished_at", UTC, nullable=True),
        _column("error", sa.Text(), nullable=True),
        _column("links", sa.JSON()),
        _column("details", sa.JSON()),
        _column("raw", sa.JSON(), nullable=True),
        _column("sort_at", UTC),
        _column("tracked_at", UTC),
        _column("first_seen_at", UTC, nullable=True),
        _column("last_changed_at", UTC, nullable=True),
        _column("last_fetched_at", UTC, nullable=True),
        _column("last_success_at", UTC, nullable=True),
        _column("fetch_error", sa.Text(), nullable=True),
        _column("fetch_error_kind", sa.String(32), nullable=True),
        _column("gone_upstream", sa.Boolean()),
        _column("next_poll_at", UTC, nullable=True),
        _column("unchanged_polls", sa.Integer()),
        _column("failed_polls", sa.Integer()),
        _column("lease_owner", sa.String(64), nullable=True),
        _column("lease_until", UTC, nullable=True),
        _column("version", sa.Integer()),
        _column("changed_at", UTC),
        _column("related_key", sa.String(512), nullable=True),
        _column("labels", sa.JSON()),
        _column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("source", "task_id", name="uq_tasks_source_task_id"),
        sa.ForeignKeyConstraint(
            ["source"],
            ["sources.name"],
            name="fk_tasks_source_sources",
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
    ),
    sa.Table(
        "task_events",
        metadata,
        _column("id", sa.Integer()),
        _column("task_pk", sa.Integer()),
        _column("at", UTC),
        _column("state", sa.String(16)),
        _column("upstream_status", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_events"),
        sa.ForeignKeyConstraint(
            ["task_pk"], ["tasks.id"], name="fk_task_events_task_pk_tasks", ondelete="CASCADE"
        ),
    ),
]

#: Index name -> what it indexes, on both backends: the models' indexes, then the task list's.
INDEXES = {
    "ix_tasks_created_sort": "tasks (sort_at DESC, id DESC)",
    "ix_tasks_state_sort": "tasks (state, sort_at DESC, id DESC)",
    "ix_tasks_source_sort": "tasks (source, sort_at DESC, id DESC)",
    "ix_tasks_due": "tasks (terminal, next_poll_at)",
    "ix_tasks_source_due": "tasks (source, next_poll_at)",
    "ix_tasks_related": "tasks (source, related_key)",
    "ix_tasks_task_type": "tasks (task_type)",
    "ix_tasks_changed_at": "tasks (changed_at)",
    "ix_task_events_task_pk": "task_events (task_pk)",
    "ix_tasks_changed_sort": "tasks (changed_at, id)",
    "ix_tasks_provider_sort": "tasks (provider, sort_at DESC, id DESC)",
    "ix_tasks_type_sort": "tasks (coalesce(task_type, ''), sort_at DESC, id DESC)",
    "ix_tasks_upstream_sort": "tasks (coalesce(upstream_status, ''), sort_at DESC, id DESC)",
    "ix_tasks_task_id_sort": "tasks (task_id, id)",
    "ix_tasks_fresh_sort": "tasks (coalesce(last_fetched_at, tracked_at), id)",
}

# -- SQLite: full-text search, state counts and label rows, kept by triggers on ``tasks`` --------
#: Each group is a table and its triggers, by name; a group is created (and filled from
#: ``tasks``) as a whole.
FTS = {
    "tasks_fts": (
        "CREATE VIRTUAL TABLE tasks_fts USING fts5(task_id, name, task_type, "
        "upstream_status, error, fetch_error, labels, note, raw, content='tasks', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    ),
    "tasks_fts_insert": (
        "CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN INSERT INTO "
        "tasks_fts(rowid, task_id, name, task_type, upstream_status, error, fetch_error, "
        "labels, note, raw) VALUES (new.id, new.task_id, new.name, new.task_type, "
        "new.upstream_status, new.error, new.fetch_error, new.labels, new.note, new.raw); END"
    ),
    "tasks_fts_delete": (
        "CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN INSERT INTO "
        "tasks_fts(tasks_fts, rowid, task_id, name, task_type, upstream_status, error, "
        "fetch_error, labels, note, raw) VALUES ('delete', old.id, old.task_id, old.name, "
        "old.task_type, old.upstream_status, old.error, old.fetch_error, old.labels, "
        "old.note, old.raw); END"
    ),
    "tasks_fts_update": (
        "CREATE TRIGGER tasks_fts_update AFTER UPDATE OF task_id, name, task_type, "
        "upstream_status, error, fetch_error, labels, note, raw ON tasks BEGIN INSERT INTO "
        "tasks_fts(tasks_fts, rowid, task_id, name, task_type, upstream_status, error, "
        "fetch_error, labels, note, raw) VALUES ('delete', old.id, old.task_id, old.name, "
        "old.task_type, old.upstream_status, old.error, old.fetch_error, old.labels, "
        "old.note, old.raw); INSERT INTO tasks_fts(rowid, task_id, name, task_type, "
        "upstream_status, error, fetch_error, labels, note, raw) VALUES (new.id, "
        "new.task_id, new.name, new.task_type, new.upstream_status, new.error, "
        "new.fetch_error, new.labels, new.note, new.raw); END"
    ),
}
FTS_FILL = "INSERT INTO tasks_fts(tasks_fts) VALUES ('rebuild')"

COUNTS = {
    "task_counts": (
        "CREATE TABLE task_counts (source TEXT NOT NULL, provider TEXT NOT NULL, task_type "
        "TEXT NOT NULL, upstream_status TEXT NOT NULL, state TEXT NOT NULL, has_fetch_error "
        "INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (source, provider, task_type, "
        "upstream_status, state, has_fetch_error)) WITHOUT ROWID"
    ),
    "task_counts_insert": (
        "CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN INSERT INTO "
        "task_counts(source, provider, task_type, upstream_status, state, has_fetch_error, "
        "n) VALUES (new.source, new.provider, coalesce(new.task_type, ''), "
        "coalesce(new.upstream_status, ''), new.state, (new.fetch_error IS NOT NULL), 1) ON "
        "CONFLICT(source, provider, task_type, upstream_status, state, has_fetch_error) DO "
        "UPDATE SET n = n + 1; END"
    ),
    "task_counts_delete": (
        "CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN UPDATE task_counts "
        "SET n = n - 1 WHERE source = old.source AND provider = old.provider AND task_type = "
        "coalesce(old.task_type, '') AND upstream_status = coalesce(old.upstream_status, '') "
        "AND state = old.state AND has_fetch_error = (old.fetch_error IS NOT NULL); DELETE "
        "FROM task_counts WHERE source = old.source AND provider = old.provider AND "
        "task_type = coalesce(old.task_type, '') AND upstream_status = "
        "coalesce(old.upstream_status, '') AND state = old.state AND has_fetch_error = "
        "(old.fetch_error IS NOT NULL) AND n <= 0; END"
    ),
    "task_counts_update": (
        "CREATE TRIGGER task_counts_update AFTER UPDATE OF source, provider, task_type, "
        "upstream_status, state, fetch_error ON tasks WHEN (old.source) IS NOT (new.source) "
        "OR (old.provider) IS NOT (new.provider) OR (coalesce(old.task_type, '')) IS NOT "
        "(coalesce(new.task_type, '')) OR (coalesce(old.upstream_status, '')) IS NOT "
        "(coalesce(new.upstream_status, '')) OR (old.state) IS NOT (new.state) OR "
        "((old.fetch_error IS NOT NULL)) IS NOT ((new.fetch_error IS NOT NULL)) BEGIN UPDATE "
        "task_counts SET n = n - 1 WHERE source = old.source AND provider = old.provider AND "
        "task_type = coalesce(old.task_type, '') AND upstream_status = "
        "coalesce(old.upstream_status, '') AND state = old.state AND has_fetch_error = "
        "(old.fetch_error IS NOT NULL); DELETE FROM task_counts WHERE source = old.source "
        "AND provider = old.provider AND task_type = coalesce(old.task_type, '') AND "
        "upstream_status = coalesce(old.upstream_status, '') AND state = old.state AND "
        "has_fetch_error = (old.fetch_error IS NOT NULL) AND n <= 0; INSERT INTO "
        "task_counts(source, provider, task_type, upstream_status, state, has_fetch_error, "
        "n) VALUES (new.source, new.provider, coalesce(new.task_type, ''), "
        "coalesce(new.upstream_status, ''), new.state, (new.fetch_error IS NOT NULL), 1) ON "
        "CONFLICT(source, provider, task_type, upstream_status, state, has_fetch_error) DO "
        "UPDATE SET n = n + 1; END"
    ),
}
COUNTS_FILL = (
    "INSERT INTO task_counts(source, provider, task_type, upstream_status, state, "
    "has_fetch_error, n) SELECT tasks.source, tasks.provider, coalesce(tasks.task_type, ''), "
    "coalesce(tasks.upstream_status, ''), tasks.state, (tasks.fetch_error IS NOT NULL), "
    "count(*) FROM tasks GROUP BY tasks.source, tasks.provider, coalesce(tasks.task_type, ''), "
    "coalesce(tasks.upstream_status, ''), tasks.state, (tasks.fetch_error IS NOT NULL)"
)

LABELS = {
    "task_labels": (
        "CREATE TABLE task_labels (label TEXT NOT NULL, task_pk INTEGER NOT NULL, PRIMARY "
        "KEY (label, task_pk)) WITHOUT ROWID"
    ),
    "task_labels_insert": (
        "CREATE TRIGGER task_labels_insert AFTER INSERT ON tasks BEGIN INSERT OR IGNORE INTO "
        "task_labels(label, task_pk) SELECT value, new.id FROM json_each(CASE WHEN "
        "json_valid(new.labels) THEN new.labels END) WHERE type = 'text'; END"
    ),
    "task_labels_delete": (
        "CREATE TRIGGER task_labels_delete AFTER DELETE ON tasks BEGIN DELETE FROM "
        "task_labels WHERE task_pk = old.id AND label IN (SELECT value FROM json_each(CASE "
        "WHEN json_valid(old.labels) THEN old.labels END)); END"
    ),
    "task_labels_update": (
        "CREATE TRIGGER task_labels_update AFTER UPDATE OF labels ON tasks BEGIN DELETE FROM "
        "task_labels WHERE task_pk = old.id AND label IN (SELECT value FROM json_each(CASE "
        "WHEN json_valid(old.labels) THEN old.labels END)); INSERT OR IGNORE INTO "
        "task_labels(label, task_pk) SELECT value, new.id FROM json_each(CASE WHEN "
        "json_valid(new.labels) THEN new.labels END) WHERE type = 'text'; END"
    ),
}
LABELS_FILL = (
    "INSERT OR IGNORE INTO task_labels(label, task_pk) SELECT json_each.value, tasks.id FROM "
    "tasks, json_each(CASE WHEN json_valid(tasks.labels) THEN tasks.labels END) "
    "WHERE json_each.type = 'text'"
)

# -- PostgreSQL: search and the label filter through GIN indexes ---------------------------------
PG_INDEXES = {
    "ix_tasks_search": (
        "CREATE INDEX IF NOT EXISTS ix_tasks_search ON tasks USING gin "
        "((to_tsvector('simple'::regconfig, "
        "regexp_replace((((((((((((((((coalesce(tasks.task_id, '') || ' ') || "
        "coalesce(tasks.name, '')) || ' ') || coalesce(tasks.task_type, '')) || ' ') || "
        "coalesce(tasks.upstream_status, '')) || ' ') || coalesce(tasks.error, '')) || ' ') "
        "|| coalesce(tasks.fetch_error, '')) || ' ') || coalesce(CAST(tasks.labels AS TEXT), "
        "'')) || ' ') || coalesce(tasks.note, '')) || ' ') || coalesce(CAST(tasks.raw AS "
        "TEXT), ''), '[^[:alnum:]]+', ' ', 'g'))))"
    ),
    "ix_tasks_labels": (
        "CREATE INDEX IF NOT EXISTS ix_tasks_labels ON tasks USING gin ((labels::jsonb))"
    ),
}


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    _refuse_missing_columns(bind, existing)
    for table in TABLES:
        if table.name not in existing:
            table.create(bind)
    if bind.dialect.name == "sqlite":
        _upgrade_sqlite(bind)
    else:
        for name, target in INDEXES.items():
            bind.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
        for sql in PG_INDEXES.values():
            bind.exec_driver_sql(sql)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for group in (LABELS, COUNTS, FTS):
            _drop(bind, group)
    metadata.drop_all(bind)


def _refuse_missing_columns(bind: sa.Connection, existing: set[str]) -> None:
    inspector = sa.inspect(bind)
    missing = []
    for table in TABLES:
        if table.name in existing:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
    if missing:
        raise CommandError(
            "the database was made by a Taskdeck older than its first release and lacks "
            + ", ".join(missing)
            + ": point TASKDECK_DATABASE_URL at a new database"
        )


def _normalized(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _upgrade_sqlite(bind: sa.Connection) -> None:
    existing: dict[str, str | None] = {
        name: sql
        for name, sql in bind.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')"
        )
    }
    for group, fill in ((FTS, FTS_FILL), (COUNTS, COUNTS_FILL), (LABELS, LABELS_FILL)):
        if any(_normalized(existing.get(name)) != sql for name, sql in group.items()):
            _drop(bind, group)
            for sql in group.values():
                bind.exec_driver_sql(sql)
            bind.exec_driver_sql(fill)
    for name, target in INDEXES.items():
        sql = f"CREATE INDEX {name} ON {target}"
        if _normalized(existing.get(name)) != sql:
            bind.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
            bind.exec_driver_sql(sql)


def _drop(bind: sa.Connection, group: dict[str, str]) -> None:
    table, *triggers = group
    for name in triggers:
        bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    bind.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")

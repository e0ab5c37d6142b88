"""The migrations' schema: the first revision is exactly the last release's, a database made
before migrations is adopted as it is, and head is what the live code declares."""

from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError

from tests.db.catalog import VERSION_TABLE
from tests.db.conftest import BASELINE
from tests.db.conftest import catalog
from tests.db.conftest import made_by_first_migration
from tests.db.conftest import made_by_release
from tests.db.conftest import release_schema
from tests.db.conftest import revision
from webapp.db import migrate
from webapp.db.models import db
from webapp.listing import schema as list_schema


def test_the_first_revision_is_the_last_release_schema(engine):
    made_by_first_migration(engine)
    assert revision(engine) == BASELINE
    assert catalog(engine) == release_schema(engine.dialect.name)["catalog"]


def test_a_database_made_before_migrations_is_adopted_as_it_is(engine):
    made_by_release(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO saved_views (id, name, query_string, is_default, created_at) "
            "VALUES (1, 'mine', 'state=failed', false, '2026-01-01 00:00:00')"
        )
    before, after = migrate.upgrade(engine, BASELINE)
    assert (before.current, before.has_tables, after.current) == (None, True, BASELINE)
    assert catalog(engine) == release_schema(engine.dialect.name)["catalog"]
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM saved_views").all() == [("mine",)]


def test_adopting_rebuilds_what_an_earlier_start_left_different(engine):
    """As the release did at every start: a missing or different search index, count table,
    label table or list index is made again, and filled from the tasks."""
    made_by_release(engine)
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as connection:
        if sqlite:
            for trigger in ("task_counts_insert", "task_counts_update", "task_counts_delete"):
                connection.exec_driver_sql(f"DROP TRIGGER {trigger}")
            connection.exec_driver_sql("DROP TABLE task_counts")
            connection.exec_driver_sql("DROP TRIGGER task_labels_insert")
            connection.exec_driver_sql("DROP TRIGGER tasks_fts_insert")
            connection.exec_driver_sql("DROP INDEX ix_tasks_type_sort")
            connection.exec_driver_sql("CREATE INDEX ix_tasks_type_sort ON tasks (task_type)")
        else:
            connection.exec_driver_sql("DROP INDEX ix_tasks_search")
            connection.exec_driver_sql("DROP INDEX ix_tasks_type_sort")
        connection.exec_driver_sql(
            "INSERT INTO sources (name, provider, origin, settings, consecutive_failures, "
            "requests_total, failures_total, circuit) "
            "VALUES ('ml', 'opensearch-ml', 'file', '{}', 0, 0, 0, 'closed')"
        )
        connection.exec_driver_sql(
            "INSERT INTO tasks (source, provider, task_id, state, terminal, links, details, "
            "sort_at, tracked_at, gone_upstream, unchanged_polls, failed_polls, version, "
            "changed_at, labels, raw) VALUES ('ml', 'opensearch-ml', 't1', 'failed', true, "
            "'{}', '{}', '2026-01-01', '2026-01-01', false, 0, 0, 0, '2026-01-01', "
            '\'["on-call"]\', \'{"word": "quokka"}\')'
        )
    migrate.upgrade(engine, BASELINE)
    assert catalog(engine) == release_schema(engine.dialect.name)["catalog"]
    if not sqlite:
        return
    with engine.connect() as connection:
        counted = connection.exec_driver_sql("SELECT source, state, n FROM task_counts").all()
        labelled = connection.exec_driver_sql("SELECT label FROM task_labels").all()
        found = connection.exec_driver_sql(
            "SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH 'quokka'"
        ).all()
    assert counted == [("ml", "failed", 1)]
    assert labelled == [("on-call",)]
    assert len(found) == 1


def test_a_database_older_than_the_release_is_refused_and_left_alone(engine):
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE tasks (id INTEGER PRIMARY KEY, source TEXT)")
    with pytest.raises(CommandError, match=r"lacks tasks\.provider, tasks\.task_id, "):
        migrate.upgrade(engine)
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == ["tasks"]


def test_the_first_revision_downgrades_to_nothing_and_back(engine):
    made_by_first_migration(engine)
    with engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "base")
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == [VERSION_TABLE]
    made_by_first_migration(engine)
    assert catalog(engine) == release_schema(engine.dialect.name)["catalog"]


def test_head_is_what_the_live_code_declares(engine, other_engine):
    """The models and the task list's DDL (``create_all`` + ``list_schema.install``, what
    Taskdeck ran before migrations) make the same schema as the migrations: a change to
    either without a migration fails here."""
    migrate.upgrade(engine)
    db.metadata.create_all(other_engine)
    list_schema.install(other_engine)
    assert catalog(other_engine) == catalog(engine)


def differences(engine: sa.Engine, metadata: sa.MetaData) -> list[object]:
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the task list's expression indexes; they are left out anyway.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": migrate.include_name,
                "include_object": migrate.include_object,
            },
        )
        return list(compare_metadata(context, metadata))


def test_the_models_match_the_head_revision(engine):
    """Every schema change ships as a migration: autogenerate finds nothing to write."""
    migrate.upgrade(engine)
    assert differences(engine, db.metadata) == []
    # And the comparison does see a change.
    changed = sa.MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.sorted_tables:
        table.to_metadata(changed)
    tasks = changed.tables["tasks"]
    tasks.append_column(sa.Column("priority", sa.Integer))
    sa.Index("ix_tasks_priority", tasks.c.priority)
    kinds = sorted(diff[0] for diff in differences(engine, changed) if isinstance(diff, tuple))
    assert kinds == ["add_column", "add_index"]

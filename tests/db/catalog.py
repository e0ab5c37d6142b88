"""A database's schema as plain data, for comparing two databases (or one with a snapshot).

SQLite: every ``sqlite_master`` row with its SQL (runs of whitespace as one space, which is
all SQLAlchemy's formatting of a ``CREATE TABLE`` may change). PostgreSQL: the
catalog's columns, constraints, indexes, sequences and triggers of the ``public`` schema. Both
leave out Alembic's own ``alembic_version`` table.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

VERSION_TABLE = "alembic_version"


def _spaced(sql: str | None) -> str | None:
    """Runs of whitespace as one space, and the table name unquoted: SQLite keeps a rebuilt
    table's ``CREATE TABLE "name"`` as Alembic's batch mode wrote it."""
    if sql is None:
        return None
    return re.sub(r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", " ".join(sql.split()))


def describe(connection: sa.Connection) -> dict[str, Any]:
    if connection.dialect.name == "sqlite":
        return describe_sqlite(connection)
    return describe_postgresql(connection)


def describe_sqlite(connection: sa.Connection) -> dict[str, Any]:
    rows = connection.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name != ?",
        (VERSION_TABLE,),
    )
    objects = sorted([kind, name, table, _spaced(sql)] for kind, name, table, sql in rows)
    return {"sqlite_master": objects}


PG_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
          AND NOT a.attisdropped AND c.relname != :version
        ORDER BY c.relname, a.attnum
    """,
    "constraints": """
        SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname != :version
        ORDER BY c.relname, k.conname
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename != :version
        ORDER BY tablename, indexname
    """,
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, cycle
        FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename
    """,
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal
        ORDER BY c.relname, t.tgname
    """,
}


def describe_postgresql(connection: sa.Connection) -> dict[str, Any]:
    return {
        name: [list(row) for row in connection.execute(sa.text(sql), {"version": VERSION_TABLE})]
        for name, sql in PG_QUERIES.items()
    }

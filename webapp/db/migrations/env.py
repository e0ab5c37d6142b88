"""Alembic's environment: run the migrations on the connection Taskdeck hands over.

Taskdeck calls Alembic from :mod:`webapp.db.migrate` (``taskdeck db upgrade``), which opens the
connection, holds the upgrade lock and commits; the ``alembic`` command line is not used.
"""

from __future__ import annotations

from alembic import context
from alembic.util import CommandError

from webapp.db.migrate import include_name
from webapp.db.migrate import include_object
from webapp.db.models import db

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise CommandError("run migrations with `taskdeck db upgrade`")

context.configure(
    connection=connection,
    target_metadata=db.metadata,
    include_name=include_name,
    include_object=include_object,
    # SQLite alters a table by copying it; batch operations do that, and PostgreSQL runs the
    # same operations as plain ALTERs, so one migration serves both.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()

"""Never missing a task: followed upstream queries, how each task came to be tracked, and the
links between tasks that payloads and upstreams name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
JSON = sa.JSON()


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild): the tasks table carries the search triggers.
    op.add_column("tasks", sa.Column("tracked_via", sa.String(16), nullable=True))
    op.add_column("tasks", sa.Column("links_checked_at", UTC, nullable=True))

    op.create_table(
        "follows",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("backfill_limit", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("next_run_at", UTC, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("last_started_at", UTC, nullable=True),
        sa.Column("last_finished_at", UTC, nullable=True),
        sa.Column("last_success_at", UTC, nullable=True),
        sa.Column("last_found", sa.Integer(), nullable=False),
        sa.Column("total_found", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_note", sa.String(300), nullable=True),
        sa.Column("watermark", UTC, nullable=True),
        sa.Column("frontier", JSON, nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_follows"),
        sa.ForeignKeyConstraint(
            ["source"],
            ["sources.name"],
            name="fk_follows_source_sources",
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
    )
    op.create_table(
        "task_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_pk", sa.Integer(), nullable=False),
        sa.Column("relation", sa.String(32), nullable=False),
        sa.Column("target_task_id", sa.String(512), nullable=False),
        sa.Column("target_provider", sa.String(32), nullable=True),
        sa.Column("target_source", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("found_in", sa.String(200), nullable=True),
        sa.Column("discovered_at", UTC, nullable=False),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_links"),
        sa.UniqueConstraint("task_pk", "target_task_id", name="uq_task_links_task_pk"),
        sa.ForeignKeyConstraint(
            ["task_pk"], ["tasks.id"], name="fk_task_links_task_pk_tasks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_task_links_task_pk", "task_links", ["task_pk"])
    op.create_index("ix_task_links_target", "task_links", ["target_source", "target_task_id"])


def downgrade() -> None:
    op.drop_table("task_links")
    op.drop_table("follows")
    op.drop_column("tasks", "links_checked_at")
    op.drop_column("tasks", "tracked_via")

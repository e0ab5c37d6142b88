"""Acting and being told: upstream actions asked for, alert rules with their matches and
durable deliveries, "notify me" subscriptions, and overdue tasks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild): the tasks table carries the search triggers.
    op.add_column(
        "tasks", sa.Column("overdue", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("tasks", sa.Column("overdue_reason", sa.String(300), nullable=True))
    op.create_index(
        "ix_tasks_overdue_sort", "tasks", ["overdue", sa.text("sort_at DESC"), sa.text("id DESC")]
    )
    op.add_column("users", sa.Column("notify_webhook", sa.String(2000), nullable=True))

    op.create_table(
        "task_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_pk", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_actions"),
        sa.ForeignKeyConstraint(
            ["task_pk"], ["tasks.id"], name="fk_task_actions_task_pk_tasks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_task_actions_task_pk", "task_actions", ["task_pk"])
    op.create_table(
        "notification_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("when", sa.String(2000), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(2000), nullable=True),
        sa.Column("encrypted_target", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notification_rules"),
        sa.UniqueConstraint("name", name="uq_notification_rules_name"),
    )
    op.create_table(
        "rule_matches",
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("task_pk", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("matched_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "task_pk", name="pk_rule_matches"),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["notification_rules.id"],
            name="fk_rule_matches_rule_id_notification_rules",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"], ["tasks.id"], name="fk_rule_matches_task_pk_tasks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_rule_matches_task_pk", "rule_matches", ["task_pk"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("task_pk", sa.Integer(), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.UniqueConstraint("user_id", "task_pk", name="uq_subscriptions_user_id_task_pk"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_subscriptions_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"], ["tasks.id"], name="fk_subscriptions_task_pk_tasks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_subscriptions_task_pk", "subscriptions", ["task_pk"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedup_key", sa.String(300), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("subscription_user_id", sa.Integer(), nullable=True),
        sa.Column("task_pk", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(120), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_label", sa.String(300), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("dedup_key", name="uq_deliveries_dedup_key"),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["notification_rules.id"],
            name="fk_deliveries_rule_id_notification_rules",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_user_id"],
            ["users.id"],
            name="fk_deliveries_subscription_user_id_users",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"], ["tasks.id"], name="fk_deliveries_task_pk_tasks", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_rule_id", "deliveries", ["rule_id"])
    op.create_index("ix_deliveries_task_pk", "deliveries", ["task_pk"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_delivery_attempts_delivery_id_deliveries",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    for table in (
        "delivery_attempts",
        "deliveries",
        "subscriptions",
        "rule_matches",
        "notification_rules",
        "task_actions",
    ):
        op.drop_table(table)
    op.drop_column("users", "notify_webhook")
    op.drop_index("ix_tasks_overdue_sort", table_name="tasks")
    op.drop_column("tasks", "overdue_reason")
    op.drop_column("tasks", "overdue")

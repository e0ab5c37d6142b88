"""Team deployment: roles and sign-in kinds for users, API tokens, share links, the audit log,
sign-in throttling, and UI credentials stored encrypted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Users made before roles could do everything, so they become admins; everyone made from now on
starts as a viewer unless given a role.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.alter_column("password_hash", existing_type=sa.String(256), nullable=True)
        users.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
        users.add_column(sa.Column("email", sa.String(254), nullable=True))
        users.add_column(sa.Column("oidc_subject", sa.String(512), nullable=True))
        users.add_column(sa.Column("last_login_at", UTC, nullable=True))
    # The default above only adopts existing users; new rows get their role from the code.
    with op.batch_alter_table("users") as users:
        users.alter_column("role", existing_type=sa.String(16), server_default=None)
    op.create_index("ix_users_oidc_subject", "users", ["oidc_subject"], unique=True)

    op.add_column("sources", sa.Column("encrypted_credentials", sa.Text(), nullable=True))

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_used_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "share_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(512), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_share_links"),
    )
    op.create_index("ix_share_links_task", "share_links", ["source", "task_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target", sa.String(600), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("remote_addr", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_at", "audit_events", [sa.text("at DESC"), sa.text("id DESC")])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTC, nullable=False),
        sa.Column("blocked_until", UTC, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttle"),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.drop_index("ix_audit_events_action", table_name="audit_events")
    op.drop_index("ix_audit_events_actor", table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_share_links_task", table_name="share_links")
    op.drop_table("share_links")
    op.drop_table("api_tokens")
    with op.batch_alter_table("sources") as sources:
        sources.drop_column("encrypted_credentials")
    op.drop_index("ix_users_oidc_subject", table_name="users")
    with op.batch_alter_table("users") as users:
        for column in ("last_login_at", "oidc_subject", "email", "role"):
            users.drop_column(column)
        users.alter_column("password_hash", existing_type=sa.String(256), nullable=False)

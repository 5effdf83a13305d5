"""Core schema: users, api_tokens, sessions, messages, tool and timeline events, the change log.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 05:55:59.925494
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadkeep.store.types as tk_types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", tk_types.BigIntPK, autoincrement=True, nullable=False),
        sa.Column("log_offset", sa.BigInteger(), nullable=True),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("row_key", sa.String(length=128), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("row", tk_types.JSONType, nullable=True),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("op IN ('insert', 'update', 'delete')", name=op.f("ck_changes_op")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sa.UniqueConstraint("log_offset", name=op.f("uq_changes_log_offset")),
    )
    op.create_index(
        op.f("ix_changes_owner_id_log_offset"), "changes", ["owner_id", "log_offset"], unique=False
    )
    op.create_index(
        "ix_changes_unsequenced",
        "changes",
        ["id"],
        unique=False,
        sqlite_where=sa.text("log_offset IS NULL"),
        postgresql_where=sa.text("log_offset IS NULL"),
    )

    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_txid", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_log_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_state")),
    )
    op.bulk_insert(
        sa.table("log_state", sa.column("id"), sa.column("last_offset"), sa.column("last_txid")),
        [{"id": 1, "last_offset": 0, "last_txid": 0}],
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", tk_types.JSONType, nullable=False),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", tk_types.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", tk_types.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", tk_types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("provider", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("tags", tk_types.JSONType, nullable=False),
        sa.Column("starred", sa.Boolean(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("metadata", tk_types.JSONType, nullable=False),
        sa.Column("parent_session_id", sa.String(length=128), nullable=True),
        sa.Column("fork_seq", sa.BigInteger(), nullable=True),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("last_activity_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", tk_types.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "(parent_session_id IS NULL AND fork_seq IS NULL) OR (parent_session_id IS NOT NULL AND fork_seq >= 0 AND fork_seq <= head_seq)",
            name=op.f("ck_sessions_fork"),
        ),
        sa.CheckConstraint("head_seq >= 0 AND event_seq >= 0", name=op.f("ck_sessions_counters")),
        sa.CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0", name=op.f("ck_sessions_tokens")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_sessions_version")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_sessions_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["parent_session_id"],
            ["sessions.id"],
            name=op.f("fk_sessions_parent_session_id_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("id", "owner_id", name=op.f("uq_sessions_id_owner_id")),
    )
    op.create_index(
        "ix_sessions_live_activity",
        "sessions",
        ["owner_id", "last_activity_at", "id"],
        unique=False,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        op.f("ix_sessions_parent_session_id"), "sessions", ["parent_session_id"], unique=False
    )
    op.create_index(
        "ix_sessions_trash",
        "sessions",
        ["owner_id", "deleted_at"],
        unique=False,
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("parts", tk_types.JSONType, nullable=True),
        sa.Column("tool_calls", tk_types.JSONType, nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("metadata", tk_types.JSONType, nullable=False),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "role IN ('system', 'developer', 'user', 'assistant', 'tool')",
            name=op.f("ck_messages_role"),
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_messages_seq")),
        sa.ForeignKeyConstraint(
            ["session_id", "owner_id"],
            ["sessions.id", "sessions.owner_id"],
            name=op.f("fk_messages_session_id_owner_id_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("session_id", "seq", name=op.f("uq_messages_session_id_seq")),
    )
    op.create_index(
        "uq_messages_session_client",
        "messages",
        ["session_id", "client_id"],
        unique=True,
        sqlite_where=sa.text("client_id IS NOT NULL"),
        postgresql_where=sa.text("client_id IS NOT NULL"),
    )
    op.create_table(
        "timeline_events",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("payload", tk_types.JSONType, nullable=True),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_timeline_events_seq")),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_timeline_events_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "owner_id"],
            ["sessions.id", "sessions.owner_id"],
            name=op.f("fk_timeline_events_session_id_owner_id_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_events")),
        sa.UniqueConstraint("session_id", "seq", name=op.f("uq_timeline_events_session_id_seq")),
    )
    op.create_index(
        op.f("ix_timeline_events_message_id"), "timeline_events", ["message_id"], unique=False
    )

    op.create_table(
        "tool_events",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", tk_types.JSONType, nullable=True),
        sa.Column("output", tk_types.JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", tk_types.UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tk_types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('started', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_tool_events_status"),
        ),
        sa.CheckConstraint(
            "duration_ms IS NULL OR duration_ms >= 0", name=op.f("ck_tool_events_duration")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_tool_events_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "owner_id"],
            ["sessions.id", "sessions.owner_id"],
            name=op.f("fk_tool_events_session_id_owner_id_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_events")),
    )
    op.create_index(op.f("ix_tool_events_message_id"), "tool_events", ["message_id"], unique=False)
    op.create_index(
        op.f("ix_tool_events_session_id_created_at"),
        "tool_events",
        ["session_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tool_events_session_id_created_at"), table_name="tool_events")
    op.drop_index(op.f("ix_tool_events_message_id"), table_name="tool_events")

    op.drop_table("tool_events")
    op.drop_index(op.f("ix_timeline_events_message_id"), table_name="timeline_events")

    op.drop_table("timeline_events")
    op.drop_index("uq_messages_session_client", table_name="messages")
    op.drop_table("messages")
    op.drop_index(
        "ix_sessions_trash",
        table_name="sessions",
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.drop_index(op.f("ix_sessions_parent_session_id"), table_name="sessions")
    op.drop_index(
        "ix_sessions_live_activity",
        table_name="sessions",
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.drop_table("sessions")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")

    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("log_state")
    op.drop_index(
        "ix_changes_unsequenced",
        table_name="changes",
        sqlite_where=sa.text("log_offset IS NULL"),
        postgresql_where=sa.text("log_offset IS NULL"),
    )
    op.drop_index(op.f("ix_changes_owner_id_log_offset"), table_name="changes")

    op.drop_table("changes")

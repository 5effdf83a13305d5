"""The rest of the session record: todos, misalignments, hook decisions, repo
bindings, snapshots, checkpoints, summaries, recordings, file changes and
analytics events.

Every table is session-scoped like the core ones (owner_id and session_id on
the row, the composite foreign key to sessions). At most one active repo
binding per session is a partial unique index, which both engines enforce.
References to messages and tool events are checked on write, not foreign keys
(a rewind moves messages to a branch, and purging it must stay possible).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 08:10:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import threadkeep.store.types as tk_types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(length=128)


def _scoped(name: str, *items: Any) -> None:
    """Create a session-scoped table: id, owner, session, ``items``, and the
    composite foreign key to sessions."""
    op.create_table(
        name,
        sa.Column("id", ID, nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        *items,
        sa.Column("created_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", tk_types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id", "owner_id"],
            ["sessions.id", "sessions.owner_id"],
            name=op.f(f"fk_{name}_session_id_owner_id_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )


def _check(table: str, name: str, sql: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sql, name=op.f(f"ck_{table}_{name}"))


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns), unique=False)


def upgrade() -> None:
    _scoped(
        "todos",
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("active_form", sa.Text(), nullable=True),
        _check("todos", "status", "status IN ('pending', 'in_progress', 'completed')"),
        _check("todos", "position", "position >= 0"),
    )
    _index("todos", "session_id", "position")

    _scoped(
        "misalignments",
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("evidence", tk_types.JSONType, nullable=False),
        sa.Column("detected_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", tk_types.UTCDateTime(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        _check("misalignments", "severity", "severity IN ('low', 'medium', 'high', 'critical')"),
        _check("misalignments", "resolution", "resolution IS NULL OR resolved_at IS NOT NULL"),
    )
    _index("misalignments", "session_id", "created_at")

    _scoped(
        "hookify_decisions",
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column("rule_name", sa.String(length=200), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("tool_event_id", ID, nullable=True),
        sa.Column("message_id", ID, nullable=True),
        _check("hookify_decisions", "event", "event IN ('tool_call', 'prompt', 'stop')"),
        _check("hookify_decisions", "decision", "decision IN ('allow', 'warn', 'block')"),
    )
    _index("hookify_decisions", "session_id", "created_at")
    _index("hookify_decisions", "tool_event_id")
    _index("hookify_decisions", "message_id")

    _scoped(
        "repo_bindings",
        sa.Column("path", sa.String(length=4096), nullable=True),
        sa.Column("remote_url", sa.String(length=2048), nullable=True),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("commit_sha", sa.String(length=64), nullable=True),
        sa.Column("bound_at", tk_types.UTCDateTime(), nullable=False),
        sa.Column("unbound_at", tk_types.UTCDateTime(), nullable=True),
        _check("repo_bindings", "target", "path IS NOT NULL OR remote_url IS NOT NULL"),
        _check("repo_bindings", "period", "unbound_at IS NULL OR unbound_at >= bound_at"),
    )
    op.create_index(
        "uq_repo_bindings_active",
        "repo_bindings",
        ["session_id"],
        unique=True,
        sqlite_where=sa.text("unbound_at IS NULL"),
        postgresql_where=sa.text("unbound_at IS NULL"),
    )
    _index("repo_bindings", "session_id", "bound_at")

    _scoped(
        "snapshots",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("starred", sa.Boolean(), nullable=False),
        sa.Column("state", tk_types.JSONType, nullable=False),
        sa.Column("summary", tk_types.JSONType, nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _check("snapshots", "kind", "kind IN ('auto', 'manual', 'system')"),
        _check("snapshots", "size", "size_bytes >= 0"),
    )
    _index("snapshots", "session_id", "created_at")
    _index("snapshots", "owner_id", "starred", "created_at")

    _scoped(
        "checkpoints",
        sa.Column("message_id", ID, nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("context", tk_types.JSONType, nullable=False),
    )
    _index("checkpoints", "session_id", "created_at")
    _index("checkpoints", "message_id")

    _scoped(
        "summaries",
        sa.Column("title", sa.String(length=1000), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("key_decisions", tk_types.JSONType, nullable=False),
        sa.Column("artifacts", tk_types.JSONType, nullable=False),
        sa.Column("final_message_count", sa.BigInteger(), nullable=False),
        _check("summaries", "count", "final_message_count >= 0"),
        sa.UniqueConstraint("session_id", name=op.f("uq_summaries_session_id")),
    )

    _scoped(
        "recordings",
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("events", tk_types.JSONType, nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        _check("recordings", "count", "event_count >= 0"),
        _check("recordings", "duration", "duration_ms IS NULL OR duration_ms >= 0"),
    )
    _index("recordings", "session_id", "created_at")

    _scoped(
        "file_changes",
        sa.Column("tool_event_id", ID, nullable=True),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("old_path", sa.String(length=4096), nullable=True),
        sa.Column("diff", sa.Text(), nullable=True),
        _check("file_changes", "kind", "kind IN ('create', 'modify', 'delete', 'rename')"),
    )
    _index("file_changes", "session_id", "created_at")
    _index("file_changes", "tool_event_id")

    _scoped(
        "analytics_events",
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("properties", tk_types.JSONType, nullable=True),
        _check(
            "analytics_events",
            "tokens",
            "(input_tokens IS NULL OR input_tokens >= 0) AND "
            "(output_tokens IS NULL OR output_tokens >= 0)",
        ),
        _check("analytics_events", "cost", "cost_usd IS NULL OR cost_usd >= 0"),
        _check("analytics_events", "duration", "duration_ms IS NULL OR duration_ms >= 0"),
    )
    _index("analytics_events", "session_id", "created_at")
    _index("analytics_events", "owner_id", "created_at")


def downgrade() -> None:
    # Children first: some point at tool events and messages, all at sessions.
    for name in (
        "analytics_events",
        "file_changes",
        "recordings",
        "summaries",
        "checkpoints",
        "snapshots",
        "repo_bindings",
        "hookify_decisions",
        "misalignments",
        "todos",
    ):
        op.drop_table(name)

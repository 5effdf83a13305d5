"""Uploads, and the tables of the PostgreSQL blob store.

``uploads`` holds the metadata of files attached to a session; their bytes
live in the blob store, keyed by sha256. ``blobs`` and ``blob_chunks`` are
used only by the PostgreSQL blob store (they stay empty otherwise), and are
created on both engines so that the schema is one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from threadkeep.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_uploads_size")),
        sa.ForeignKeyConstraint(
            ["session_id", "owner_id"],
            ["sessions.id", "sessions.owner_id"],
            name=op.f("fk_uploads_session_id_owner_id_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index(
        op.f("ix_uploads_session_id_created_at"), "uploads", ["session_id", "created_at"]
    )
    op.create_index(op.f("ix_uploads_sha256"), "uploads", ["sha256"])
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data_id", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("touched_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_blobs_size")),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
        sa.UniqueConstraint("data_id", name=op.f("uq_blobs_data_id")),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("data_id", sa.String(length=128), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("data_id", "idx", name=op.f("pk_blob_chunks")),
    )


def downgrade() -> None:
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
    op.drop_index(op.f("ix_uploads_sha256"), table_name="uploads")
    op.drop_index(op.f("ix_uploads_session_id_created_at"), table_name="uploads")
    op.drop_table("uploads")

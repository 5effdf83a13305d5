"""Queries on uploads (their metadata; the bytes are in the blob store)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from threadkeep.errors import UploadNotFound
from threadkeep.model.uploads import Upload
from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx
from threadkeep.store.sessions import get_live_row, get_row
from threadkeep.store.tables import uploads


def to_upload(row: Any) -> Upload:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return Upload.model_construct(**m)


def lock_blob(conn: sa.Connection, sha256: str) -> None:
    """Serialise, per blob, what makes it referenced (a transaction writing an
    upload row for it) with what deletes it when it is not (an erasure's check
    and delete). Each side checks the other under the lock: the writer that
    the blob is still there, the erasure that no committed row uses it.
    PostgreSQL runs them concurrently, hence the advisory lock, held to the
    end of the transaction; SQLite's one writer serialises them already."""
    if conn.dialect.name == "postgresql":
        key = sa.func.hashtextextended(sa.literal(sha256, sa.Text), 0)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def insert_upload(tx: WriteTx, owner_id: str, session_id: str, fields: dict[str, Any]) -> Upload:
    """Insert an upload row whose bytes are already stored."""
    get_live_row(tx.conn, owner_id, session_id)  # SessionNotFound, InvalidState
    row = {**fields, "owner_id": owner_id, "session_id": session_id, "created_at": tx.now}
    tx.conn.execute(uploads.insert(), row)
    tx.log("uploads", row["id"], "insert", row_json(row), owner_id, session_id)
    return to_upload(row)


def get_upload(conn: sa.Connection, owner_id: str, upload_id: str) -> Upload:
    c = uploads.c
    row = conn.execute(sa.select(uploads).where(c.id == upload_id, c.owner_id == owner_id)).first()
    if row is None:
        raise UploadNotFound(upload_id)
    return to_upload(row)


def list_uploads(conn: sa.Connection, owner_id: str, session_id: str) -> list[Upload]:
    get_row(conn, owner_id, session_id)  # SessionNotFound, not an empty list
    c = uploads.c
    q = (
        sa.select(uploads)
        .where(c.session_id == session_id, c.owner_id == owner_id)
        .order_by(c.created_at, c.id)
    )
    return [to_upload(r) for r in conn.execute(q)]


def delete_upload(tx: WriteTx, owner_id: str, upload_id: str) -> Upload:
    c = uploads.c
    row = tx.conn.execute(
        uploads.delete().where(c.id == upload_id, c.owner_id == owner_id).returning(*uploads.c)
    ).first()
    if row is None:
        raise UploadNotFound(upload_id)
    tx.log("uploads", upload_id, "delete", None, owner_id, row.session_id)
    return to_upload(row)


def is_referenced(conn: sa.Connection, sha256: str) -> bool:
    """Whether any upload, of any user, still uses the blob ``sha256``."""
    q = sa.select(uploads.c.id).where(uploads.c.sha256 == sha256).limit(1)
    return conn.execute(q).first() is not None

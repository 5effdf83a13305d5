"""Queries on repo bindings and file changes.

A session has at most one active binding (``unbound_at`` NULL): the partial
unique index ``uq_repo_bindings_active`` enforces it in the database, and
binding a new repository ends the active one in the same transaction, so the
history of bindings is kept and never has two open at once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from threadkeep.errors import FileChangeNotFound, RepoBindingNotFound
from threadkeep.model.repos import (
    FileChange,
    FileChangeKind,
    NewFileChange,
    NewRepoBinding,
    RepoBinding,
)
from threadkeep.store import records
from threadkeep.store import sessions as session_q
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import file_changes, repo_bindings

REPO_BINDING = records.Kind(
    repo_bindings, RepoBinding, RepoBindingNotFound, "repo binding", order=("bound_at", "id")
)
FILE_CHANGE = records.Kind(
    file_changes, FileChange, FileChangeNotFound, "file change", convert={"kind": FileChangeKind}
)


def _active_row(conn: sa.Connection, owner_id: str, session_id: str) -> Any:
    c = repo_bindings.c
    return conn.execute(
        sa.select(repo_bindings).where(
            *REPO_BINDING.scoped(owner_id, session_id), c.unbound_at.is_(None)
        )
    ).first()


def _end(tx: WriteTx, owner_id: str, session_id: str, row: Any, at: Any) -> RepoBinding:
    # Never before it began (the table's "period" check), whatever the clocks.
    return records.update(
        tx, REPO_BINDING, owner_id, session_id, row.id, {"unbound_at": max(at, row.bound_at)}
    )


def bind_repo(tx: WriteTx, owner_id: str, session_id: str, new: NewRepoBinding) -> RepoBinding:
    """Bind the session to a repository; the active binding, if any, ends now."""
    records.live_session(tx, owner_id, session_id, lock=True)
    records.check_ids_free(tx.conn, REPO_BINDING, [new.id])
    bound_at = new.bound_at or tx.now
    active = _active_row(tx.conn, owner_id, session_id)
    if active is not None:
        _end(tx, owner_id, session_id, active, bound_at)
    row = new.model_dump()
    row.update(bound_at=bound_at, unbound_at=None)
    return records.insert(tx, REPO_BINDING, owner_id, session_id, [row])[0]


def unbind_repo(tx: WriteTx, owner_id: str, session_id: str) -> RepoBinding | None:
    """End the active binding (kept in the history); None when there was none."""
    records.live_session(tx, owner_id, session_id, lock=True)
    active = _active_row(tx.conn, owner_id, session_id)
    if active is None:
        return None
    return _end(tx, owner_id, session_id, active, tx.now)


def active_binding(conn: sa.Connection, owner_id: str, session_id: str) -> RepoBinding | None:
    session_q.get_row(conn, owner_id, session_id)
    row = _active_row(conn, owner_id, session_id)
    return None if row is None else REPO_BINDING.to_model(row)


def record_file_change(
    tx: WriteTx, owner_id: str, session_id: str, new: NewFileChange
) -> FileChange:
    records.live_session(tx, owner_id, session_id)
    records.check_refs(tx.conn, owner_id, session_id, tool_event_ids=[new.tool_event_id])
    records.check_ids_free(tx.conn, FILE_CHANGE, [new.id])
    row = new.model_dump()
    row["kind"] = new.kind.value
    return records.insert(tx, FILE_CHANGE, owner_id, session_id, [row])[0]

"""Queries behind retention (service/retention.py): find what has expired, and
delete it in bounded batches with a change-log delete for every row.

Not scoped to an owner: retention is an operator's job over the whole store.
Every delete re-states the expiry condition, so a row that stopped being
expired between the look and the delete (a snapshot starred, a session
restored from the trash) is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa

from threadkeep.store import sessions as session_q
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import (
    OPEN_STREAMS,
    SESSION_RECORD_TABLES,
    messages,
    sessions,
    snapshots,
    timeline_events,
    tool_events,
    uploads,
)

# Ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 1000


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _expired(table: sa.Table, cutoff: datetime) -> list[sa.ColumnElement[bool]]:
    c = table.c
    if table is snapshots:
        # Starred snapshots are kept for ever; a snapshot changed (e.g. unstarred)
        # within the period gets the whole period again.
        return [c.starred.is_(False), c.created_at < cutoff, c.updated_at < cutoff]
    return [c.created_at < cutoff]


def expired_ids(
    conn: sa.Connection, table: sa.Table, cutoff: datetime, limit: int, after: str | None
) -> list[str]:
    """Up to ``limit`` ids of expired rows of ``table``, in id order after ``after``."""
    c = table.c
    q = sa.select(c.id).where(*_expired(table, cutoff))
    if after is not None:
        q = q.where(c.id > after)
    return [str(i) for i in conn.execute(q.order_by(c.id).limit(limit)).scalars()]


def delete_expired(tx: WriteTx, table: sa.Table, ids: Sequence[str], cutoff: datetime) -> list[str]:
    """Delete those of ``ids`` that are still expired; log a delete for each."""
    if not ids:
        return []
    c = table.c
    gone = tx.conn.execute(
        sa.delete(table)
        .where(c.id.in_(list(ids)), *_expired(table, cutoff))
        .returning(c.id, c.owner_id, c.session_id)
    ).all()
    for key, owner_id, session_id in gone:
        tx.log(table.name, key, "delete", None, owner_id, session_id)
    done = {str(r[0]) for r in gone}
    return [i for i in ids if i in done]


def abandoned_streams(
    conn: sa.Connection, cutoff: datetime, limit: int, after: tuple[datetime, str] | None
) -> list[tuple[datetime, str, str]]:
    """Up to ``limit`` messages still streaming that started before ``cutoff``,
    oldest first and past ``after`` (keyset): (created_at, id, owner_id).

    The status is written out, not bound: PostgreSQL's generic plan for a
    prepared statement (psycopg prepares a query it has run five times on a
    connection) cannot know a bound value, so it could not use the partial
    index of open streams (revision 0008) and would scan the messages."""
    c = messages.c
    q = sa.select(c.created_at, c.id, c.owner_id).where(
        sa.text(OPEN_STREAMS), c.created_at < cutoff
    )
    if after is not None:
        at, key = after
        q = q.where(sa.or_(c.created_at > at, sa.and_(c.created_at == at, c.id > key)))
    rows = conn.execute(q.order_by(c.created_at, c.id).limit(limit)).all()
    return [(r.created_at, str(r.id), str(r.owner_id)) for r in rows]


def expired_trash(conn: sa.Connection, cutoff: datetime) -> list[str]:
    """Sessions in the trash since before ``cutoff``, oldest first."""
    c = sessions.c
    q = (
        sa.select(c.id)
        .where(c.deleted_at.is_not(None), c.deleted_at < cutoff)
        .order_by(c.deleted_at, c.id)
    )
    return [str(i) for i in conn.execute(q).scalars()]


def branches_of(conn: sa.Connection, parents: Sequence[str]) -> dict[str, list[str]]:
    """The direct branches (forks, rewinds) of each of ``parents``."""
    out: dict[str, list[str]] = {}
    c = sessions.c
    for part in _chunks(parents):
        q = sa.select(c.parent_session_id, c.id).where(c.parent_session_id.in_(list(part)))
        for parent, child in conn.execute(q):
            out.setdefault(str(parent), []).append(str(child))
    return out


def sessions_of_blob(conn: sa.Connection, sha256: str) -> set[str]:
    """The sessions holding an upload of the blob ``sha256`` (any owner)."""
    q = sa.select(uploads.c.session_id).where(uploads.c.sha256 == sha256).distinct()
    return {str(s) for s in conn.execute(q).scalars()}


def purge_expired_session(tx: WriteTx, session_id: str, cutoff: datetime) -> dict[str, int] | None:
    """Purge a session that is still in the trash since before ``cutoff`` and
    has no branch left, through the ordinary purge (a change-log delete for
    every row). Returns the rows deleted per table, or None when the session
    is gone, was restored, or got a branch meanwhile (nothing written)."""
    c = sessions.c
    q = sa.select(c.owner_id, c.deleted_at).where(c.id == session_id)
    if tx.conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = tx.conn.execute(q).first()
    if row is None or row.deleted_at is None or row.deleted_at >= cutoff:
        return None
    children = tx.conn.execute(
        sa.select(sa.func.count()).select_from(sessions).where(c.parent_session_id == session_id)
    ).scalar_one()
    if children:
        return None
    already = len(tx.changes)
    session_q.purge_session(tx, str(row.owner_id), session_id)
    return dict(Counter(ch.table for ch in tx.changes[already:] if ch.table != "sessions"))


def rows_in_sessions(conn: sa.Connection, session_ids: Sequence[str]) -> dict[str, int]:
    """Rows per table that purging ``session_ids`` would delete (the sessions
    themselves not counted; tables with none left out)."""
    out: Counter[str] = Counter()
    for table in (*SESSION_RECORD_TABLES, tool_events, timeline_events, messages, uploads):
        for part in _chunks(session_ids):
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.session_id.in_(list(part)))
            ).scalar_one()
            if n:
                out[table.name] += int(n)
    return dict(sorted(out.items()))

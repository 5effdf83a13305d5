"""Queries behind the sync endpoint: shape snapshots, the log's state, pruning.

A *shape* is one table's rows that one user may see, optionally narrowed to one
session. Its predicate is built here from the owner and the session, never from
anything a client sent. Sessions in the trash are outside the ``sessions``
shape: trashing one reaches clients as a delete, restoring it as an insert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from threadkeep.model.sync import ChangeHead, SyncState, TxSnapshot
from threadkeep.store.gc_pause import gc_paused
from threadkeep.store.prepared import cursor, decoder, prepared, then_decoder
from threadkeep.store.tables import changes, log_state, metadata, sessions, sync_readers


def synced_table(name: str) -> sa.Table:
    return metadata.tables[name]


# Built once: every shape request reads the state, and a select built per call
# costs more in SQLAlchemy (construction, cache key) than the one-row read.
_STATE = sa.select(log_state).where(log_state.c.id == 1)


def read_state(conn: sa.Connection) -> SyncState:
    r = conn.execute(_STATE).one()._mapping
    return SyncState(
        last_offset=int(r["last_offset"]),
        last_txid=int(r["last_txid"]),
        epoch=int(r["epoch"]),
        reset_epoch=int(r["reset_epoch"]),
        pruned_offset=int(r["pruned_offset"]),
    )


def _shape_predicate(table: sa.Table, narrowed: bool) -> sa.ColumnElement[bool]:
    """The rows of ``table`` that belong to the shape (one indexed predicate),
    for the parameters ``owner`` and, if ``narrowed``, ``sid``."""
    cond = table.c.owner_id == sa.bindparam("owner")
    if table is sessions:
        cond = sa.and_(cond, sessions.c.deleted_at.is_(None))
    if narrowed:
        key = sessions.c.id if table is sessions else table.c.session_id
        cond = sa.and_(cond, key == sa.bindparam("sid"))
    return cond


def _rows_statement(table: sa.Table, narrowed: bool) -> sa.Executable:
    order = [table.c.seq] if "seq" in table.c else list(table.primary_key.columns)
    return sa.select(table).where(_shape_predicate(table, narrowed)).order_by(*order)


def read_rows(
    conn: sa.Connection,
    table_name: str,
    owner_id: str,
    session_id: str | None,
    encode: Mapping[str, Callable[[Any], Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every row of the shape, as dicts of the table's columns. A client's
    first sync of a session reads its whole history here, so the statement is
    compiled once and its rows decoded by the table's generated decoder
    (store/prepared.py), as the history reads are. ``encode`` (per column,
    applied to each non-null value once decoded) goes into that decoder."""
    table = synced_table(table_name)
    narrowed = session_id is not None
    stmt = prepared(
        conn.dialect,
        f"shape.rows.{table_name}.{'session' if narrowed else 'owner'}",
        lambda: _rows_statement(table, narrowed),
    )
    values = {"owner": owner_id, "sid": session_id} if narrowed else {"owner": owner_id}
    rows = stmt.execute(cursor(conn), values).fetchall()
    if encode is None:
        decode = decoder(conn.dialect, table).decode
    else:
        decode = then_decoder(conn.dialect, table, encode).decode
    with gc_paused(len(rows)):
        return [decode(r) for r in rows]


def tx_snapshot(conn: sa.Connection, state: SyncState) -> TxSnapshot:
    """The transactions this read's snapshot shows. On PostgreSQL txids are the
    server's own (pg_current_xact_id), so its snapshot is exact. On SQLite one
    writer commits txids in order: everything up to last_txid is visible."""
    if conn.dialect.name == "postgresql":
        text = conn.execute(sa.text("SELECT pg_current_snapshot()::text")).scalar_one()
        xmin, xmax, xip = str(text).split(":")
        return TxSnapshot(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))
    return TxSnapshot(state.last_txid + 1, state.last_txid + 1)


def change_heads(conn: sa.Connection, after: int, limit: int) -> list[ChangeHead]:
    q = (
        sa.select(
            changes.c.log_offset, changes.c.owner_id, changes.c.table_name, changes.c.session_id
        )
        .where(changes.c.log_offset > after)
        .order_by(changes.c.log_offset)
        .limit(limit)
    )
    return [ChangeHead(int(r[0]), r[1], r[2], r[3]) for r in conn.execute(q)]


# --- pruning and epochs -------------------------------------------------------------


def prune_bound(conn: sa.Connection, cutoff: datetime, state: SyncState) -> int:
    """The highest offset P such that every change at or below P is older than
    ``cutoff``: the log stays a contiguous suffix after a prune."""
    first_young = conn.execute(
        sa.select(sa.func.min(changes.c.log_offset)).where(
            changes.c.created_at >= cutoff, changes.c.log_offset.is_not(None)
        )
    ).scalar_one()
    if first_young is None:
        return state.last_offset
    return int(first_young) - 1


def min_reader_offset(conn: sa.Connection, since: datetime) -> int | None:
    """The lowest offset a live reader (of any instance, seen since ``since``) is at."""
    got = conn.execute(
        sa.select(sa.func.min(sync_readers.c.min_offset)).where(sync_readers.c.seen_at >= since)
    ).scalar_one()
    return None if got is None else int(got)


def count_prunable(conn: sa.Connection, upto: int, after: int) -> dict[str, int]:
    q = (
        sa.select(changes.c.table_name, sa.func.count())
        .where(changes.c.log_offset <= upto, changes.c.log_offset > after)
        .group_by(changes.c.table_name)
    )
    return {str(t): int(n) for t, n in conn.execute(q)}


def prune(conn: sa.Connection, upto: int, epoch: int) -> int:
    """Delete the log up to ``upto`` and start a new handle epoch. The caller
    holds the log_state row (:func:`lock_state`), which serialises prunes with
    the PostgreSQL offset assigners, and passes ``upto`` above the last prune."""
    deleted = conn.execute(sa.delete(changes).where(changes.c.log_offset <= upto)).rowcount
    conn.execute(
        log_state.update().where(log_state.c.id == 1).values(pruned_offset=upto, epoch=epoch)
    )
    return int(deleted or 0)


def lock_state(conn: sa.Connection) -> SyncState:
    """Read log_state holding its row lock (PostgreSQL) for the transaction."""
    q = sa.select(log_state.c.id).where(log_state.c.id == 1)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    conn.execute(q)
    return read_state(conn)


def reset_epochs(conn: sa.Connection, epoch: int) -> None:
    """Make every handle issued so far stale (after a restore or a reset)."""
    conn.execute(
        log_state.update().where(log_state.c.id == 1).values(epoch=epoch, reset_epoch=epoch)
    )


def report_reader(
    conn: sa.Connection, instance_id: str, min_offset: int | None, now: datetime
) -> None:
    """Upsert (or, with no live reader, remove) this instance's reader position."""
    conn.execute(sa.delete(sync_readers).where(sync_readers.c.instance_id == instance_id))
    if min_offset is not None:
        conn.execute(
            sync_readers.insert().values(
                instance_id=instance_id, min_offset=min_offset, seen_at=now
            )
        )

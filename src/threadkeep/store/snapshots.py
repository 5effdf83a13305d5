"""Queries on snapshots, checkpoints and the session summary (one per
session: setting it again replaces it in place, same id)."""

from __future__ import annotations

import sqlalchemy as sa

from threadkeep.errors import CheckpointNotFound, SnapshotNotFound, SummaryNotFound
from threadkeep.model.snapshots import (
    Checkpoint,
    NewCheckpoint,
    NewSnapshot,
    NewSummary,
    Snapshot,
    SnapshotKind,
    Summary,
)
from threadkeep.model.text import json_size
from threadkeep.store import records
from threadkeep.store import sessions as session_q
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import checkpoints, snapshots, summaries

SNAPSHOT = records.Kind(
    snapshots, Snapshot, SnapshotNotFound, "snapshot", convert={"kind": SnapshotKind}
)
CHECKPOINT = records.Kind(checkpoints, Checkpoint, CheckpointNotFound, "checkpoint")
SUMMARY = records.Kind(summaries, Summary, SummaryNotFound, "summary")


def snapshot_size(new: NewSnapshot) -> int:
    """What ``size_bytes`` records: state and summary as compact JSON."""
    return json_size(new.state) + (0 if new.summary is None else json_size(new.summary))


def create_snapshot(tx: WriteTx, owner_id: str, session_id: str, new: NewSnapshot) -> Snapshot:
    records.live_session(tx, owner_id, session_id)
    records.check_ids_free(tx.conn, SNAPSHOT, [new.id])
    row = new.model_dump()
    row.update(kind=new.kind.value, size_bytes=snapshot_size(new))
    return records.insert(tx, SNAPSHOT, owner_id, session_id, [row])[0]


def create_checkpoint(
    tx: WriteTx, owner_id: str, session_id: str, new: NewCheckpoint
) -> Checkpoint:
    records.live_session(tx, owner_id, session_id)
    records.check_refs(tx.conn, owner_id, session_id, message_ids=[new.message_id])
    records.check_ids_free(tx.conn, CHECKPOINT, [new.id])
    return records.insert(tx, CHECKPOINT, owner_id, session_id, [new.model_dump()])[0]


def _summary_row(conn: sa.Connection, owner_id: str, session_id: str) -> sa.Row[tuple[object]]:
    row = conn.execute(sa.select(summaries).where(*SUMMARY.scoped(owner_id, session_id))).first()
    if row is None:
        raise SummaryNotFound(session_id)
    return row


def set_summary(tx: WriteTx, owner_id: str, session_id: str, new: NewSummary) -> Summary:
    session = records.live_session(tx, owner_id, session_id, lock=True)
    values = new.model_dump(exclude={"id"})
    if values["final_message_count"] is None:
        values["final_message_count"] = session.head_seq
    try:
        old = _summary_row(tx.conn, owner_id, session_id)
    except SummaryNotFound:
        records.check_ids_free(tx.conn, SUMMARY, [new.id])
        return records.insert(tx, SUMMARY, owner_id, session_id, [{**values, "id": new.id}])[0]
    return records.update(tx, SUMMARY, owner_id, session_id, str(old.id), values)


def get_summary(conn: sa.Connection, owner_id: str, session_id: str) -> Summary:
    session_q.get_row(conn, owner_id, session_id)
    return SUMMARY.to_model(_summary_row(conn, owner_id, session_id))


def delete_summary(tx: WriteTx, owner_id: str, session_id: str) -> None:
    records.live_session(tx, owner_id, session_id)
    old = _summary_row(tx.conn, owner_id, session_id)
    records.delete(tx, SUMMARY, owner_id, session_id, str(old.id))

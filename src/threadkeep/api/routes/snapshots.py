"""Snapshots, checkpoints and the summary of a session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import error_responses
from threadkeep.api.record_schemas import (
    CheckpointList,
    CheckpointWritten,
    Deleted,
    SnapshotList,
    SnapshotWritten,
    SummaryWritten,
    written,
)
from threadkeep.api.routes._params import RowId, SessionId
from threadkeep.api.schemas import MAX_INT
from threadkeep.model.snapshots import (
    Checkpoint,
    CheckpointUpdate,
    NewCheckpoint,
    NewSnapshot,
    NewSummary,
    Snapshot,
    SnapshotKind,
    SnapshotUpdate,
    Summary,
)

router = APIRouter(tags=["snapshots"])


@router.post(
    "/v1/sessions/{session_id}/snapshots",
    status_code=201,
    summary="Save a snapshot",
    responses=error_responses(404, 409, body=True),
)
def create_snapshot(
    session_id: SessionId, body: NewSnapshot, principal: Writer, tk: TK
) -> SnapshotWritten:
    """Session or UI state (auto, manual or system); starred snapshots outlive retention."""
    return written(SnapshotWritten, tk.create_snapshot(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/snapshots",
    summary="List snapshots",
    responses=error_responses(404),
)
def list_snapshots(
    session_id: SessionId,
    principal: Reader,
    tk: TK,
    kind: SnapshotKind | None = None,
    starred: bool | None = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> SnapshotList:
    return SnapshotList(
        items=tk.list_snapshots(
            principal.actor, session_id, kind=kind, starred=starred, limit=limit
        )
    )


@router.get(
    "/v1/sessions/{session_id}/snapshots/{snapshot_id}",
    summary="Get a snapshot",
    responses=error_responses(404),
)
def get_snapshot(session_id: SessionId, snapshot_id: RowId, principal: Reader, tk: TK) -> Snapshot:
    return tk.get_snapshot(principal.actor, session_id, snapshot_id)


@router.patch(
    "/v1/sessions/{session_id}/snapshots/{snapshot_id}",
    summary="Update a snapshot",
    responses=error_responses(404, 409, body=True),
)
def update_snapshot(
    session_id: SessionId, snapshot_id: RowId, body: SnapshotUpdate, principal: Writer, tk: TK
) -> SnapshotWritten:
    return written(
        SnapshotWritten, tk.update_snapshot(principal.actor, session_id, snapshot_id, body)
    )


@router.delete(
    "/v1/sessions/{session_id}/snapshots/{snapshot_id}",
    summary="Delete a snapshot",
    responses=error_responses(404, body=True),
)
def delete_snapshot(
    session_id: SessionId, snapshot_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_snapshot(principal.actor, session_id, snapshot_id).txid)


@router.post(
    "/v1/sessions/{session_id}/checkpoints",
    status_code=201,
    summary="Save a checkpoint",
    responses=error_responses(404, 409, body=True),
)
def create_checkpoint(
    session_id: SessionId, body: NewCheckpoint, principal: Writer, tk: TK
) -> CheckpointWritten:
    """The agent's context at a message of this session."""
    return written(CheckpointWritten, tk.create_checkpoint(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/checkpoints",
    summary="List checkpoints",
    responses=error_responses(404),
)
def list_checkpoints(session_id: SessionId, principal: Reader, tk: TK) -> CheckpointList:
    return CheckpointList(items=tk.list_checkpoints(principal.actor, session_id))


@router.get(
    "/v1/sessions/{session_id}/checkpoints/{checkpoint_id}",
    summary="Get a checkpoint",
    responses=error_responses(404),
)
def get_checkpoint(
    session_id: SessionId, checkpoint_id: RowId, principal: Reader, tk: TK
) -> Checkpoint:
    return tk.get_checkpoint(principal.actor, session_id, checkpoint_id)


@router.patch(
    "/v1/sessions/{session_id}/checkpoints/{checkpoint_id}",
    summary="Update a checkpoint",
    responses=error_responses(404, 409, body=True),
)
def update_checkpoint(
    session_id: SessionId, checkpoint_id: RowId, body: CheckpointUpdate, principal: Writer, tk: TK
) -> CheckpointWritten:
    return written(
        CheckpointWritten, tk.update_checkpoint(principal.actor, session_id, checkpoint_id, body)
    )


@router.delete(
    "/v1/sessions/{session_id}/checkpoints/{checkpoint_id}",
    summary="Delete a checkpoint",
    responses=error_responses(404, body=True),
)
def delete_checkpoint(
    session_id: SessionId, checkpoint_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_checkpoint(principal.actor, session_id, checkpoint_id).txid)


@router.put(
    "/v1/sessions/{session_id}/summary",
    summary="Set the session summary",
    responses=error_responses(404, 409, body=True),
)
def set_summary(
    session_id: SessionId, body: NewSummary, principal: Writer, tk: TK
) -> SummaryWritten:
    """One summary per session: this replaces the one there is (same id)."""
    return written(SummaryWritten, tk.set_summary(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/summary",
    summary="Get the session summary",
    responses=error_responses(404),
)
def get_summary(session_id: SessionId, principal: Reader, tk: TK) -> Summary:
    return tk.get_summary(principal.actor, session_id)


@router.delete(
    "/v1/sessions/{session_id}/summary",
    summary="Delete the session summary",
    responses=error_responses(404, body=True),
)
def delete_summary(session_id: SessionId, principal: Writer, tk: TK) -> Deleted:
    return Deleted(txid=tk.delete_summary(principal.actor, session_id).txid)

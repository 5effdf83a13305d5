"""Snapshot, checkpoint and summary operations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed
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
from threadkeep.service.records import RecordOps, choice
from threadkeep.store import snapshots as snapshot_q


class SnapshotOps(RecordOps):
    # --- snapshots -----------------------------------------------------------------

    def create_snapshot(
        self, actor: Actor, session_id: str, snapshot: NewSnapshot | Mapping[str, Any]
    ) -> Committed[Snapshot]:
        """Save session/UI state (auto, manual or system). Starred snapshots are
        kept by retention; ``size_bytes`` records the JSON size of state + summary.

        Raises:
            TooLarge: state and summary together are over max_json_bytes.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewSnapshot, snapshot, "snapshot")
        self._json_limit("snapshot.state", new.state, new.summary)
        return self._write(owner, sid, lambda tx: snapshot_q.create_snapshot(tx, owner, sid, new))

    def update_snapshot(
        self,
        actor: Actor,
        session_id: str,
        snapshot_id: str,
        update: SnapshotUpdate | Mapping[str, Any],
    ) -> Committed[Snapshot]:
        """Star or unstar a snapshot, or change its description."""
        change = self._input(SnapshotUpdate, update, "update")
        return self._patch(
            snapshot_q.SNAPSHOT, actor, session_id, snapshot_id, change, ("starred",)
        )

    def get_snapshot(self, actor: Actor, session_id: str, snapshot_id: str) -> Snapshot:
        return self._get(snapshot_q.SNAPSHOT, actor, session_id, snapshot_id)

    def list_snapshots(
        self,
        actor: Actor,
        session_id: str,
        *,
        kind: SnapshotKind | str | None = None,
        starred: bool | None = None,
        limit: int | None = None,
    ) -> list[Snapshot]:
        """The session's snapshots, oldest first, optionally of one kind or starred."""
        if starred is not None and not isinstance(starred, bool):
            raise InvalidInput("starred", "must be true or false")
        return self._list(
            snapshot_q.SNAPSHOT,
            actor,
            session_id,
            limit,
            kind=choice("kind", kind, SnapshotKind),
            starred=starred,
        )

    def delete_snapshot(self, actor: Actor, session_id: str, snapshot_id: str) -> Committed[None]:
        return self._delete(snapshot_q.SNAPSHOT, actor, session_id, snapshot_id)

    # --- checkpoints ---------------------------------------------------------------

    def create_checkpoint(
        self, actor: Actor, session_id: str, checkpoint: NewCheckpoint | Mapping[str, Any]
    ) -> Committed[Checkpoint]:
        """Keep the agent's context as it was at a message of this session.

        Raises:
            MessageNotFound: the message is not in this session.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewCheckpoint, checkpoint, "checkpoint")
        self._json_limit("checkpoint.context", new.context)
        return self._write(owner, sid, lambda tx: snapshot_q.create_checkpoint(tx, owner, sid, new))

    def update_checkpoint(
        self,
        actor: Actor,
        session_id: str,
        checkpoint_id: str,
        update: CheckpointUpdate | Mapping[str, Any],
    ) -> Committed[Checkpoint]:
        change = self._input(CheckpointUpdate, update, "update")
        return self._patch(snapshot_q.CHECKPOINT, actor, session_id, checkpoint_id, change)

    def get_checkpoint(self, actor: Actor, session_id: str, checkpoint_id: str) -> Checkpoint:
        return self._get(snapshot_q.CHECKPOINT, actor, session_id, checkpoint_id)

    def list_checkpoints(self, actor: Actor, session_id: str) -> list[Checkpoint]:
        return self._list(snapshot_q.CHECKPOINT, actor, session_id, None)

    def delete_checkpoint(
        self, actor: Actor, session_id: str, checkpoint_id: str
    ) -> Committed[None]:
        return self._delete(snapshot_q.CHECKPOINT, actor, session_id, checkpoint_id)

    # --- the summary ---------------------------------------------------------------

    def set_summary(
        self, actor: Actor, session_id: str, summary: NewSummary | Mapping[str, Any]
    ) -> Committed[Summary]:
        """Set the session's summary (one per session: this replaces it, same id)."""
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewSummary, summary, "summary")
        self._json_limit("summary", new.key_decisions, new.artifacts)
        return self._write(owner, sid, lambda tx: snapshot_q.set_summary(tx, owner, sid, new))

    def get_summary(self, actor: Actor, session_id: str) -> Summary:
        """The session's summary. Raises SummaryNotFound when it has none."""
        owner, sid = self._scope(actor, session_id)
        return self.engine.read(lambda c: snapshot_q.get_summary(c, owner, sid))

    def delete_summary(self, actor: Actor, session_id: str) -> Committed[None]:
        owner, sid = self._scope(actor, session_id)
        return self._write(owner, sid, lambda tx: snapshot_q.delete_summary(tx, owner, sid))

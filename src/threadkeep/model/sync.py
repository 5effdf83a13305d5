"""What sync reads from the store: snapshots, change pages, the log's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from threadkeep.model.changes import Change


@dataclass(frozen=True)
class SyncState:
    """The change log's position and the epochs that sync handles name.

    ``epoch`` moves forward whenever handles issued before it may no longer be
    served whole (a prune); ``reset_epoch`` when none of them may (a restore, a
    reset). Both are microseconds since 1970."""

    last_offset: int
    last_txid: int
    epoch: int
    reset_epoch: int
    pruned_offset: int


@dataclass(frozen=True)
class TxSnapshot:
    """Which transactions a snapshot shows, as PostgreSQL's pg_snapshot does:
    every txid below ``xmin`` and every one below ``xmax`` not in ``xip``."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()


@dataclass(frozen=True)
class ShapeSnapshot:
    """The rows of one shape, read in one snapshot together with the offset of
    the last change that snapshot contains."""

    rows: list[dict[str, Any]]
    offset: int
    txids: TxSnapshot
    state: SyncState


@dataclass(frozen=True)
class ShapeChanges:
    """Changes of one shape after an offset. ``head`` is the log's last offset in
    the same read: when ``complete``, a reader has seen everything up to it."""

    changes: list[Change]
    head: int
    complete: bool
    state: SyncState


@dataclass(frozen=True)
class ChangeHead:
    """Who a change concerns, without its row: enough to wake the right readers."""

    offset: int
    owner_id: str
    table: str
    session_id: str | None


@dataclass(frozen=True)
class PruneResult:
    """What a prune of the change log removed (or, in a dry run, would)."""

    deleted: int
    pruned_offset: int
    epoch: int
    held_back_by_readers: bool = False
    dry_run: bool = False
    tables: dict[str, int] = field(default_factory=dict)

"""Sync reads: shape snapshots and change pages, scoped to the actor; log pruning.

The sync layer (``threadkeep.sync``) speaks the Electric protocol on top of
these; they are also what a Python program would use to follow a user's
changes itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor
from threadkeep.model.sync import ChangeHead, PruneResult, ShapeChanges, ShapeSnapshot, SyncState
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor
from threadkeep.store import changes as change_q
from threadkeep.store import sessions as session_q
from threadkeep.store import sync as sync_q
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import SYNCED_TABLES

# A reader position older than this is no longer "live" and does not hold
# pruning back.
READER_TTL = timedelta(minutes=2)


def _now_us() -> int:
    return time.time_ns() // 1000


class SyncOps(ServiceBase):
    def _shape_args(
        self, actor: Actor, table: str, session_id: str | None
    ) -> tuple[str, str | None]:
        owner = check_actor(actor)
        if not isinstance(table, str) or table not in SYNCED_TABLES:
            raise InvalidInput("table", f"must be one of: {', '.join(SYNCED_TABLES)}")
        return owner, args.optional_key("session_id", session_id)

    def shape_snapshot(
        self,
        actor: Actor,
        table: str,
        *,
        session_id: str | None = None,
        encode: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> ShapeSnapshot:
        """Every row of ``table`` the actor may see (in one session, if given),
        with the offset of the last change this snapshot contains: follow with
        :meth:`shape_changes` from that offset and nothing is missed or repeated.

        ``encode`` maps columns to a function that each non-null value of the
        column goes through as the rows are read; the rows then hold what it
        returns. The shape endpoint passes its Electric text encoding
        (``threadkeep.sync.encoding.value_text``): a long history's first sync
        encodes each value once, with no dict of Python values in between."""
        owner, session_id = self._shape_args(actor, table, session_id)
        if encode is not None and not (
            isinstance(encode, Mapping) and all(callable(f) for f in encode.values())
        ):
            raise InvalidInput("encode", "must map column names to functions")

        def read(conn: sa.Connection) -> ShapeSnapshot:
            if session_id is not None:
                session_q.get_row(conn, owner, session_id)  # SessionNotFound, as elsewhere
            state = sync_q.read_state(conn)
            rows = sync_q.read_rows(conn, table, owner, session_id, encode)
            return ShapeSnapshot(rows, state.last_offset, sync_q.tx_snapshot(conn, state), state)

        return self.engine.snapshot_read(read)

    def shape_changes(
        self,
        actor: Actor,
        table: str,
        after: int,
        *,
        session_id: str | None = None,
        limit: int = 1000,
    ) -> ShapeChanges:
        """The actor's changes to ``table`` with offset > ``after``, in commit order."""
        owner, session_id = self._shape_args(actor, table, session_id)
        args.integer("after", after)
        self._page_limit(limit)
        self.engine.prepare_changes_read()

        def read(conn: sa.Connection) -> ShapeChanges:
            state = sync_q.read_state(conn)
            got = change_q.read_changes(
                conn, after, limit=limit, owner_id=owner, session_id=session_id, tables=[table]
            )
            complete = len(got) < limit
            return ShapeChanges(got, state.last_offset, complete, state)

        return self.engine.read(read)

    def sync_state(self) -> SyncState:
        """The log's last offset and the current handle epochs."""
        self.engine.prepare_changes_read()
        return self.engine.read(sync_q.read_state, single_statement=True)

    def change_heads(self, after: int, *, limit: int = 10_000) -> list[ChangeHead]:
        """Who the changes after ``after`` concern (no rows): for waking readers.
        Not scoped to an actor; it carries no data, only ids."""
        args.integer("after", after)
        self.engine.prepare_changes_read()
        return self.engine.read(
            lambda c: sync_q.change_heads(c, after, limit), single_statement=True
        )

    def report_sync_readers(self, instance_id: str, min_offset: int | None) -> None:
        """Record the lowest offset this server instance's live readers are at
        (None: it has none), so that pruning never cuts them off."""
        instance_id = args.key("instance_id", instance_id)
        if min_offset is not None:
            args.integer("min_offset", min_offset)
        now = datetime.now(UTC)
        self.engine.write(lambda tx: sync_q.report_reader(tx.conn, instance_id, min_offset, now))

    def prune_changes(self, older_than: timedelta, *, dry_run: bool = False) -> PruneResult:
        """Delete the change log's prefix older than ``older_than``, but never past
        an offset a live reader is at. Handles that point into the deleted part
        get must-refetch (their epoch is older than the new one)."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidInput("older_than", "must be a non-negative timedelta")
        self.engine.prepare_changes_read()
        now = datetime.now(UTC)

        def op(tx: WriteTx) -> PruneResult:
            state = sync_q.lock_state(tx.conn)
            upto = sync_q.prune_bound(tx.conn, now - older_than, state)
            readers = sync_q.min_reader_offset(tx.conn, now - READER_TTL)
            held = readers is not None and readers < upto
            if held:
                assert readers is not None
                upto = readers
            if upto <= state.pruned_offset:
                return PruneResult(0, state.pruned_offset, state.epoch, held, dry_run)
            counts = sync_q.count_prunable(tx.conn, upto, state.pruned_offset)
            if dry_run:
                return PruneResult(sum(counts.values()), upto, state.epoch, held, True, counts)
            epoch = max(_now_us(), state.epoch + 1)
            deleted = sync_q.prune(tx.conn, upto, epoch)
            return PruneResult(deleted, upto, epoch, held, False, counts)

        return self.engine.write(op).value

    def reset_sync(self) -> SyncState:
        """Make every sync handle issued so far stale: clients refetch from
        scratch. For after a restore, or when the log cannot be trusted."""
        epoch = _now_us()

        def op(tx: WriteTx) -> None:
            state = sync_q.lock_state(tx.conn)
            sync_q.reset_epochs(tx.conn, max(epoch, state.epoch + 1))

        self.engine.write(op)
        return self.sync_state()

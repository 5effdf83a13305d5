"""Answer one shape request from the change log (the embedded Electric).

See ../shared/electric-protocol.md for the protocol; the parts that matter:

* ``offset=-1``: the snapshot (rows as inserts), ``snapshot-end`` with the
  snapshot's txid visibility (so ``awaitTxId`` resolves for writes it already
  contains), then ``up-to-date``; the offset is the last change the snapshot
  contains, read in the same snapshot (store ``snapshot_read``).
* ``offset=<n>_0`` with a handle: the shape's changes after n, each with its
  txid, ending in ``up-to-date`` once caught up. ``live=true`` holds the
  request (the hub) until a change concerns the shape or the long poll ends.
* A handle that cannot be served (another definition, an older reset epoch, a
  pruned offset) gets 409 with the current handle; a malformed request 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor
from threadkeep.model.sync import ShapeChanges, ShapeSnapshot, SyncState
from threadkeep.sync import protocol
from threadkeep.sync.encoding import table_schema, value_text
from threadkeep.sync.hub import LiveHub
from threadkeep.sync.protocol import ProtocolError
from threadkeep.sync.shapes import Shape, change_messages, snapshot_messages

_PAGE = 1000


@dataclass
class ShapeRequest:
    """The protocol parameters of one request (the definition is not here)."""

    offset: str | None
    handle: str | None = None
    live: bool = False
    cursor: str | None = None
    log: str = "full"
    sse: bool = False

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> ShapeRequest:
        if any(k.startswith("subset__") for k in q):
            raise ProtocolError(
                "subset", "subset snapshots are not supported; use syncMode 'eager'"
            )
        live = _flag(q, "live")
        sse = _flag(q, "live_sse") or _flag(q, "experimental_live_sse")
        if sse and not live:
            raise ProtocolError("live_sse", "can only be true when live is true")
        log = q.get("log", "full") or "full"
        if log not in ("full", "changes_only"):
            raise ProtocolError("log", "must be one of full, changes_only")
        return cls(q.get("offset"), q.get("handle") or None, live, q.get("cursor"), log, sse)


def _flag(q: Mapping[str, str], name: str) -> bool:
    value = q.get(name)
    if value in (None, "false"):
        return False
    if value == "true":
        return True
    raise ProtocolError(name, "must be true or false")


@dataclass
class ShapeResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Emulator:
    def __init__(self, tk: Threadkeep, hub: LiveHub, *, long_poll_seconds: float = 20.0) -> None:
        self.tk = tk
        self.hub = hub
        self.long_poll_seconds = long_poll_seconds
        self._reads: dict[
            tuple[Shape, int],
            tuple[int, asyncio.Future[tuple[ShapeChanges, list[dict[str, Any]]]]],
        ] = {}

    async def serve(self, actor: Actor, shape: Shape, req: ShapeRequest) -> ShapeResponse:
        offset = protocol.parse_offset(req.offset)
        if req.live and (offset.initial or offset.now):
            raise ProtocolError("live", "can't be true when offset is -1 or now")
        if offset.initial and req.log == "full":
            return await self._snapshot(actor, shape)
        if offset.initial or offset.now:
            # `now`, or -1 on a changes-only log: no rows, straight to the head.
            state = await asyncio.to_thread(self.tk.sync_state)
            head = state.last_offset
            return self._answer(
                shape, shape.handle(state.epoch), head, [protocol.up_to_date(head)], req, True
            )
        if req.handle is None:
            raise ProtocolError("handle", "can't be blank when offset != -1")
        assert offset.position is not None
        # The log's state (for the handle and the bounds) comes with the first
        # read of the changes: one read and one thread hop per poll, not two.
        return await self._changes(actor, shape, req, offset.position)

    # --- answers ----------------------------------------------------------------

    async def _snapshot(self, actor: Actor, shape: Shape) -> ShapeResponse:
        def read() -> tuple[ShapeSnapshot, list[dict[str, Any]]]:
            # Encoded in the thread too: a long session's first sync encodes
            # thousands of rows, which on the event loop would hold up every
            # other request for as long.
            snap = self.tk.shape_snapshot(
                actor, shape.table, session_id=shape.session_id, encode=value_text(shape.table)
            )
            return snap, list(snapshot_messages(shape, snap.rows, encoded=True))

        snap, body = await asyncio.to_thread(read)
        t = snap.txids
        body.append(protocol.snapshot_end(t.xmin, t.xmax, t.xip))
        body.append(protocol.up_to_date(snap.offset))
        handle = shape.handle(snap.state.epoch)
        return self._answer(shape, handle, snap.offset, body, ShapeRequest("-1"), True)

    async def _changes(
        self, actor: Actor, shape: Shape, req: ShapeRequest, position: int
    ) -> ShapeResponse:
        assert req.handle is not None
        deadline = time.monotonic() + self.long_poll_seconds
        head = position
        first = True
        while True:
            # Registered before reading: a change committed after the read
            # wakes this waiter, so none slips between the read and the wait.
            holding = req.live and not self.hub.draining
            waiter = self.hub.register(shape, head) if holding else None
            try:
                got, shared = await self._read(actor, shape, position)
                stale = self._stale(shape, req.handle, position, got.state)
                if stale is not None:
                    return stale
                if first:
                    if position > got.head:
                        raise ProtocolError("offset", "out of bounds for this shape")
                    self.hub.note_reader(req.handle, position)
                    first = False
                msgs = list(shared)  # the shared list is not ours to append to
                if not got.complete:
                    last = got.changes[-1].offset
                    return self._answer(shape, req.handle, last, msgs, req, False)
                head = max(head, got.head)
                left = deadline - time.monotonic()
                if msgs or waiter is None or left <= 0:
                    msgs.append(protocol.up_to_date(head))
                    return self._answer(shape, req.handle, head, msgs, req, True)
                # asyncio.timeout: wait_for (3.11) can swallow the cancellation
                # of a request whose client left just as a change woke it.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await waiter.woken.wait()
                if not self.hub.started or self.hub.draining:  # shutting down
                    return self._answer(
                        shape, req.handle, head, [protocol.up_to_date(head)], req, True
                    )
            finally:
                if waiter is not None:
                    self.hub.unregister(waiter)

    async def _read(
        self, actor: Actor, shape: Shape, position: int
    ) -> tuple[ShapeChanges, list[dict[str, Any]]]:
        """The shape's changes after ``position`` and their messages, one read
        (and one encoding) shared by every request for the same (shape,
        position) that arrives while it runs: when a write wakes many
        subscribers of one shape, the log is read once.

        A request joins a read only if that read started when the hub's head
        was at least where it is now: every change the hub has seen (and so
        could have woken this request for already) is then in the read."""
        key = (shape, position)
        now_head = self.hub.head
        running = self._reads.get(key)
        if running is not None and running[0] >= now_head and not running[1].done():
            return await asyncio.shield(running[1])

        def read() -> tuple[ShapeChanges, list[dict[str, Any]]]:
            got = self.tk.shape_changes(
                actor, shape.table, position, session_id=shape.session_id, limit=_PAGE
            )
            return got, change_messages(shape, got.changes)

        task = asyncio.ensure_future(asyncio.to_thread(read))
        self._reads[key] = (now_head, task)
        try:
            return await asyncio.shield(task)
        finally:
            if self._reads.get(key, (0, None))[1] is task:
                del self._reads[key]

    def _stale(
        self, shape: Shape, handle: str, position: int, state: SyncState
    ) -> ShapeResponse | None:
        """409 must-refetch when ``handle`` cannot serve ``position`` any more."""
        parsed = protocol.parse_handle(handle)
        ok = (
            parsed is not None
            and parsed[0] == shape.def_hash
            and state.reset_epoch <= parsed[1] <= state.epoch
            and position >= state.pruned_offset
        )
        if ok:
            return None
        return ShapeResponse(
            409,
            protocol.MUST_REFETCH,
            {"electric-handle": shape.handle(state.epoch), "cache-control": "no-store"},
        )

    def _answer(
        self,
        shape: Shape,
        handle: str,
        offset: int,
        body: list[Any],
        req: ShapeRequest,
        up_to_date: bool,
    ) -> ShapeResponse:
        headers = {
            "electric-handle": handle,
            "electric-offset": protocol.format_offset(offset),
            "cache-control": "no-store",
        }
        if req.live:
            headers["electric-cursor"] = protocol.next_cursor(req.cursor)
        else:
            headers["electric-schema"] = schema_header(shape.table)
        if up_to_date:
            headers["electric-up-to-date"] = ""
        return ShapeResponse(200, body, headers)


@cache
def schema_header(table: str) -> str:
    return json.dumps(table_schema(table), separators=(",", ":"))

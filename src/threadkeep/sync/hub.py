"""Held live requests, and what wakes them.

One hub per server process follows the change log's head. It is poked after
every local commit (a store commit listener), by PostgreSQL notifications from
other instances, and by a timer (the fallback poll). On each wake it reads the
heads of the new changes (owner, table, session; no rows) once, and wakes only
the held requests whose shape they concern: a write to one user's session
costs one small query, however many readers are held.

The hub also remembers how far back recent readers are and writes that to the
database now and then, so pruning never cuts a live reader off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from threadkeep.library import Threadkeep
from threadkeep.sync.shapes import Shape

log = logging.getLogger(__name__)

# A reader not seen for this long no longer holds pruning back.
_READER_MEMORY = 60.0
_REPORT_EVERY = 10.0


@dataclass(eq=False)
class _Waiter:
    shape: Shape
    after: int
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class LiveHub:
    """Wakes held requests when a change to their shape commits."""

    def __init__(self, tk: Threadkeep, *, poll_seconds: float = 1.0) -> None:
        self.tk = tk
        self.poll_seconds = poll_seconds
        self.instance_id = f"{uuid.uuid4().hex[:12]}"
        self.head = 0
        self._waiters: dict[str, set[_Waiter]] = defaultdict(set)
        self._poke: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._channel: Any = None
        self._readers: dict[str, tuple[int, float]] = {}
        self._reported: tuple[int | None, float] = (None, 0.0)
        self._stopping = False
        self.draining = False
        self._head_read_at = 0.0
        self._head_behind = False

    # --- life -----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._poke = asyncio.Event()
        self._stopping = False
        self.head = (await asyncio.to_thread(self.tk.sync_state)).last_offset
        self.tk.engine.add_commit_listener(self._local_commit)
        self._channel = self.tk.engine.change_channel()
        if self._channel is not None:
            self._channel.start(self.poke_threadsafe)
        self._task = asyncio.create_task(self._run(), name="threadkeep-sync-hub")

    async def stop(self) -> None:
        if self._task is None:
            return
        channel = self._detach()
        if channel is not None:
            await asyncio.to_thread(channel.stop)
        if self._task is not None:
            # A flag, not only cancel(): the loop checks it after every wait.
            self._stopping = True
            if self._poke is not None:
                self._poke.set()
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._task)
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._task.cancel()
            self._task = None
        for waiters in self._waiters.values():
            for w in waiters:
                w.woken.set()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.tk.report_sync_readers, self.instance_id, None)

    @property
    def started(self) -> bool:
        return self._task is not None

    def drain_threadsafe(self) -> None:
        """Stop holding requests: wake every held one (it answers up-to-date)."""
        self.draining = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake_all() -> None:
            for waiters in self._waiters.values():
                for w in waiters:
                    w.woken.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake_all)

    @property
    def held(self) -> int:
        """How many requests are held right now."""
        return sum(len(w) for w in self._waiters.values())

    # --- pokes ----------------------------------------------------------------

    def _local_commit(self) -> None:
        # On the committing thread: hand over, never block it.
        self.poke_threadsafe()
        if self._channel is not None:
            self._channel.notify()

    def poke_threadsafe(self) -> None:
        loop, poke = self._loop, self._poke
        if loop is None or poke is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(poke.set)

    # --- waiting --------------------------------------------------------------

    def register(self, shape: Shape, after: int) -> _Waiter:
        w = _Waiter(shape, after)
        self._waiters[shape.owner_id].add(w)
        return w

    def unregister(self, w: _Waiter) -> None:
        waiters = self._waiters.get(w.shape.owner_id)
        if waiters is not None:
            waiters.discard(w)
            if not waiters:
                del self._waiters[w.shape.owner_id]

    def note_reader(self, key: str, offset: int) -> None:
        """A reader of shape ``key`` (its handle) asked for changes after ``offset``."""
        self._readers[key] = (offset, time.monotonic())

    # --- the loop -------------------------------------------------------------

    async def _run(self) -> None:
        assert self._poke is not None
        try:
            while not self._stopping:
                poked = False
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
                # normally when a cancellation races with the poke it waits for,
                # and a hub that survives its cancellation keeps asyncio.run (a
                # server whose lifespan never ran: a mounted app) from ever ending.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._poke.wait()
                    poked = True
                self._poke.clear()
                if self._stopping:
                    return
                try:
                    if self._waiters:
                        await self._catch_up()
                        self._head_behind = False
                    elif poked or self._head_behind:
                        await self._move_head_while_idle()
                    await self._report_readers()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store is down: keep trying, readers time out
                    log.warning("sync hub could not read the change log: %s", exc)
                    await asyncio.sleep(self.poll_seconds)
        finally:
            if not self._stopping:
                # Cancelled without stop(): the end of asyncio.run for an app
                # whose lifespan never ran (mounted, or driven in-process).
                # Nobody else will end the change channel's threads and
                # connections, which would outlive the app.
                channel = self._detach()
                if channel is not None:
                    channel.stop()  # its threads end within half a second

    def _detach(self) -> Any:
        """Take back what start() gave the store; the change channel, to stop."""
        self.tk.engine.remove_commit_listener(self._local_commit)
        channel, self._channel = self._channel, None
        return channel

    async def _move_head_while_idle(self) -> None:
        """Nobody to wake: move the head on without reading the changes, so
        the first reader to come does not make the hub read everything
        written while it was idle. At most once per poll interval, not once
        per commit: a read and a thread hop per append were a tenth of a
        busy server's CPU, and a head up to one interval behind costs the
        first reader one small catch-up."""
        now = time.monotonic()
        if now - self._head_read_at < self.poll_seconds:
            self._head_behind = True  # the timer comes back for it
            return
        state = await asyncio.to_thread(self.tk.sync_state)
        self.head = max(self.head, state.last_offset)
        self._head_read_at = now
        self._head_behind = False

    async def _catch_up(self) -> None:
        while True:
            heads = await asyncio.to_thread(self.tk.change_heads, self.head)
            if not heads:
                return
            self.head = heads[-1].offset
            for h in heads:
                for w in self._waiters.get(h.owner_id, ()):
                    s = w.shape
                    if (
                        h.table == s.table
                        and h.offset > w.after
                        and (s.session_id is None or s.session_id == h.session_id)
                    ):
                        w.woken.set()
            if len(heads) < 10_000:
                return

    async def _report_readers(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, t) in self._readers.items() if now - t > _READER_MEMORY]:
            del self._readers[key]
        low = min((o for o, _ in self._readers.values()), default=None)
        last, at = self._reported
        if low == last and now - at < _REPORT_EVERY * 3:
            return
        if now - at < _REPORT_EVERY and last is not None and low is not None and low >= last:
            return
        await asyncio.to_thread(self.tk.report_sync_readers, self.instance_id, low)
        self._reported = (low, now)

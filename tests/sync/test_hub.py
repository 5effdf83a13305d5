"""The live hub: what it reads while nobody waits, and that it still wakes
the first reader to come (both engines, the real store)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from threadkeep import Actor, Threadkeep
from threadkeep.sync.hub import LiveHub, _Waiter
from threadkeep.sync.shapes import Shape

POLL = 0.4


@contextlib.contextmanager
def _waiting(hub: LiveHub, actor: Actor, session: str, after: int) -> Iterator[_Waiter]:
    """A held reader of ``session``'s messages, waiting for changes after ``after``."""
    w = hub.register(Shape("messages", actor.user_id, session), after)
    try:
        yield w
    finally:
        hub.unregister(w)


async def _append(tk: Threadkeep, actor: Actor, session: str, text: str) -> None:
    """Append from a worker thread, as a server's route does."""
    await asyncio.to_thread(tk.append_message, actor, session, {"role": "user", "content": text})


def test_an_idle_hub_reads_the_head_once_per_interval_not_once_per_commit(
    tk: Threadkeep, actor: Actor
) -> None:
    """With no held request, every commit still pokes the hub. It used to
    answer each poke with a read of the log's state (a thread hop and a query
    per append); now it reads at most once per poll interval, and the timer
    brings the head level once the writes stop."""
    session = tk.create_session(actor).value.id
    reads = 0
    state = tk.sync_state

    def counted() -> object:
        nonlocal reads
        reads += 1
        return state()

    tk.sync_state = counted  # type: ignore[method-assign]

    async def main() -> None:
        hub = LiveHub(tk, poll_seconds=POLL)
        await hub.start()
        try:
            started = time.monotonic()
            for i in range(60):
                await _append(tk, actor, session, f"m{i}")
                await asyncio.sleep(0)  # let the hub see each poke
            elapsed = time.monotonic() - started
            # One read at start, then at most one per interval (plus one for
            # the interval in progress).
            assert reads <= 2 + elapsed / POLL, (reads, elapsed)
            await asyncio.sleep(POLL * 3)
            assert hub.head == state().last_offset

            # A reader that comes now is woken by the next write to its shape.
            with _waiting(hub, actor, session, hub.head) as w:
                await _append(tk, actor, session, "after")
                await asyncio.wait_for(w.woken.wait(), 5)
        finally:
            await hub.stop()

    asyncio.run(main())


def test_a_reader_that_comes_while_the_head_is_behind_is_woken(
    tk: Threadkeep, actor: Actor
) -> None:
    """Writes inside one interval leave the idle hub's head behind the log; a
    reader registering then, waiting after the last write, is woken by the
    next write to its shape and not by the ones it has already seen."""
    session = tk.create_session(actor).value.id
    other = tk.create_session(actor).value.id

    async def main() -> None:
        hub = LiveHub(tk, poll_seconds=30)  # the timer never fires in this test
        await hub.start()
        try:
            for i in range(5):
                await _append(tk, actor, session, f"m{i}")
            await asyncio.sleep(0.05)
            last = tk.sync_state().last_offset
            with _waiting(hub, actor, session, last) as w:
                await _append(tk, actor, other, "elsewhere")
                await asyncio.sleep(0.3)
                assert not w.woken.is_set()  # the old writes and another shape's are not news
                await _append(tk, actor, session, "news")
                await asyncio.wait_for(w.woken.wait(), 5)
        finally:
            await hub.stop()

    asyncio.run(main())

"""The live hub: what it reads while nobody waits, and that it still wakes
the first reader to come (both engines, the real store)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

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


def test_a_hub_cancelled_as_a_poke_arrives_stops(tk: Threadkeep) -> None:
    """An app whose lifespan never ran (mounted in another app, or driven
    in-process) leaves the hub to asyncio.run, which ends by cancelling every
    task. On Python 3.11 ``asyncio.wait_for`` returned normally when that
    cancellation met a poke (a commit) already on its way, and the hub went
    on polling: asyncio.run, and the server, never ended. Each step count
    puts the cancellation at another point of the poke's delivery."""

    async def cancelled_after(steps: int) -> bool:
        hub = LiveHub(tk, poll_seconds=30)
        await hub.start()
        task = hub._task
        assert task is not None and hub._poke is not None
        await asyncio.sleep(0)  # the hub waits for a poke
        await asyncio.sleep(0)
        hub._poke.set()
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        stopped = task in done
        await hub.stop()
        return stopped

    for steps in range(5):
        assert asyncio.run(cancelled_after(steps)), f"the hub survived its cancellation ({steps})"


def test_asyncio_run_ends_after_shape_requests_and_a_write_without_a_lifespan(
    tk: Threadkeep, actor: Actor
) -> None:
    """The same through the app: a shape request starts sync on first use, a
    write pokes the hub, and asyncio.run returns at once (it hung before).
    What the hub started goes with it: on PostgreSQL the change channel's
    threads and connections outlived the app before."""
    import json
    import threading

    from threadkeep.api import create_app

    token = tk.create_token(actor, "t").value.token
    session = tk.create_session(actor).value.id
    app = create_app(tk)
    body = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()

    async def call(method: str, path: str, query: bytes = b"", payload: bytes = b"") -> int:
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        headers = [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        scope = {
            "type": "http", "http_version": "1.1", "method": method, "path": path,
            "raw_path": path.encode(), "query_string": query, "root_path": "",
            "scheme": "http", "server": ("t", 80), "client": ("t", 1), "headers": headers,
        }  # fmt: skip
        await app(scope, receive, send)
        return int(sent[0]["status"])

    async def main() -> None:
        for _ in range(3):
            assert await call("GET", "/v1/shape", b"table=sessions&offset=-1") == 200
            assert await call("POST", f"/v1/sessions/{session}/messages", b"", body) == 201

    before = set(threading.enumerate())
    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    runner.join(20)
    assert not runner.is_alive(), "asyncio.run did not end: a sync task survived"
    left = {t for t in set(threading.enumerate()) - before if t.name.startswith("threadkeep-")}
    for t in left:
        t.join(5)
    assert not [t.name for t in left if t.is_alive()], "the change channel outlived the app"


def test_a_held_request_cancelled_as_it_is_woken_is_cancelled(tk: Threadkeep, actor: Actor) -> None:
    """A live long-poll whose client leaves just as a change wakes it must
    end cancelled. With ``asyncio.wait_for`` (Python 3.11) the cancellation
    could be swallowed: the request read again, found nothing, and held on
    for another long-poll period."""
    from threadkeep.sync.emulator import Emulator, ShapeRequest

    session = tk.create_session(actor).value.id
    shape = Shape("messages", actor.user_id, session)

    async def cancelled_after(steps: int) -> bool:
        hub = LiveHub(tk, poll_seconds=30)
        await hub.start()
        emulator = Emulator(tk, hub, long_poll_seconds=30)
        try:
            first = await emulator.serve(actor, shape, ShapeRequest("-1"))
            held = asyncio.create_task(
                emulator.serve(
                    actor,
                    shape,
                    ShapeRequest(
                        first.headers["electric-offset"], first.headers["electric-handle"], True
                    ),
                )
            )
            for _ in range(500):  # until the request is held (at most 5 s)
                if hub.held:
                    break
                await asyncio.sleep(0.01)
            assert hub.held == 1
            for waiter in hub._waiters[actor.user_id]:
                waiter.woken.set()  # what a change to the shape does
            for _ in range(steps):
                await asyncio.sleep(0)
            held.cancel()
            done, _ = await asyncio.wait([held], timeout=2)
            return held in done and held.cancelled()
        finally:
            await hub.stop()

    for steps in range(5):
        assert asyncio.run(cancelled_after(steps)), f"the cancellation was lost ({steps})"

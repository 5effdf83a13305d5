"""AsyncThreadkeep: the same operations as coroutines (run with asyncio.run,
since the suite has no asyncio plugin)."""

from __future__ import annotations

import asyncio

import pytest

from threadkeep import (
    Actor,
    AsyncThreadkeep,
    InvalidInput,
    SessionNotFound,
    StoreClosed,
    Threadkeep,
)


def test_async_wrapper_runs_the_basic_operations(tk, actor):
    async def main() -> None:
        atk = AsyncThreadkeep(tk)
        try:
            s = (await atk.create_session(actor, title="async")).value
            done = await atk.append_messages(
                actor,
                s.id,
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            )
            assert [m.seq for m in done.value] == [1, 2]
            assert (await atk.get_session(actor, s.id)).head_seq == 2
            assert [m.content for m in await atk.get_history(actor, s.id)] == ["q", "a"]
            assert await atk.count_messages(actor, s.id) == 2
            b = (await atk.fork_session(actor, s.id, at_seq=1)).value
            assert [m.content for m in await atk.get_history(actor, b.id)] == ["q"]
            ev = (await atk.start_tool_event(actor, s.id, {"name": "t"})).value
            fin = (await atk.finish_tool_event(actor, ev.id, output={"ok": True})).value
            assert fin.output == {"ok": True}
            page = await atk.list_sessions(actor)
            assert {x.id for x in page.items} == {s.id, b.id}
            changes = await atk.read_changes(actor, 0)
            assert done.txid in {c.txid for c in changes}
        finally:
            await atk.close()  # closes tk too; its fixture's close is idempotent

    asyncio.run(main())


def test_async_errors_are_the_same_typed_errors(tk, actor):
    async def main() -> None:
        atk = AsyncThreadkeep(tk)
        try:
            with pytest.raises(SessionNotFound):
                await atk.get_session(actor, "nope")
            s = (await atk.create_session(actor)).value
            with pytest.raises(InvalidInput):
                await atk.append_message(actor, s.id, {"role": "wizard"})
        finally:
            await atk.close()  # closes tk too; its fixture's close is idempotent

    asyncio.run(main())


def test_twenty_concurrent_async_appends_get_seqs_1_to_20_exactly_once(tk, actor):
    async def main() -> list[int]:
        atk = AsyncThreadkeep(tk)
        try:
            s = (await atk.create_session(actor)).value
            results = await asyncio.gather(
                *(
                    atk.append_message(actor, s.id, {"role": "user", "content": f"c{i}"})
                    for i in range(20)
                )
            )
            hist = await atk.get_history(actor, s.id)
            assert [m.seq for m in hist] == list(range(1, 21))
            assert sorted(m.content for m in hist) == sorted(f"c{i}" for i in range(20))
            assert (await atk.get_session(actor, s.id)).head_seq == 20
            return [r.value.seq for r in results]
        finally:
            await atk.close()  # closes tk too; its fixture's close is idempotent

    got = asyncio.run(main())
    assert sorted(got) == list(range(1, 21))


def test_concurrent_async_retries_with_one_client_id_store_one_message(tk, actor):
    async def main() -> None:
        atk = AsyncThreadkeep(tk)
        try:
            s = (await atk.create_session(actor)).value
            msg = {"role": "user", "content": "once", "client_id": "same"}
            results = await asyncio.gather(
                *(atk.append_message(actor, s.id, msg) for _ in range(10))
            )
            assert len({r.value.id for r in results}) == 1
            assert len({r.txid for r in results}) == 1
            assert await atk.count_messages(actor, s.id) == 1
        finally:
            await atk.close()  # closes tk too; its fixture's close is idempotent

    asyncio.run(main())


def test_async_open_and_close_own_their_store(db_url):
    async def main() -> None:
        async with await AsyncThreadkeep.open(db_url) as atk:
            user = (await atk.create_user("ada")).value
            me = Actor(user.id)
            s = (await atk.create_session(me, title="x")).value
            await atk.append_message(me, s.id, {"role": "user", "content": "persisted"})
        with pytest.raises(StoreClosed):
            atk.sync.get_session(me, s.id)

    asyncio.run(main())
    with Threadkeep.open(db_url) as again:
        users = again.list_users()
        assert [u.name for u in users] == ["ada"]
        me = Actor(users[0].id)
        [s] = again.list_sessions(me).items
        assert [m.content for m in again.get_history(me, s.id)] == ["persisted"]

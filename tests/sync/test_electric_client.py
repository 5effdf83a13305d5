"""The real ``@electric-sql/client`` and a TanStack DB electric collection
against a running ``threadkeep serve``, on SQLite and on PostgreSQL: the
applicable items of the conformance checklist in ../shared/electric-protocol.md
§8 (numbered below), plus scoping against a hostile client."""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
from http_world import HttpWorld, Rest
from sync_helpers import (
    LONG_POLL,
    POLL,
    Caller,
    Probe,
    Serve,
    new_caller,
    probes,
    server_fixture,
    up_to_date,
)

from conftest import apply_changes, shared_store_fixture
from random_writes import AtOnce, make_world, random_steps, transcript_record
from replay_checks import differences
from threadkeep import Threadkeep
from threadkeep.importers import FORMATS, run_import

store = shared_store_fixture("sync")
server = server_fixture()


def _rest(server: Serve, caller: Caller) -> httpx.Client:
    return httpx.Client(base_url=server.base, headers=caller.headers, timeout=10)


def _session(api: httpx.Client, title: str = "t") -> dict[str, Any]:
    r = api.post("/v1/sessions", json={"title": title})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _append(api: httpx.Client, sid: str, *texts: str) -> dict[str, Any]:
    r = api.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "user", "content": t} for t in texts]},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _no_loop_warnings(p: Probe) -> None:
    # §8.18: a caught-up non-live answer carries up-to-date, so the client
    # never detects a fetch loop (nor any other complaint).
    complaints = [e for e in p.events if e["kind"] == "console"]
    assert complaints == [], complaints


def test_initial_sync_gives_every_row_typed_and_the_collection_becomes_ready(
    store: Threadkeep, server: Serve
) -> None:
    """§8.1, §8.2."""
    me = new_caller(store)
    s = store.create_session(me.actor, title="typed", tags=["x"]).value
    store.append_messages(
        me.actor,
        s.id,
        [
            {"role": "user", "content": "a", "parts": [{"type": "text", "text": "a"}]},
            {"role": "assistant", "content": "b", "input_tokens": 7},
        ],
    )
    with probes() as ps:
        ps.append(p := Probe(server.shape_url(), me.token, params={"table": "messages"}))
        first = p.wait_for(up_to_date)
        inserts = [m for m in first["messages"] if "key" in m]
        assert [m["value"]["content"] for m in inserts] == ["a", "b"]
        assert {m["headers"]["operation"] for m in inserts} == {"insert"}
        assert any(m["headers"].get("control") == "snapshot-end" for m in first["messages"])
        row = inserts[0]["value"]
        assert row["seq"] == "1n"  # int8 -> BigInt
        assert row["parts"] == [{"type": "text", "text": "a"}]  # jsonb -> object
        assert row["model"] is None
        assert isinstance(row["created_at"], str) and row["created_at"].endswith("+00")
        assert inserts[1]["value"]["input_tokens"] == "7n"

        ps.append(
            c := Probe(
                server.shape_url(), me.token, mode="collection", params={"table": "sessions"}
            )
        )
        ready = c.wait_for(lambda e: e["kind"] == "ready")
        assert ready["size"] == 1
        c.send({"state": True})
        (only,) = c.wait_for(lambda e: e["kind"] == "state")["rows"]
        assert only["title"] == "typed" and only["tags"] == ["x"]
        assert only["starred"] is False  # bool
        _no_loop_warnings(p)
        _no_loop_warnings(c)


def test_live_insert_partial_update_trash_restore_and_purge(
    store: Threadkeep, server: Serve
) -> None:
    """§8.3 live insert with its txid, §8.4 partial update, §8.5 delete (key
    only), §8.7 moving out of and into the shape (trash, restore)."""
    me = new_caller(store)
    with probes() as ps, _rest(server, me) as api:
        ps.append(p := Probe(server.shape_url(), me.token, params={"table": "sessions"}))
        p.wait_for(up_to_date)
        t0 = time.monotonic()
        created = _session(api, "live")
        ins = p.wait_for(
            lambda e: any(m.get("value", {}).get("title") == "live" for m in e.get("messages", []))
        )
        assert time.monotonic() - t0 < 1.5
        (msg,) = [m for m in ins["messages"] if "key" in m]
        assert msg["headers"]["operation"] == "insert"
        assert msg["headers"]["txids"] == [created["txid"]]
        assert ins["messages"][-1]["headers"]["control"] == "up-to-date"

        upd = api.patch(f"/v1/sessions/{created['id']}", json={"title": "renamed"}).json()
        got = p.wait_for(
            lambda e: any(
                upd["txid"] in m.get("headers", {}).get("txids", []) for m in e.get("messages", [])
            )
        )
        (u,) = [m for m in got["messages"] if "key" in m]
        assert u["headers"]["operation"] == "update"
        assert set(u["value"]) == {"id", "title", "version", "updated_at"}

        trash = api.delete(f"/v1/sessions/{created['id']}").json()
        got = p.wait_for(
            lambda e: any(
                trash["txid"] in m.get("headers", {}).get("txids", [])
                for m in e.get("messages", [])
            )
        )
        (d,) = [m for m in got["messages"] if "key" in m]
        assert d["headers"]["operation"] == "delete" and d["value"] == {"id": created["id"]}

        back = api.post(f"/v1/sessions/{created['id']}/restore").json()
        got = p.wait_for(
            lambda e: any(
                back["txid"] in m.get("headers", {}).get("txids", []) for m in e.get("messages", [])
            )
        )
        (r,) = [m for m in got["messages"] if "key" in m]
        assert r["headers"]["operation"] == "insert" and r["value"]["title"] == "renamed"

        state: dict[str, dict[str, Any]] = {}
        apply_changes(state, [m for b in p.batches() for m in b["messages"]])
        assert [v["title"] for v in state.values()] == ["renamed"]
        _no_loop_warnings(p)


def test_a_transcript_import_that_grows_reaches_the_client_as_one_insert_then_updates(
    store: Threadkeep, server: Serve, tmp_path: Path
) -> None:
    """A transcript imported, then imported again once it grew (a periodic
    ``threadkeep import``), while a client follows the sessions shape. The
    import used to log the session's counters with the whole row, and its
    ``deleted_at`` said "back from the trash": the client got an insert of a
    key it held, at creation and at every growth. (TanStack DB's collection
    takes that as an update; a client applying the protocol as written does
    not.) Now: one insert, then updates, and the session's new head."""
    me = new_caller(store)
    path = tmp_path / "grows.jsonl"

    def imported(n: int) -> str:
        path.write_text("".join(json.dumps(transcript_record(i)) + "\n" for i in range(n)))
        items = FORMATS["claude-code"].read(path, me.actor.user_id)
        report = run_import(store, me.actor, items, format="claude-code", path=str(path))
        assert report.failed == []
        return report.sessions[0].status

    with probes() as ps:
        ps.append(p := Probe(server.shape_url(), me.token, params={"table": "sessions"}))
        p.wait_for(up_to_date)
        assert imported(2) == "created"
        assert imported(6) == "updated"
        (session,) = store.list_sessions(me.actor).items
        head = f"{session.head_seq}n"  # as the client decodes an int8
        p.wait_for(
            lambda e: any(m.get("value", {}).get("head_seq") == head for m in e.get("messages", []))
        )
        got = [m for b in p.batches() for m in b["messages"] if "key" in m]
        assert [m["headers"]["operation"] for m in got] == ["insert", "update", "update"]
        assert all("deleted_at" not in m["value"] for m in got[1:])
        state: dict[str, dict[str, Any]] = {}
        apply_changes(state, got)
        assert [v["head_seq"] for v in state.values()] == [head]
        _no_loop_warnings(p)


FOLLOWED = ("sessions", "messages", "tool_events", "timeline_events", "todos", "uploads")


def test_real_clients_following_random_writes_end_with_the_tables(
    store: Threadkeep, server: Serve, tmp_path: Path
) -> None:
    """A real ShapeStream per table follows live while 90 random writes of
    every kind (tests/random_writes.py: forks, rewinds, trash, purges,
    imports, retention...) run through the library on the server's database.
    Each client's rows, applied as the protocol says, must come to equal what
    a client starting afterwards gets: what the Python follower in
    contract/test_log_replay.py shows, here through the HTTP endpoint, its
    long polls and the client's own parsing."""
    me = new_caller(store)
    world = make_world(store, tmp_path, me.actor)
    with probes() as ps:
        for table in FOLLOWED:
            ps.append(Probe(server.shape_url(), me.token, params={"table": table}))
        for p in ps:
            p.wait_for(up_to_date)
        for op, numbers in random_steps(random.Random(7), 90):
            world.run(op, numbers)
        for table, p in zip(FOLLOWED, list(ps), strict=True):
            # The table as a client starting now gets it, parsed the same way.
            ps.append(fresh := Probe(server.shape_url(), me.token, params={"table": table}))
            fresh.wait_for(up_to_date)
            want: dict[str, dict[str, Any]] = {}
            apply_changes(want, fresh.changes())
            deadline = time.monotonic() + 15
            while True:
                state: dict[str, dict[str, Any]] = {}
                apply_changes(state, p.changes())
                if state == want or time.monotonic() > deadline:
                    break
                p.drain(0.2)
            assert state == want, table
            _no_loop_warnings(p)
    assert len(world.refused) < 45  # most of the writes did write


def _collection_rows(c: Probe) -> dict[str, dict[str, Any]]:
    """A collection's rows by id, without TanStack DB's virtual ``$`` props."""
    asked = sum(e["kind"] == "state" for e in c.events)
    c.send({"state": True})
    seen = itertools.count(1)
    state = c.wait_for(lambda e: e["kind"] == "state" and next(seen) > asked)
    return {r["id"]: {k: v for k, v in r.items() if not k.startswith("$")} for r in state["rows"]}


def _assert_collections_hold_every_write(
    store: Threadkeep,
    server: Serve,
    me: Caller,
    start: int,
    collections: dict[str, Probe],
    txids: list[int],
) -> None:
    """Every txid a write answered is in ``me``'s log after ``start`` and
    resolves with ``awaitTxId`` on each collection whose table its
    transaction changed; then each collection holds the rows a client
    starting now gets."""
    touched: dict[int, set[str]] = {}
    after = start
    while batch := store.read_changes(me.actor, after, limit=1000):
        for ch in batch:
            touched.setdefault(ch.txid, set()).add(ch.table)
        after = batch[-1].offset
    assert txids, "no write answered"
    for txid in txids:
        assert txid in touched, f"txid {txid} was answered but is not in the log"
        for table in sorted(touched[txid] & set(collections)):
            c = collections[table]
            c.send({"await": txid, "timeout": 10_000})
            got = c.wait_for(lambda e, t=txid: e["kind"] == "awaited" and e["txid"] == t)
            assert got["ok"], (table, got)
    for table, c in collections.items():
        fresh = Probe(server.shape_url(), me.token, params={"table": table})
        try:
            fresh.wait_for(up_to_date)
            want: dict[str, dict[str, Any]] = {}
            apply_changes(want, fresh.changes())
        finally:
            fresh.close()
        want_rows = {v["id"]: v for v in want.values()}
        deadline = time.monotonic() + 15
        while True:  # the library's writes (imports, retention) have no txid awaited
            rows = _collection_rows(c)
            if rows == want_rows or time.monotonic() > deadline:
                break
            c.drain(0.2)
        assert differences(rows, want_rows)[:10] == [], table


def _follow(ps: list[Probe], server: Serve, me: Caller) -> dict[str, Probe]:
    """A TanStack DB collection per followed table, loaded."""
    collections = {}
    for table in FOLLOWED:
        ps.append(
            p := Probe(server.shape_url(), me.token, mode="collection", params={"table": table})
        )
        collections[table] = p
    for p in ps:
        p.wait_for(lambda e: e["kind"] == "ready")
    return collections


def test_collections_following_random_writes_over_http_resolve_every_txid_and_end_with_the_tables(
    store: Threadkeep, server: Serve, tmp_path: Path
) -> None:
    """What an app does: a TanStack DB electric collection per table follows
    live while 90 random writes of every kind go through the REST API
    (tests/sync/http_world.py). Every txid an answer carried must resolve
    with ``awaitTxId`` on each collection whose table its transaction
    changed (the log says which), and each collection must come to hold the
    rows a client starting afterwards gets."""
    me = new_caller(store)
    world = make_world(store, tmp_path, me.actor)
    start = store.last_offset()
    rest = Rest(server.base, me.token)
    theirs = Rest(server.base, store.create_token(world.them, "them").value.token)
    http = HttpWorld(world, rest, theirs)
    with probes() as ps:
        collections = _follow(ps, server, me)
        for op, numbers in random_steps(random.Random(11), 90):
            http.run(op, numbers)
        _assert_collections_hold_every_write(store, server, me, start, collections, rest.txids)
    rest.close()
    theirs.close()
    assert len(http.refused) < 45  # most of the writes did write


def test_collections_follow_concurrent_writers_on_two_servers(
    store: Threadkeep, server: Serve, tmp_path: Path
) -> None:
    """As above, with four writers at once, two through each of two
    ``threadkeep serve`` processes on the same database (on SQLite two
    group-commit leaders contend for the lock; on PostgreSQL concurrent
    transactions commit out of offset order), while the library's own writes
    (imports, retention) run in this process. The collections follow the
    first server. No write may fail with anything but a refusal (4xx)."""
    me = new_caller(store)
    first = make_world(store, tmp_path, me.actor)
    start = store.last_offset()
    other = Serve(
        store.engine.url,
        tmp_path,
        {"THREADKEEP_SYNC__LONG_POLL_SECONDS": LONG_POLL, "THREADKEEP_SYNC__POLL_SECONDS": POLL},
    )
    their_token = store.create_token(first.them, "them").value.token
    rests = [(Rest(s.base, me.token), Rest(s.base, their_token)) for s in (server, other) * 2]
    worlds = [HttpWorld(first, mine, theirs) for mine, theirs in rests]
    rng = random.Random(5)
    plans = [random_steps(rng, 30) for _ in worlds]
    try:
        with probes() as ps:
            collections = _follow(ps, server, me)
            assert AtOnce(worlds, plans).join() == []
            txids = [t for mine, _ in rests for t in mine.txids]
            _assert_collections_hold_every_write(store, server, me, start, collections, txids)
    finally:
        other.kill()
        for mine, theirs in rests:
            mine.close()
            theirs.close()
    assert sum(len(w.refused) for w in worlds) < 60  # most of the writes did write


def test_a_users_stream_never_holds_another_users_rows_whatever_the_client_asks(
    store: Threadkeep, server: Serve
) -> None:
    """§8.8: the client's table/where/params are ignored; the token decides."""
    me, other = new_caller(store), new_caller(store)
    mine = store.create_session(me.actor, title="mine").value
    theirs = store.create_session(other.actor, title="theirs").value
    store.append_message(me.actor, mine.id, {"role": "user", "content": "mine"})
    store.append_message(other.actor, theirs.id, {"role": "user", "content": "theirs"})
    hostile = {
        "table": "messages",
        "where": f"owner_id = '{other.actor.user_id}' OR true",
        "params": {"1": other.actor.user_id},
        "columns": ["id", "content", "owner_id"],
    }
    with probes() as ps, _rest(server, other) as api:
        ps.append(p := Probe(server.shape_url(), me.token, params=hostile))
        p.wait_for(up_to_date)
        _append(api, theirs.id, "more of theirs")  # live, for the other user
        store.append_message(me.actor, mine.id, {"role": "user", "content": "mine again"})
        p.wait_for(
            lambda e: any(
                m.get("value", {}).get("content") == "mine again" for m in e.get("messages", [])
            )
        )
        owners = {
            m["value"].get("owner_id") for m in p.changes() if m["headers"]["operation"] == "insert"
        }
        assert owners == {me.actor.user_id}
        assert all("theirs" not in str(m) for m in p.changes())


def test_a_new_stream_resumes_from_an_offset_and_handle_without_duplicates(
    store: Threadkeep, server: Serve
) -> None:
    """§8.9."""
    me = new_caller(store)
    s = store.create_session(me.actor).value
    store.append_messages(me.actor, s.id, [{"role": "user", "content": f"m{i}"} for i in range(3)])
    with probes() as ps:
        ps.append(first := Probe(server.shape_url(), me.token, params={"table": "messages"}))
        b = first.wait_for(up_to_date)
        first.close()
        store.append_messages(
            me.actor, s.id, [{"role": "user", "content": f"n{i}"} for i in range(2)]
        )
        ps.append(
            second := Probe(
                server.shape_url(),
                me.token,
                params={"table": "messages"},
                offset=b["offset"],
                handle=b["handle"],
            )
        )
        second.wait_for(
            lambda e: (
                up_to_date(e)
                and any(m.get("value", {}).get("content") == "n1" for m in e["messages"])
            )
        )
        second.drain(0.5)
        assert [m["value"]["content"] for m in second.changes()] == ["n0", "n1"]


def test_txids_resolve_through_the_stream_and_through_the_snapshot_and_not_outside_the_shape(
    store: Threadkeep, server: Serve
) -> None:
    """§8.13, §8.14, §8.15 with a TanStack DB electric collection."""
    me = new_caller(store)
    with probes() as ps, _rest(server, me) as api:
        s = _session(api)
        before = _append(api, s["id"], "before")["txid"]
        ps.append(
            c := Probe(
                server.shape_url(),
                me.token,
                mode="collection",
                params={"table": "messages", "session_id": s["id"]},
            )
        )
        c.wait_for(lambda e: e["kind"] == "ready")
        c.send({"await": before, "timeout": 3000})  # committed before the snapshot
        got = c.wait_for(lambda e: e["kind"] == "awaited" and e["txid"] == before)
        assert got["ok"], got
        live = _append(api, s["id"], "live")["txid"]
        c.send({"await": live, "timeout": 3000})
        got = c.wait_for(lambda e: e["kind"] == "awaited" and e["txid"] == live)
        assert got["ok"] and got["ms"] < 1000, got
        elsewhere = _session(api, "not in the messages shape")["txid"]
        c.send({"await": elsewhere, "timeout": 1500})
        got = c.wait_for(lambda e: e["kind"] == "awaited" and e["txid"] == elsewhere)
        assert not got["ok"] and got["error"] == "TimeoutWaitingForTxIdError", got
        c.send({"state": True})
        rows = c.wait_for(lambda e: e["kind"] == "state")["rows"]
        assert sorted(r["content"] for r in rows) == ["before", "live"]


def test_protocol_errors_and_a_bad_token_stop_the_stream_with_a_clear_error(
    store: Threadkeep, server: Serve
) -> None:
    """§8.16."""
    me = new_caller(store)
    with probes() as ps:
        ps.append(p := Probe(server.shape_url(), "tk_not-a-token", params={"table": "messages"}))
        err = p.wait_for(lambda e: e["kind"] == "error")
        assert err["status"] == 401
        ps.append(q := Probe(server.shape_url(), me.token, params={"table": "no_such_table"}))
        err = q.wait_for(lambda e: e["kind"] == "error")
        assert err["status"] == 400
    r = httpx.get(
        server.shape_url(), params={"table": "messages", "offset": "nope"}, headers=me.headers
    )
    assert r.status_code == 400 and r.json()["errors"][0]["loc"] == ["query", "offset"]
    r = httpx.get(
        server.shape_url(), params={"table": "messages", "offset": "3_0"}, headers=me.headers
    )
    assert r.status_code == 400 and "handle" in r.json()["detail"]


def test_a_reset_makes_clients_refetch_with_a_new_handle_and_reload(
    store: Threadkeep, server: Serve
) -> None:
    """§8.11, §8.12: 409 with a new handle; the old one is never served again."""
    me = new_caller(store)
    s = store.create_session(me.actor, title="kept").value
    with probes() as ps:
        ps.append(p := Probe(server.shape_url(), me.token, params={"table": "sessions"}))
        first = p.wait_for(up_to_date)
        old = first["handle"]
        store.reset_sync()
        store.update_session(me.actor, s.id, title="after reset")

        def caught_up(e: dict[str, Any]) -> bool:
            if e["kind"] != "batch" or e["handle"] == old or not up_to_date(e):
                return False
            state: dict[str, dict[str, Any]] = {}
            apply_changes(state, [m for b in p.batches() for m in b["messages"]])
            return [v["title"] for v in state.values()] == ["after reset"]

        now = p.wait_for(caught_up, timeout=20)
        controls = [m["headers"].get("control") for b in p.batches() for m in b["messages"]]
        assert "must-refetch" in controls
        r = httpx.get(
            server.shape_url(),
            params={"table": "sessions", "offset": first["offset"], "handle": old},
            headers=me.headers,
        )
        assert r.status_code == 409 and r.headers["electric-handle"] == now["handle"] != old


def test_a_client_in_sse_mode_gets_every_write(store: Threadkeep, server: Serve) -> None:
    """§8.19 (liveSse: true): each live answer is a short event stream ending in
    up-to-date; the client resumes from its global_last_seen_lsn and misses
    nothing. (Answering an SSE request with JSON lost rows: the client took the
    offset from the headers and could not read the body.)"""
    me = new_caller(store)
    s = store.create_session(me.actor).value
    with probes() as ps:
        ps.append(p := Probe(server.shape_url(), me.token, params={"table": "messages"}, sse=True))
        p.wait_for(up_to_date)
        for i in range(4):
            store.append_message(me.actor, s.id, {"role": "user", "content": f"sse{i}"})
            time.sleep(0.4)
        p.wait_for(lambda e: e["kind"] == "batch" and "sse3" in str(e["messages"]), timeout=20)
        p.drain(0.5)
        inserts = [m for m in p.changes() if m["headers"]["operation"] == "insert"]
        assert [m["value"]["content"] for m in inserts] == [f"sse{i}" for i in range(4)]
        assert not p.errors()

"""The change log under concurrency: readers that follow ``after = last offset
seen`` never skip and never repeat a change, and see each row's changes in the
order they were committed.

DESIGN.md (Sync): "Every write appends rows to changes in the same
transaction: a monotonically increasing offset ..."; store/changes.py: on
PostgreSQL offsets are assigned after commit so that "nothing is skipped,
nothing is read twice"; tables.py: offsets are "assigned in commit order".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from conftest import create_pg_database, drop_pg_database
from threadkeep import Actor, Appended, Change, Message, Threadkeep
from threadkeep.store import sessions as session_q
from threadkeep.store import tables

WRITERS = 8
CONSUMER_LIMITS = (1000, 100, 20)
RUN_SECONDS = 3.0  # at least; and until MIN_OPS writes are acknowledged (slow disks)
MIN_OPS = 400
MAX_SECONDS = 45.0
# Fewer than this many acknowledged writes and the run proved too little to
# pass. A loaded CI machine managed 151 in 15 s on PostgreSQL, so the bar is
# what the interleavings need, not what a quiet machine does.
FLOOR_OPS = 100


def _db_changes(tk: Threadkeep, owner_id: str) -> list[tuple[Any, ...]]:
    tk.engine.prepare_changes_read()
    c = tables.changes.c
    with tk.engine.sa_engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.log_offset, c.txid, c.table_name, c.row_key, c.op)
            .where(c.owner_id == owner_id)
            .order_by(c.log_offset)
        ).all()
    return [tuple(r) for r in rows]


def _key(ch: Change) -> tuple[Any, ...]:
    return (ch.offset, ch.txid, ch.table, ch.key, ch.op.value)


def _replay(stream: list[Change]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Apply the stream the way a sync client does: an insert sets the row, an
    update merges the columns it carries, a delete drops the row."""
    state: dict[tuple[str, str], dict[str, Any] | None] = {}
    for ch in stream:
        k = (ch.table, ch.key)
        if ch.op.value == "delete":
            state[k] = None
        elif ch.op.value == "insert" or state.get(k) is None:
            state[k] = dict(ch.row or {})
        else:
            state[k] = {**state[k], **(ch.row or {})}  # type: ignore[dict-item]
    return state


def _check_row_order(stream: list[Change], who: str) -> None:
    """Per row, the log shows its versions in commit order: a session's
    ``version`` and ``head_seq`` never go back (no rewinds here), and a session's
    messages are inserted in seq order."""
    last: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], tuple[int, int]] = {}  # (offset, txid) of the last value
    for ch in stream:
        row = ch.row or {}
        if ch.table == "sessions":
            for field in ("version", "head_seq", "event_seq"):
                if field in row:
                    k = (ch.key, field)
                    assert row[field] >= last.get(k, 0), (
                        f"{who}: session {ch.key} {field} goes back from {last[k]} (offset, "
                        f"txid {where[k]}) to {row[field]} (offset, txid {(ch.offset, ch.txid)})"
                    )
                    last[k], where[k] = row[field], (ch.offset, ch.txid)
        elif ch.table == "messages" and ch.op.value == "insert":
            k = (str(ch.session_id), "seq")
            assert row["seq"] > last.get(k, 0), (
                f"{who}: session {ch.session_id}: message seq {row['seq']} (offset, txid "
                f"{(ch.offset, ch.txid)}) comes after seq {last[k]} (offset, txid {where[k]})"
            )
            last[k], where[k] = row["seq"], (ch.offset, ch.txid)


def test_consumers_see_every_change_once_in_order(db_url: str) -> None:
    writer_tk = Threadkeep.open(db_url)
    reader_tk = Threadkeep.open(db_url)  # a second instance, as a second server would be
    try:
        _run(writer_tk, reader_tk)
    finally:
        writer_tk.close()
        reader_tk.close()


def _run(wtk: Threadkeep, rtk: Threadkeep) -> None:
    actor = Actor(wtk.create_user("ada").value.id)
    shared = wtk.create_session(actor, title="shared").value.id
    own = [wtk.create_session(actor, title=f"own {i}").value.id for i in range(WRITERS)]

    acked_txids: set[int] = set()
    acked_messages: set[str] = set()
    errors: list[BaseException] = []
    writers_done = threading.Event()
    start = time.monotonic()
    ops_done = [0]

    def keep_going() -> bool:
        elapsed = time.monotonic() - start
        return elapsed < RUN_SECONDS or (ops_done[0] < MIN_OPS and elapsed < MAX_SECONDS)

    def writer(i: int) -> None:
        ops: list[Callable[[int], Any]] = [
            lambda k: wtk.append_message(actor, shared, {"role": "user", "content": f"{i}.{k}"}),
            lambda k: wtk.append_messages(
                actor, own[i], [{"role": "user", "content": f"{i}.{k}.{j}"} for j in range(3)]
            ),
            lambda k: wtk.append(
                actor,
                shared,
                [{"role": "assistant", "content": f"{i}.{k}", "client_id": f"w{i}-{k}"}],
                timeline_events=[{"kind": "tick", "payload": {"w": i, "k": k}}],
            ),
            lambda k: wtk.update_session(
                actor, shared if k % 2 else own[i], {"title": f"t{i}.{k}", "starred": k % 3 == 0}
            ),
            lambda k: wtk.finish_tool_event(
                actor, wtk.start_tool_event(actor, own[i], {"name": "bash"}).value.id, output=k
            ),
        ]
        k = 0
        try:
            while keep_going():
                done = ops[(k + i) % len(ops)](k)
                ops_done[0] += 1  # (a lost update under races only lengthens the run)
                acked_txids.add(done.txid)
                value = done.value
                if isinstance(value, Message):
                    acked_messages.add(value.id)
                elif isinstance(value, Appended):
                    acked_messages.update(m.id for m in value.messages)
                k += 1
        except BaseException as exc:
            errors.append(exc)

    streams: list[list[Change]] = [[] for _ in CONSUMER_LIMITS]
    reads = [0 for _ in CONSUMER_LIMITS]

    def consumer(n: int) -> None:
        last = 0
        try:
            while True:
                final = writers_done.is_set()
                while page := rtk.read_changes(actor, after=last, limit=CONSUMER_LIMITS[n]):
                    reads[n] += 1
                    streams[n].extend(page)
                    last = max(last, max(c.offset for c in page))
                    if not final:
                        break
                if final:
                    return
                if len(page) < CONSUMER_LIMITS[n]:
                    time.sleep(0.002)  # caught up: a long-poll would wait here
        except BaseException as exc:
            errors.append(exc)

    ws = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    cs = [threading.Thread(target=consumer, args=(n,)) for n in range(len(CONSUMER_LIMITS))]
    for t in [*cs, *ws]:
        t.start()
    for t in ws:
        t.join()
    writers_done.set()
    for t in cs:
        t.join()
    assert not errors, errors

    assert ops_done[0] >= FLOOR_OPS, f"only {ops_done[0]} writes in {MAX_SECONDS}s"
    expected = _db_changes(rtk, actor.user_id)
    with rtk.engine.sa_engine.connect() as conn:
        message_rows = {
            r.id: (r.session_id, r.seq)
            for r in conn.execute(
                sa.select(tables.messages.c.id, tables.messages.c.session_id, tables.messages.c.seq)
            )
        }
    assert acked_messages <= set(message_rows)
    sessions_now = {sid: rtk.get_session(actor, sid) for sid in [shared, *own]}

    for n, stream in enumerate(streams):
        who = f"consumer {n} (limit {CONSUMER_LIMITS[n]}, {reads[n]} reads)"
        offsets = [c.offset for c in stream]
        bad = [(a, b) for a, b in itertools.pairwise(offsets) if b <= a]
        assert not bad, f"{who}: offsets not increasing: {bad[:5]}"
        keys = [(c.table, c.key, c.op.value, c.txid) for c in stream]
        assert len(set(keys)) == len(keys), f"{who}: a change was delivered twice"
        got = [_key(c) for c in stream]
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            raise AssertionError(
                f"{who}: stream differs from the changes table: {len(got)} vs "
                f"{len(expected)} rows; missing {missing[:5]}; extra {extra[:5]}"
            )
        inserted = {c.key for c in stream if c.table == "messages" and c.op.value == "insert"}
        assert inserted == set(message_rows), f"{who}: messages missing from the stream"
        assert acked_txids <= {c.txid for c in stream}, f"{who}: acked txids not in the stream"
        _check_row_order(stream, who)
        # Replaying the stream gives the rows as they are now.
        state = _replay(stream)
        for mid, (sid, seq) in message_rows.items():
            row = state[("messages", mid)]
            assert row is not None and (row["session_id"], row["seq"]) == (sid, seq)
        for sid, s in sessions_now.items():
            row = state[("sessions", sid)]
            assert row is not None
            fields = ("head_seq", "event_seq", "version", "title", "starred")
            assert {f: row[f] for f in fields} == {f: getattr(s, f) for f in fields}, (
                f"{who}: session {sid} replayed from the stream differs from the database"
            )


def test_a_rows_changes_follow_commit_order_not_txid_order_pg() -> None:
    """PostgreSQL only (SQLite runs one write transaction at a time).

    Transaction T2 takes its txid first (it updates session S), then waits
    for the row lock of session C, which T1 (a later txid) holds; T1 commits,
    then T2 updates C and commits. C's change from T2 is the newer one, so the
    log must deliver it after T1's: a reader applying the log in offset order
    must end with T2's title. The write functions are ordinary service-layer
    operations composed through the engine's write contract, as a future
    operation (or rewind_session, which locks one session and then updates its
    forks) composes them.
    """
    url = create_pg_database()
    try:
        with Threadkeep.open(url) as tk:
            actor = Actor(tk.create_user("ada").value.id)
            owner = actor.user_id
            s = tk.create_session(actor, title="S").value
            c = tk.create_session(actor, title="C").value
            t2_has_txid, t1_holds_c = threading.Event(), threading.Event()

            def t2_fn(tx: Any) -> Any:
                session_q.update_session(tx, owner, s.id, {"title": "T2 was here"}, None)
                t2_has_txid.set()
                assert t1_holds_c.wait(10)
                return session_q.update_session(tx, owner, c.id, {"title": "by T2"}, None)

            def t1_fn(tx: Any) -> Any:
                out = session_q.update_session(tx, owner, c.id, {"title": "by T1"}, None)
                t1_holds_c.set()
                time.sleep(0.3)  # T2 is now waiting for C's row lock
                return out

            def run_t1() -> Any:
                assert t2_has_txid.wait(10)
                return tk.engine.write(t1_fn)

            with ThreadPoolExecutor(2) as pool:
                f2 = pool.submit(tk.engine.write, t2_fn)
                f1 = pool.submit(run_t1)
                done = {"t1": f1.result(30), "t2": f2.result(30)}
            assert done["t2"].txid < done["t1"].txid  # the set-up did what it meant to
            assert done["t2"].value.version == done["t1"].value.version + 1
            now = tk.get_session(actor, c.id)
            assert (now.title, now.version) == ("by T2", 3)

            stream = [
                ch
                for ch in tk.read_changes(actor, after=0)
                if ch.table == "sessions" and ch.key == c.id
            ]
            seen = [
                (ch.txid, (ch.row or {}).get("title"), (ch.row or {}).get("version"))
                for ch in stream
            ]
            assert [t for t, _, _ in seen][-2:] == [done["t1"].txid, done["t2"].txid], (
                f"C's changes in offset order (txid, title, version): {seen}; T1 committed "
                f"first (txid {done['t1'].txid}), T2 last (txid {done['t2'].txid})"
            )
            assert _replay(stream)[("sessions", c.id)]["title"] == "by T2"  # type: ignore[index]
    finally:
        drop_pg_database(url)

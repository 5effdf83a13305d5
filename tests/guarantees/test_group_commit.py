"""Group commit on SQLite: writers queued behind a commit share the next one,
each gets its own answer, and one writer's failure is its own.

The queue is driven deterministically: the first writer's operation blocks
inside its transaction until the others have queued, so the batch sizes are
known, not hoped for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from threadkeep import Actor, InvalidInput, Threadkeep
from threadkeep.model.messages import NewMessage
from threadkeep.store import messages as message_q
from threadkeep.store import sqlite as sqlite_store
from threadkeep.store import tables
from threadkeep.store.group_commit import GroupCommitQueue, Request


def _wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def _start(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = target()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


# --- the queue alone -----------------------------------------------------------


def _blocking_queue(gate: threading.Event, sizes: list[int]) -> GroupCommitQueue:
    def run_batch(batch: list[Request]) -> None:
        sizes.append(len(batch))
        for r in batch:
            if r.fn == "block":
                gate.wait(10)
            if r.fn == "fail-batch":
                raise RuntimeError("the batch failed")
            if r.fn != "forget":
                r.finish(result=("done", r.fn))

    return GroupCommitQueue(run_batch)


def test_callers_queued_behind_a_commit_share_the_next_batch() -> None:
    gate, sizes = threading.Event(), []
    q = _blocking_queue(gate, sizes)
    first, first_out = _start(lambda: q.submit("block"))
    _wait_for(lambda: sizes == [1], "the first batch")
    others = [_start(lambda i=i: q.submit(i)) for i in range(7)]
    _wait_for(lambda: len(q._queue) == 7, "seven queued callers")
    gate.set()
    for t, _ in [(first, first_out), *others]:
        t.join(10)
    assert sizes == [1, 7]
    assert first_out == {"value": ("done", "block")}
    assert [out for _, out in others] == [{"value": ("done", i)} for i in range(7)]
    q.close()


def test_a_failed_batch_fails_its_callers_only() -> None:
    gate, sizes = threading.Event(), []
    q = _blocking_queue(gate, sizes)
    first, _ = _start(lambda: q.submit("block"))
    _wait_for(lambda: sizes == [1], "the first batch")
    doomed = [_start(lambda: q.submit("fail-batch")), _start(lambda: q.submit("x"))]
    _wait_for(lambda: len(q._queue) == 2, "two queued callers")
    gate.set()
    first.join(10)
    for t, _ in doomed:
        t.join(10)
    assert all(isinstance(out.get("error"), RuntimeError) for _, out in doomed)
    assert q.submit("after") == ("done", "after")  # the queue goes on
    q.close()


def test_a_request_the_batch_forgot_is_answered_with_an_error() -> None:
    q = _blocking_queue(threading.Event(), [])
    with pytest.raises(RuntimeError, match="not completed"):
        q.submit("forget")
    assert q.submit("next") == ("done", "next")
    q.close()


def _timed_queue(seconds: float, sizes: list[int]) -> GroupCommitQueue:
    """A queue whose every batch takes ``seconds``, as a commit's fsync does
    (the sleep lets the other threads run, as the fsync does)."""

    def run_batch(batch: list[Request]) -> None:
        sizes.append(len(batch))
        time.sleep(seconds)
        for r in batch:
            r.finish(result=r.fn)

    return GroupCommitQueue(run_batch)


def test_steady_writers_share_every_commit_instead_of_alternating() -> None:
    """Four threads appending in a loop: the callers a commit wakes re-submit
    one by one. Without the leader's gathering wait the first of them leads
    alone, and the batches alternate 1, 3, 1, 3 (two commits per round);
    with it, nearly every commit carries all four."""
    sizes: list[int] = []
    q = _timed_queue(0.01, sizes)
    rounds = 30

    def writer(i: int) -> list[Any]:
        return [q.submit((i, k)) for k in range(rounds)]

    started = [_start(lambda i=i: writer(i)) for i in range(4)]
    for t, _ in started:
        t.join(30)
    assert [out["value"] for _, out in started] == [
        [(i, k) for k in range(rounds)] for i in range(4)
    ]
    assert sum(sizes) == 4 * rounds
    # Alternating would take about 2 * rounds commits; all full, rounds + 1.
    assert len(sizes) <= rounds * 1.3, sizes
    q.close()


def test_a_lone_writer_never_waits_to_gather() -> None:
    """The gathering wait is for callers the last batch says are coming: a
    single writer's last batch was its own, so it never waits; after a burst
    it waits once, briefly, and then expects nobody."""
    sizes: list[int] = []
    q = _timed_queue(0.001, sizes)
    waits: list[float | None] = []
    wait_for = q._arrived.wait_for

    def counting(predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        waits.append(timeout)
        return wait_for(predicate, timeout)

    q._arrived.wait_for = counting  # type: ignore[method-assign]
    for k in range(20):
        assert q.submit(k) == k
    assert sizes == [1] * 20 and waits == []

    burst = [_start(lambda i=i: q.submit(i)) for i in range(4)]
    for t, _ in burst:
        t.join(10)
    waits.clear()
    for k in range(5):
        assert q.submit(("after", k)) == ("after", k)
    assert len(waits) <= 1  # at most once, right after the burst
    assert all(w is not None and w <= 0.005 for w in waits)
    q.close()


# --- the SQLite store ----------------------------------------------------------


@pytest.fixture
def sqlite_tk(tmp_path: Path) -> Any:
    tk = Threadkeep.open(f"sqlite:///{tmp_path / 'gc.db'}")
    yield tk
    tk.close()


class _Writers:
    """One user's writes to a SQLite store, its group commit driven by hand:
    a write made with ``block`` waits inside its transaction until ``gate``
    is set, so the writes that queue meanwhile share the next commit.
    ``sizes`` records each commit's number of requests."""

    def __init__(self, tk: Threadkeep, sessions: int) -> None:
        self.tk = tk
        self.owner = tk.create_user("ada").value.id
        self.actor = Actor(self.owner)
        self.sids = [tk.create_session(self.actor).value.id for _ in range(sessions)]
        self.queue = tk.engine._queue  # type: ignore[attr-defined]
        self.sizes: list[int] = []
        self.gate = threading.Event()
        run_batch = self.queue._run_batch

        def counting(batch: list[Request]) -> None:
            self.sizes.append(len(batch))
            run_batch(batch)

        self.queue._run_batch = counting

    def append(
        self,
        sid: str,
        text: str,
        *,
        block: bool = False,
        fail: bool = False,
        only_inserts: bool = True,  # as the service's appends
    ) -> Any:
        def fn(tx: Any) -> Any:
            if block:
                self.gate.wait(10)
            done = message_q.append(tx, self.owner, sid, [NewMessage(role="user", content=text)])
            if fail:  # after writing: its rows must go, the others' must stay
                raise InvalidInput("content", "refused after the write")
            return done

        return self.tk.engine.write(fn, only_inserts=only_inserts)

    def queued(self, n: int) -> None:
        _wait_for(lambda: len(self.queue._queue) == n, f"{n} queued writers")

    def release(self, *started: tuple[threading.Thread, dict[str, Any]]) -> None:
        self.gate.set()
        for t, _ in started:
            t.join(10)


def test_one_bad_writer_in_a_batch_fails_alone(sqlite_tk: Threadkeep) -> None:
    tk = sqlite_tk
    w = _Writers(tk, 6)
    sids = w.sids
    first = _start(lambda: w.append(sids[0], "first", block=True, only_inserts=False))
    _wait_for(lambda: w.sizes == [1], "the first batch")
    batch = [
        _start(lambda i=i: w.append(sids[i], f"m{i}", fail=(i == 3), only_inserts=False))
        for i in range(1, 6)
    ]
    w.queued(5)
    w.release(first, *batch)

    assert w.sizes[:2] == [1, 5]  # the second commit carried five writers
    assert isinstance(batch[2][1].get("error"), InvalidInput)
    ok = [first[1]] + [out for i, (_, out) in enumerate(batch, start=1) if i != 3]
    assert all("value" in out for out in ok)
    txids = [out["value"].txid for out in ok]
    assert len(set(txids)) == len(txids)  # one txid per operation, even in one commit
    for i, sid in enumerate(sids):
        history = tk.get_history(w.actor, sid)
        expected = [] if i == 3 else ["first" if i == 0 else f"m{i}"]
        assert [m.content for m in history] == expected
        assert tk.get_session(w.actor, sid).head_seq == len(expected)
    with tk.engine.sa_engine.connect() as c:
        logged = c.execute(
            sa.select(tables.changes.c.session_id, tables.changes.c.txid).where(
                tables.changes.c.table_name == "messages"
            )
        ).all()
    assert sorted(s for s, _ in logged) == sorted(sids[i] for i in range(6) if i != 3)
    assert {t for _, t in logged} == set(txids)


def test_a_message_written_earlier_in_the_same_commit_can_be_changed(
    sqlite_tk: Threadkeep,
) -> None:
    """New messages are indexed by the store (revision 0007), the appends of
    one commit together; the delete and update triggers expect them in the
    index. So an operation that deletes or rewrites a message appended by an
    earlier operation of the same commit must find it indexed already: were
    the indexing left to the end of the commit, FTS5 would be told to remove
    terms it never held ("database disk image is malformed")."""
    tk = sqlite_tk
    w = _Writers(tk, 3)
    sids = w.sids
    slow_path: list[int] = []
    run_isolated = tk.engine._run_isolated  # type: ignore[attr-defined]

    def isolated(batch: list[Request]) -> None:
        slow_path.append(len(batch))
        run_isolated(batch)

    tk.engine._run_isolated = isolated  # type: ignore[attr-defined]

    def change(stmt: Any) -> Any:
        return tk.engine.write(lambda tx: tx.conn.execute(stmt).rowcount)

    m = tables.messages.c
    first = _start(lambda: w.append(sids[0], "first", block=True))
    _wait_for(lambda: w.sizes == [1], "the first batch")
    writers = [
        _start(lambda: w.append(sids[1], "doomed quince")),
        _start(lambda: w.append(sids[2], "draft quince")),
    ]
    w.queued(2)
    writers += [
        _start(lambda: change(tables.messages.delete().where(m.session_id == sids[1]))),
        _start(
            lambda: change(
                tables.messages.update().where(m.session_id == sids[2]).values(content="final pear")
            )
        ),
    ]
    w.queued(4)
    w.release(first, *writers)

    assert w.sizes[:2] == [1, 4]  # the appends and the changes shared one commit
    # ... as one transaction: nothing failed, so no operation was re-run alone
    # (FTS5 refuses to remove what it does not hold: "database disk image is
    # malformed", which the slow path would have hidden).
    assert slow_path == []
    assert all("value" in out for _, out in [first, *writers])
    assert [out["value"].value for _, out in writers[2:]] == [1, 1]
    assert {h.id for h in tk.search(w.actor, "quince").items} == set()
    assert [h.session_id for h in tk.search(w.actor, "pear").items] == [sids[2]]
    with tk.engine.sa_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO search_messages (search_messages, rank) VALUES ('integrity-check', 1)"
        )
        # Each term as often as the messages hold it: none entered twice, none
        # "removed" without having been entered.
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, search_messages, instance)"
        )
        terms = sorted(r[0] for r in conn.exec_driver_sql("SELECT term FROM temp.v"))
        conn.exec_driver_sql("DROP TABLE temp.v")
    assert terms == ["final", "first", "pear"]


def test_appends_that_share_a_commit_share_one_index_statement(
    sqlite_tk: Threadkeep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends promise to insert only (``only_inserts``), so the messages of
    those queued together are indexed with one statement (one FTS5 segment)
    before the commit; the one that fails is left out; all are found."""
    tk = sqlite_tk
    w = _Writers(tk, 6)
    sids = w.sids
    statements: list[int] = []
    index_messages = sqlite_store.index_messages

    def count_index(cur: Any, ids: list[str]) -> None:
        if ids:
            statements.append(len(ids))
        index_messages(cur, ids)

    monkeypatch.setattr(sqlite_store, "index_messages", count_index)

    first = _start(lambda: w.append(sids[0], "first plum", block=True))
    _wait_for(lambda: w.sizes == [1], "the first batch")
    together = [_start(lambda i=i: w.append(sids[i], f"plum{i} plum")) for i in range(1, 5)]
    w.queued(4)
    w.release(first, *together)
    assert w.sizes[:2] == [1, 4]
    assert statements == [1, 4]  # the second commit: one statement for four appends

    # One of them fails: the batch runs again, each in its own savepoint, and
    # the three that succeed are still indexed together.
    statements.clear()
    w.gate.clear()
    blocker = _start(lambda: w.append(sids[5], "blocker", block=True))
    _wait_for(lambda: w.sizes == [1, 4, 1], "the third batch")
    mixed = [
        _start(lambda i=i: w.append(sids[i], f"damson{i} damson", fail=(i == 2)))
        for i in range(1, 5)
    ]
    w.queued(4)
    w.release(blocker, *mixed)
    assert w.sizes[3] == 4
    assert isinstance(mixed[1][1].get("error"), InvalidInput)
    assert statements == [1, 3]

    assert len({h.id for h in tk.search(w.actor, "plum").items}) == 5
    found = {h.session_id for h in tk.search(w.actor, "damson").items}
    assert found == {sids[1], sids[3], sids[4]}
    with tk.engine.sa_engine.connect() as conn:
        conn.exec_driver_sql(
            "INSERT INTO search_messages (search_messages, rank) VALUES ('integrity-check', 1)"
        )

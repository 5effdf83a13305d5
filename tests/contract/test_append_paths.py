"""The one-statement append (PostgreSQL's hot path) against the general path.

A plain append may be done by the engine in one statement
(store/messages.py ``append_at_once``); everything else takes the general
path. Both must leave the same rows behind: the messages, the session's
counters, and the change-log rows sync reads. These tests append the same
input both ways and compare, and drive the hot path concurrently and across
users. On SQLite there is no hot path, so they check the general path alone.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from contract_helpers import new_session, writes_nothing

from conftest import server_conninfo
from threadkeep import Actor, InvalidState, SessionNotFound
from threadkeep.model.messages import NewMessage
from threadkeep.store import messages as message_q

RICH = [
    {
        "role": "assistant",
        "content": "héllo wörld ✓ \U0001f600",
        "parts": [{"type": "text", "text": "a"}, {"type": "image", "url": "u"}],
        "tool_calls": [{"id": "t1", "name": "grep", "args": {"q": "x", "n": [1, 2.5, None]}}],
        "model": "m-1",
        "input_tokens": 7,
        "output_tokens": 11,
        "client_id": "c-rich",
        "metadata": {"k": "v", "nested": {"list": [True, False, None], "f": 1.25}},
    },
    {"role": "user", "content": "plain", "metadata": {}},
    {"role": "tool", "content": "", "input_tokens": 0, "metadata": {"": ""}},
]

# Values that differ between two appends of the same input by design.
_VOLATILE = {"id", "session_id", "created_at", "last_activity_at", "updated_at"}


def _fast(tk: Any, owner: str, sid: str, raw: list[dict[str, Any]]) -> Any:
    new = [NewMessage.model_validate(m) for m in raw]
    done = message_q.append_at_once(tk.engine, owner, sid, new)
    if tk.engine.supports_append_at_once:
        assert done is not None, "a plain append must take the one-statement path"
        return done
    assert done is None
    return tk.append(Actor(owner), sid, raw)


def _missed(done: Any) -> bool:
    """The hot path wrote nothing: no hot path here, or a miss (which hands
    the general path the ids it tried)."""
    return done is None or isinstance(done, message_q.FastPathMissed)


def _general(tk: Any, owner: str, sid: str, raw: list[dict[str, Any]]) -> Any:
    new = [NewMessage.model_validate(m) for m in raw]
    return tk.engine.write(lambda tx: message_q.append(tx, owner, sid, new))


def _log(tk: Any, actor: Any, sid: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (c.table, c.op.value, {k: v for k, v in c.row.items() if k not in _VOLATILE})
        for c in tk.read_changes(actor, 0, session_id=sid)
    ]


def _stored(tk: Any, actor: Any, sid: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in m.model_dump().items() if k not in _VOLATILE | {"txid"}}
        for m in tk.get_history(actor, sid)
    ]


@pytest.mark.parametrize("batch", [[0], [1], [2], [0, 1, 2]], ids=["rich", "plain", "empty", "3"])
def test_both_paths_write_the_same_rows_and_change_log(tk, actor, batch):
    raw = [RICH[i] for i in batch]
    a, b = new_session(tk, actor), new_session(tk, actor)
    for _ in range(2):  # twice: the second append starts from seq > 0
        fast = _fast(tk, actor.user_id, a.id, [dict(m) for m in raw])
        slow = _general(tk, actor.user_id, b.id, [dict(m) for m in raw])
        assert [m.seq for m in fast.value.messages] == [m.seq for m in slow.value.messages]
        if raw[0].get("client_id"):  # the retry replays on both paths alike
            break
    assert _stored(tk, actor, a.id) == _stored(tk, actor, b.id)
    assert _log(tk, actor, a.id) == _log(tk, actor, b.id)
    sa_, sb = tk.get_session(actor, a.id), tk.get_session(actor, b.id)
    for field in ("head_seq", "event_seq", "input_tokens", "output_tokens", "version"):
        assert getattr(sa_, field) == getattr(sb, field), field


def test_what_the_hot_path_returns_is_what_is_stored_and_logged(tk, actor):
    s = new_session(tk, actor)
    done = _fast(tk, actor.user_id, s.id, [dict(m) for m in RICH])
    assert done.value.messages == tk.get_history(actor, s.id)
    log = [c for c in tk.read_changes(actor, 0, session_id=s.id) if c.txid == done.txid]
    inserted = {c.key: c.row for c in log if c.table == "messages"}
    for m in done.value.messages:
        row = inserted[m.id]
        assert row["seq"] == m.seq and row["content"] == m.content
        assert row["metadata"] == m.metadata and row["created_at"] == m.created_at.isoformat()
    (session_row,) = [c.row for c in log if c.table == "sessions"]
    assert session_row["head_seq"] == 3


def test_the_hot_path_writes_nothing_to_another_users_or_a_trashed_session(tk, actor, other_actor):
    mine = new_session(tk, actor)
    tk.append_message(actor, mine.id, {"role": "user", "content": "x"})
    new = [NewMessage.model_validate({"role": "user", "content": "intruder"})]
    with writes_nothing(tk):
        assert _missed(message_q.append_at_once(tk.engine, other_actor.user_id, mine.id, new))
        with pytest.raises(SessionNotFound):
            tk.append_message(other_actor, mine.id, {"role": "user", "content": "intruder"})
    tk.delete_session(actor, mine.id)
    with writes_nothing(tk):
        assert _missed(message_q.append_at_once(tk.engine, actor.user_id, mine.id, new))
        with pytest.raises(InvalidState):
            tk.append_message(actor, mine.id, {"role": "user", "content": "late"})


def test_concurrent_hot_path_appends_lose_duplicate_and_misnumber_nothing(tk, actor, other_actor):
    users = [actor, other_actor]
    sessions = [(u, new_session(tk, u).id) for u in users for _ in range(3)]
    per_thread = 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(sessions) * 2)

    def go(w: int, user: Any, sid: str) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                tk.append_message(user, sid, {"role": "user", "content": f"{sid}/{w}/{i}"})
        except BaseException as exc:
            errors.append(exc)

    # Two writers per session, all at once.
    threads = [
        threading.Thread(target=go, args=(w, u, sid)) for w in range(2) for u, sid in sessions
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for user, sid in sessions:
        hist = tk.get_history(user, sid)
        n = 2 * per_thread
        assert [m.seq for m in hist] == list(range(1, n + 1))
        assert sorted(m.content for m in hist) == sorted(
            f"{sid}/{w}/{i}" for w in range(2) for i in range(per_thread)
        )
        # Each writer's messages keep the order it wrote them in.
        for w in range(2):
            mine = [m.content for m in hist if m.content.startswith(f"{sid}/{w}/")]
            assert mine == [f"{sid}/{w}/{i}" for i in range(per_thread)]
        log = tk.read_changes(user, 0, session_id=sid, limit=1000)
        inserted = [c.row for c in log if c.table == "messages"]
        assert sorted(r["seq"] for r in inserted) == list(range(1, n + 1))
        assert {r["id"]: r["content"] for r in inserted} == {m.id: m.content for m in hist}
        heads = [c.row["head_seq"] for c in log if c.table == "sessions" and c.op.value == "update"]
        assert heads == list(range(1, n + 1)), "session rows in commit order, one per append"
        assert all(c.owner_id == user.user_id for c in log)
        assert tk.get_session(user, sid).head_seq == n


def test_an_append_after_its_connection_was_dropped_is_written_once(tk, actor, db_url):
    s = new_session(tk, actor)
    tk.append_message(actor, s.id, {"role": "user", "content": "1"})
    if tk.engine.supports_append_at_once:
        # Kill every backend of this database but ours: the appenders' idle
        # connection is now dead, and the next append must still go through.
        with psycopg.connect(server_conninfo(db_url)) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    tk.append_message(actor, s.id, {"role": "user", "content": "2"})
    tk.append_message(actor, s.id, {"role": "user", "content": "3"})
    hist = tk.get_history(actor, s.id)
    assert [(m.seq, m.content) for m in hist] == [(1, "1"), (2, "2"), (3, "3")]


def test_the_hot_path_holds_at_most_max_open_connections(tk, engine_name):
    if engine_name != "postgres":
        pytest.skip("the one-statement path's connections are PostgreSQL's")
    from threadkeep.store.pg_append import AppendConnections

    conns = AppendConnections(tk.engine.url, max_idle=1, max_open=2, timeout=0.05)
    a, b = conns.get(), conns.get()
    assert a is not None and b is not None
    assert conns.get() is None, "a third connection while two are out"
    conns.put(a)
    c = conns.get()
    assert c is a, "the idle one is reused"
    conns.discard(b)
    d = conns.get()
    assert d is not None and d is not b and not d.closed
    conns.put(c)
    conns.put(d)  # more than max_idle: closed, not kept
    assert d.closed and not c.closed
    conns.close()
    assert c.closed


def test_an_append_whose_answer_was_lost_after_commit_is_not_written_twice(tk, actor, monkeypatch):
    """The connection can drop after the server's COMMIT and before the
    answer arrives. The append must then find its own rows, not write the
    messages a second time (they carry no client id to dedupe them by)."""
    s = new_session(tk, actor)
    if tk.engine.supports_append_at_once:
        real = tk.engine.append_at_once

        def commits_then_loses_the_answer(*args: Any, **kwargs: Any) -> None:
            assert real(*args, **kwargs) is not None  # committed...
            return None  # ...but the caller never heard

        monkeypatch.setattr(tk.engine, "append_at_once", commits_then_loses_the_answer)
    one = tk.append_message(actor, s.id, {"role": "user", "content": "once"})
    batch = tk.append_messages(
        actor, s.id, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    )
    hist = tk.get_history(actor, s.id)
    assert [(m.seq, m.content) for m in hist] == [(1, "once"), (2, "a"), (3, "b")]
    assert [m.id for m in hist] == [one.value.id] + [m.id for m in batch.value]
    assert tk.get_session(actor, s.id).head_seq == 3
    log = tk.read_changes(actor, 0, session_id=s.id)
    assert sorted(c.key for c in log if c.table == "messages") == sorted(m.id for m in hist)
    assert one.txid in {c.txid for c in log} and batch.txid in {c.txid for c in log}


def test_a_missed_hot_path_still_refuses_a_foreign_session(tk, actor, other_actor, monkeypatch):
    """The lost-answer recovery only ever returns rows the caller owns."""
    mine = new_session(tk, actor)
    if tk.engine.supports_append_at_once:
        monkeypatch.setattr(tk.engine, "append_at_once", lambda *a, **k: None)
    with writes_nothing(tk), pytest.raises(SessionNotFound):
        tk.append_message(other_actor, mine.id, {"role": "user", "content": "intruder"})


def test_a_commit_that_lost_its_connection_is_reported_not_retried(
    tk, actor, engine_name, monkeypatch
):
    """A connection can drop during COMMIT after the server committed. The
    general path must not run the operation again (an append without a client
    id would be written twice): it reports the write as in doubt.

    The lost answer is simulated (the real COMMIT runs, then the driver's
    disconnect error is raised): a real server cannot be made to drop the
    connection at exactly that moment from here."""
    if engine_name != "postgres":
        pytest.skip("SQLite commits in-process: there is no connection to lose")
    import sqlalchemy.exc as sa_exc
    from sqlalchemy.engine.base import RootTransaction

    from threadkeep import CommitInDoubt

    s = new_session(tk, actor)
    real_commit = RootTransaction.commit
    lost = {"n": 0}

    def commit_then_drop(self: Any) -> None:
        real_commit(self)
        if lost["n"] == 0:
            lost["n"] += 1
            raise sa_exc.OperationalError(
                "COMMIT",
                {},
                psycopg.OperationalError("server closed the connection unexpectedly"),
                connection_invalidated=True,
            )

    monkeypatch.setattr(RootTransaction, "commit", commit_then_drop)
    with pytest.raises(CommitInDoubt, match="may or may not have been applied"):
        # Events force the general path.
        tk.append(
            actor, s.id, [{"role": "user", "content": "once"}], timeline_events=[{"kind": "k"}]
        )
    monkeypatch.undo()
    hist = tk.get_history(actor, s.id)
    assert [m.content for m in hist] == ["once"], "applied once, not retried"
    assert tk.get_session(actor, s.id).head_seq == 1

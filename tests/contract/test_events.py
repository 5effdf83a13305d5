"""Tool events (a tool call's life) and timeline events (the ordered stream)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from contract_helpers import missing_id, new_session, with_messages, writes_nothing

from threadkeep import (
    AlreadyExists,
    InvalidInput,
    MessageNotFound,
    SessionNotFound,
    ToolEventNotFound,
    ToolStatus,
)

# --- tool events ------------------------------------------------------------------


def test_start_update_finish_walks_a_tool_call_through_its_life(tk, actor):
    s = with_messages(tk, actor, 1)
    msg = tk.get_history(actor, s.id)[0]
    started = tk.start_tool_event(
        actor,
        s.id,
        {"name": "grep", "input": {"q": "todo", "n": 3}, "call_id": "call-1", "message_id": msg.id},
    )
    ev = started.value
    assert ev.status == ToolStatus.STARTED
    assert (ev.name, ev.input, ev.call_id, ev.message_id) == (
        "grep",
        {"q": "todo", "n": 3},
        "call-1",
        msg.id,
    )
    assert ev.finished_at is None and ev.duration_ms is None and ev.output is None
    assert ev.session_id == s.id and ev.owner_id == actor.user_id
    assert ev.version == 1
    assert tk.get_tool_event(actor, ev.id) == ev

    running = tk.update_tool_event(actor, ev.id, {"status": "running", "output": {"lines": 1}})
    r = running.value
    assert r.status == ToolStatus.RUNNING
    assert r.output == {"lines": 1}
    assert r.finished_at is None
    assert r.version == 2

    done = tk.finish_tool_event(actor, ev.id, output={"lines": 3, "text": "a\nb\nc"}).value
    assert done.status == ToolStatus.SUCCEEDED
    assert done.output == {"lines": 3, "text": "a\nb\nc"}
    assert done.error is None
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.duration_ms is not None and done.duration_ms >= 0
    expected_ms = int((done.finished_at - done.started_at).total_seconds() * 1000)
    assert abs(done.duration_ms - expected_ms) <= 1
    assert done.version == 3
    assert tk.get_tool_event(actor, ev.id) == done
    assert tk.list_tool_events(actor, s.id) == [done]
    assert tk.list_tool_events(actor, s.id, message_id=msg.id) == [done]


def test_finish_with_an_error_marks_the_call_failed(tk, actor):
    s = new_session(tk, actor)
    ev = tk.start_tool_event(actor, s.id, {"name": "bash", "input": "ls"}).value
    done = tk.finish_tool_event(actor, ev.id, error="exit 2").value
    assert done.status == ToolStatus.FAILED
    assert done.error == "exit 2"
    assert done.finished_at is not None


def test_finish_with_an_explicit_status_and_time(tk, actor):
    s = new_session(tk, actor)
    t0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    ev = tk.start_tool_event(actor, s.id, {"name": "slow", "started_at": t0}).value
    assert ev.started_at == t0
    t1 = t0 + timedelta(seconds=2, milliseconds=500)
    done = tk.finish_tool_event(actor, ev.id, status=ToolStatus.CANCELLED, finished_at=t1).value
    assert done.status == ToolStatus.CANCELLED
    assert done.finished_at == t1
    assert done.duration_ms == 2500
    assert tk.get_tool_event(actor, ev.id).duration_ms == 2500


def test_finishing_without_output_keeps_the_output_an_update_recorded(tk, actor):
    s = new_session(tk, actor)
    ev = tk.start_tool_event(actor, s.id, {"name": "stream"}).value
    tk.update_tool_event(actor, ev.id, {"status": "running", "output": {"partial": "abc"}})
    done = tk.finish_tool_event(actor, ev.id).value
    assert done.status == ToolStatus.SUCCEEDED
    assert done.output == {"partial": "abc"}


def test_a_tool_event_recorded_already_finished_gets_its_duration(tk, actor):
    s = new_session(tk, actor)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ev = tk.record_tool_events(
        actor,
        s.id,
        [
            {
                "name": "cached",
                "status": "succeeded",
                "started_at": t0,
                "finished_at": t0 + timedelta(milliseconds=40),
                "output": [1, 2],
            }
        ],
    ).value[0]
    assert ev.status == ToolStatus.SUCCEEDED
    assert ev.duration_ms == 40


def test_record_tool_events_writes_a_batch_in_one_transaction(tk, actor):
    s = new_session(tk, actor)
    done = tk.record_tool_events(actor, s.id, [{"name": f"t{i}"} for i in range(3)])
    assert [e.name for e in done.value] == ["t0", "t1", "t2"]
    assert {e.id for e in tk.list_tool_events(actor, s.id)} == {e.id for e in done.value}
    changes = [c for c in tk.read_changes(actor, 0) if c.table == "tool_events"]
    assert {c.txid for c in changes} == {done.txid}


def test_messages_tool_and_timeline_events_append_in_one_transaction(tk, actor):
    s = new_session(tk, actor)
    done = tk.append(
        actor,
        s.id,
        [
            {"role": "user", "content": "run it", "id": "m-user"},
            {"role": "assistant", "content": "", "id": "m-call", "tool_calls": [{"id": "c1"}]},
        ],
        tool_events=[{"name": "bash", "call_id": "c1", "message_id": "m-call", "input": "ls"}],
        timeline_events=[
            {"kind": "turn.start", "message_id": "m-user"},
            {"kind": "tool.start", "payload": {"call": "c1"}, "message_id": "m-call"},
        ],
    )
    out = done.value
    assert [m.id for m in out.messages] == ["m-user", "m-call"]
    assert [m.seq for m in out.messages] == [1, 2]
    assert [e.message_id for e in out.tool_events] == ["m-call"]
    assert [(e.seq, e.kind) for e in out.timeline_events] == [(1, "turn.start"), (2, "tool.start")]
    assert tk.list_tool_events(actor, s.id, message_id="m-call") == out.tool_events
    assert tk.list_timeline_events(actor, s.id) == out.timeline_events
    txids = {c.txid for c in tk.read_changes(actor, 0, session_id=s.id)}
    create_txid = tk.read_changes(actor, 0, session_id=s.id)[0].txid
    assert txids == {create_txid, done.txid}
    tables = {c.table for c in tk.read_changes(actor, 0) if c.txid == done.txid}
    assert tables == {"messages", "tool_events", "timeline_events", "sessions"}


def test_a_tool_event_linked_to_another_users_message_raises_and_writes_nothing(
    tk, actor, other_actor
):
    theirs = with_messages(tk, other_actor, 1)
    their_msg = tk.get_history(other_actor, theirs.id)[0]
    mine = with_messages(tk, actor, 1)
    with writes_nothing(tk), pytest.raises(MessageNotFound):
        tk.append(
            actor,
            mine.id,
            [{"role": "user", "content": "x"}],
            tool_events=[{"name": "steal", "message_id": their_msg.id}],
        )
    with writes_nothing(tk), pytest.raises(MessageNotFound):
        tk.start_tool_event(actor, mine.id, {"name": "steal", "message_id": their_msg.id})
    with writes_nothing(tk), pytest.raises(MessageNotFound):
        tk.append_timeline_events(actor, mine.id, [{"kind": "k", "message_id": their_msg.id}])


def test_a_tool_event_linked_to_a_message_of_another_session_raises(tk, actor):
    a = with_messages(tk, actor, 1)
    b = with_messages(tk, actor, 1)
    msg_a = tk.get_history(actor, a.id)[0]
    with writes_nothing(tk), pytest.raises(MessageNotFound):
        tk.start_tool_event(actor, b.id, {"name": "x", "message_id": msg_a.id})


def test_a_tool_event_linked_to_a_missing_message_raises(tk, actor):
    s = new_session(tk, actor)
    with writes_nothing(tk), pytest.raises(MessageNotFound):
        tk.start_tool_event(actor, s.id, {"name": "x", "message_id": missing_id()})


def test_update_of_a_missing_tool_event_raises_tool_event_not_found(tk, actor):
    key = missing_id()
    with writes_nothing(tk), pytest.raises(ToolEventNotFound) as info:
        tk.update_tool_event(actor, key, {"status": "running"})
    assert info.value.key == key
    with pytest.raises(ToolEventNotFound):
        tk.get_tool_event(actor, key)
    with writes_nothing(tk), pytest.raises(ToolEventNotFound):
        tk.finish_tool_event(actor, key)


def test_tool_event_in_a_missing_session_raises_session_not_found(tk, actor):
    with writes_nothing(tk), pytest.raises(SessionNotFound):
        tk.start_tool_event(actor, missing_id(), {"name": "x"})


def test_list_tool_events_filters_by_message(tk, actor):
    s = with_messages(tk, actor, 2)
    m1, m2 = tk.get_history(actor, s.id)
    e1 = tk.start_tool_event(actor, s.id, {"name": "a", "message_id": m1.id}).value
    e2 = tk.start_tool_event(actor, s.id, {"name": "b", "message_id": m2.id}).value
    e3 = tk.start_tool_event(actor, s.id, {"name": "c"}).value
    assert [e.id for e in tk.list_tool_events(actor, s.id)] == [e1.id, e2.id, e3.id]
    assert [e.id for e in tk.list_tool_events(actor, s.id, message_id=m2.id)] == [e2.id]


def test_update_tool_event_with_unknown_field_raises_invalid_input(tk, actor):
    s = new_session(tk, actor)
    ev = tk.start_tool_event(actor, s.id, {"name": "x"}).value
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.update_tool_event(actor, ev.id, {"status": "exploded"})
    with writes_nothing(tk), pytest.raises(InvalidInput):
        tk.update_tool_event(actor, ev.id, {"name": "renamed"})


# --- timeline events --------------------------------------------------------------


PAYLOADS = [
    None,
    "text",
    17,
    2.5,
    True,
    [1, "two", None, [3]],
    {"nested": {"list": [1, 2, {"deep": "é 👋"}], "flag": False, "n": None}},
    {"": "empty key", "big": 2**60, "neg": -1, "unicode": "日本語"},
]


def test_timeline_events_get_an_ordered_seq_per_session(tk, actor):
    a = new_session(tk, actor)
    b = new_session(tk, actor)
    first = tk.append_timeline_events(actor, a.id, [{"kind": "k1"}, {"kind": "k2"}]).value
    tk.append_timeline_events(actor, b.id, [{"kind": "other"}])
    tk.append_message(actor, a.id, {"role": "user", "content": "no events here"})
    second = tk.append_timeline_events(actor, a.id, [{"kind": "k3"}]).value
    assert [e.seq for e in first] == [1, 2]
    assert [e.seq for e in second] == [3]
    listed = tk.list_timeline_events(actor, a.id)
    assert [(e.seq, e.kind) for e in listed] == [(1, "k1"), (2, "k2"), (3, "k3")]
    assert [e.seq for e in tk.list_timeline_events(actor, b.id)] == [1]
    assert [e.seq for e in tk.list_timeline_events(actor, a.id, after_seq=1)] == [2, 3]
    assert [e.seq for e in tk.list_timeline_events(actor, a.id, limit=2)] == [1, 2]
    assert tk.get_session(actor, a.id).event_seq == 3


def test_timeline_payload_json_round_trips(tk, actor):
    s = new_session(tk, actor)
    written = tk.append_timeline_events(
        actor, s.id, [{"kind": f"k{i}", "payload": p} for i, p in enumerate(PAYLOADS)]
    ).value
    listed = tk.list_timeline_events(actor, s.id)
    assert [e.payload for e in listed] == PAYLOADS
    assert listed == written


def test_tool_input_and_output_json_round_trip(tk, actor):
    s = new_session(tk, actor)
    ids = [
        tk.start_tool_event(actor, s.id, {"name": f"t{i}", "input": p}).value.id
        for i, p in enumerate(PAYLOADS)
    ]
    for i, p in zip(ids, PAYLOADS, strict=True):
        tk.finish_tool_event(actor, i, output=p, status=ToolStatus.SUCCEEDED)
    for i, p in zip(ids, PAYLOADS, strict=True):
        got = tk.get_tool_event(actor, i)
        assert got.input == p
        if p is not None:
            assert got.output == p


def test_concurrent_timeline_appends_get_unique_contiguous_seqs(tk, actor):
    import threading

    s = new_session(tk, actor)

    def go(w: int) -> None:
        for i in range(3):
            tk.append_timeline_events(actor, s.id, [{"kind": f"{w}.{i}"}, {"kind": "x"}])

    threads = [threading.Thread(target=go, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in tk.list_timeline_events(actor, s.id)] == list(range(1, 37))


def test_a_chosen_event_id_that_is_taken_raises_already_exists_and_writes_nothing(
    tk, actor, other_actor
):
    """Ids are one namespace for all users: an id another user's event holds
    is not available. The caller is told so as for every other kind
    (AlreadyExists, 409), not with the engine's constraint text."""
    theirs = new_session(tk, other_actor)
    tool = tk.start_tool_event(other_actor, theirs.id, {"id": "tool-1", "name": "x"}).value
    tk.append(other_actor, theirs.id, [], timeline_events=[{"id": "tl-1", "kind": "k"}])
    mine = new_session(tk, actor)
    with writes_nothing(tk):
        with pytest.raises(AlreadyExists, match="tool-1"):
            tk.start_tool_event(actor, mine.id, {"id": "tool-1", "name": "y"})
        with pytest.raises(AlreadyExists, match="tool-1"):
            tk.record_tool_events(actor, mine.id, [{"name": "a"}, {"id": "tool-1", "name": "b"}])
        with pytest.raises(AlreadyExists, match="tl-1"):
            tk.append(
                actor,
                mine.id,
                [{"role": "user", "content": "kept only if all is"}],
                timeline_events=[{"id": "tl-1", "kind": "k"}],
            )
        with pytest.raises(InvalidInput, match="twice"):
            tk.record_tool_events(
                actor, mine.id, [{"id": "t2", "name": "a"}, {"id": "t2", "name": "b"}]
            )
    assert tk.get_tool_event(other_actor, tool.id).name == "x"


def test_event_reads_give_what_the_general_row_path_gives(tk, actor, other_actor):
    """The event reads run compiled statements and decode rows themselves
    (store/events.py); each event must equal the Core select's row through
    ``model_construct``: every field, its type, the status enum, aware
    datetimes, JSON of every shape. Filters and foreign ids still hold."""
    import sqlalchemy as sa

    from threadkeep import TimelineEvent, ToolEvent
    from threadkeep.store import tables
    from threadkeep.store.events import to_timeline_event, to_tool_event

    s = new_session(tk, actor)
    msg = tk.append_message(actor, s.id, {"role": "user", "content": "q"}).value
    tk.record_tool_events(
        actor,
        s.id,
        [
            {"name": "grep", "input": {"q": [1, None, "ü"]}, "message_id": msg.id},
            {"name": "ls", "input": None, "output": PAYLOADS[0], "status": "succeeded"},
            {"name": "rm", "error": "denied", "status": "failed", "call_id": "c9"},
        ],
    )
    tk.append_timeline_events(
        actor, s.id, [{"kind": f"k{i}", "payload": p} for i, p in enumerate(PAYLOADS)]
    )

    def core(table: sa.Table, convert, order) -> list:
        q = sa.select(table).where(table.c.session_id == s.id).order_by(*order)
        return tk.engine.read(lambda c: [convert(r) for r in c.execute(q)])

    t, e = tables.tool_events, tables.timeline_events
    tools = core(t, to_tool_event, (t.c.created_at, t.c.id))
    timeline = core(e, to_timeline_event, (e.c.seq,))

    def same(got: list, want: list, model: type) -> None:
        assert got == want and len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert g.model_dump() == w.model_dump()
            for name in model.model_fields:
                assert type(getattr(g, name)) is type(getattr(w, name)), name
            assert g.created_at.tzinfo is UTC

    same(tk.list_tool_events(actor, s.id), tools, ToolEvent)
    same([tk.get_tool_event(actor, x.id) for x in tools], tools, ToolEvent)
    same(tk.list_tool_events(actor, s.id, message_id=msg.id), tools[:1], ToolEvent)
    assert type(tools[0].status) is ToolStatus
    same(tk.list_timeline_events(actor, s.id), timeline, TimelineEvent)
    same(tk.list_timeline_events(actor, s.id, after_seq=2, limit=2), timeline[2:4], TimelineEvent)
    same(tk.list_timeline_events(actor, s.id, limit=1), timeline[:1], TimelineEvent)
    with pytest.raises(ToolEventNotFound):
        tk.get_tool_event(other_actor, tools[0].id)
    with pytest.raises(SessionNotFound):
        tk.list_tool_events(other_actor, s.id)
    with pytest.raises(SessionNotFound):
        tk.list_timeline_events(other_actor, s.id)

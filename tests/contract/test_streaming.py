"""Streamed messages: start (status streaming, seq allocated), extend, finish."""

from __future__ import annotations

import pytest
from contract_helpers import missing_id, new_session, writes_nothing

from threadkeep import (
    InvalidInput,
    InvalidState,
    InvalidText,
    MessageNotFound,
    MessageStatus,
    SessionNotFound,
    Threadkeep,
    TooLarge,
)
from threadkeep.config import Limits


def _start(tk, actor, **fields):
    s = new_session(tk, actor)
    m = tk.start_message(actor, s.id, {"role": "assistant", **fields}).value
    return s, m


def test_start_extend_finish_complete(tk, actor):
    s, m = _start(tk, actor, model="gpt-x", content="He")
    assert m.status is MessageStatus.STREAMING and m.seq == 1 and m.content == "He"
    assert tk.extend_message(actor, m.id, "llo").value.content == "Hello"
    assert tk.extend_message(actor, m.id, ", wörld 👋").value.content == "Hello, wörld 👋"
    seen = tk.get_message(actor, m.id)
    assert seen.status is MessageStatus.STREAMING and seen.content == "Hello, wörld 👋"

    done = tk.finish_message(actor, m.id, input_tokens=3, output_tokens=7, metadata={"k": 1})
    assert isinstance(done.txid, int)
    final = tk.get_message(actor, m.id)
    assert final == done.value
    assert final.status is MessageStatus.COMPLETE
    assert final.content == "Hello, wörld 👋"
    assert (final.input_tokens, final.output_tokens, final.metadata) == (3, 7, {"k": 1})
    assert final.model == "gpt-x"
    session = tk.get_session(actor, s.id)
    assert (session.input_tokens, session.output_tokens) == (3, 7)


def test_finish_with_content_replaces_the_streamed_text(tk, actor):
    _s, m = _start(tk, actor)
    tk.extend_message(actor, m.id, "draft tokens")
    done = tk.finish_message(actor, m.id, content="the exact reply")
    assert done.value.content == "the exact reply"
    assert tk.get_message(actor, m.id).content == "the exact reply"


def test_finish_incomplete_keeps_the_text_received(tk, actor):
    _s, m = _start(tk, actor)
    tk.extend_message(actor, m.id, "partial")
    done = tk.finish_message(actor, m.id, status="incomplete")
    assert done.value.status is MessageStatus.INCOMPLETE
    got = tk.get_message(actor, m.id)
    assert got.status is MessageStatus.INCOMPLETE and got.content == "partial"


def test_a_finished_message_cannot_be_extended_or_finished_again(tk, actor):
    _s, m = _start(tk, actor)
    tk.finish_message(actor, m.id)
    with writes_nothing(tk):
        with pytest.raises(InvalidState):
            tk.finish_message(actor, m.id)
        with pytest.raises(InvalidState):
            tk.finish_message(actor, m.id, status=MessageStatus.INCOMPLETE)
        with pytest.raises(InvalidState):
            tk.extend_message(actor, m.id, "more")


def test_a_plain_message_is_not_streaming(tk, actor):
    s = new_session(tk, actor)
    m = tk.append_message(actor, s.id, {"role": "assistant", "content": "x"}).value
    assert m.status is MessageStatus.COMPLETE
    with writes_nothing(tk), pytest.raises(InvalidState):
        tk.extend_message(actor, m.id, "y")


def test_another_users_message_is_not_found_and_nothing_is_written(tk, actor, other_actor):
    s, m = _start(tk, actor)
    with writes_nothing(tk):
        with pytest.raises(SessionNotFound):
            tk.start_message(other_actor, s.id, {"role": "assistant"})
        with pytest.raises(MessageNotFound):
            tk.extend_message(other_actor, m.id, "x")
        with pytest.raises(MessageNotFound):
            tk.finish_message(other_actor, m.id)
        with pytest.raises(MessageNotFound):
            tk.finish_message(actor, missing_id())
    assert tk.get_message(actor, m.id).status is MessageStatus.STREAMING


def test_bad_input_writes_nothing(tk, actor):
    s, m = _start(tk, actor)
    tk.extend_message(actor, m.id, "ok")
    with writes_nothing(tk):
        with pytest.raises(InvalidText):
            tk.extend_message(actor, m.id, "a\x00b")
        with pytest.raises(InvalidText):
            tk.extend_message(actor, m.id, "a\ud800b")
        with pytest.raises(InvalidInput):
            tk.extend_message(actor, m.id, "")
        with pytest.raises(InvalidInput):
            tk.extend_message(actor, m.id, 3)  # type: ignore[arg-type]
        with pytest.raises(InvalidText):
            tk.finish_message(actor, m.id, content="\x00")
        with pytest.raises(InvalidInput):
            tk.finish_message(actor, m.id, status="streaming")
        with pytest.raises(InvalidInput):
            tk.finish_message(actor, m.id, status="nope")
        with pytest.raises(InvalidInput):
            tk.finish_message(actor, m.id, input_tokens=-1)
        with pytest.raises(InvalidText):
            tk.start_message(actor, s.id, {"role": "assistant", "content": "\x00"})
        with pytest.raises(InvalidInput):
            tk.start_message(actor, s.id, {"role": "robot"})
    assert tk.get_message(actor, m.id).content == "ok"


def test_the_size_limit_holds_for_the_accumulated_and_the_final_content(db_url, actor):
    small = Threadkeep.open(db_url)
    small.limits = Limits(max_message_bytes=10)
    try:
        s = new_session(small, actor)
        m = small.start_message(actor, s.id, {"role": "assistant"}).value
        small.extend_message(actor, m.id, "12345")
        small.extend_message(actor, m.id, "é" * 2)  # 9 bytes so far
        with writes_nothing(small):
            with pytest.raises(TooLarge):
                small.extend_message(actor, m.id, "é")
            with pytest.raises(TooLarge):
                small.finish_message(actor, m.id, content="x" * 11)
            with pytest.raises(TooLarge):
                small.finish_message(actor, m.id, metadata={"a": 1})
        assert small.get_message(actor, m.id).content == "12345éé"
        small.finish_message(actor, m.id, content="x" * 10)
    finally:
        small.close()


def test_seq_is_allocated_at_start_so_later_appends_come_after(tk, actor):
    s = new_session(tk, actor)
    tk.append_message(actor, s.id, {"role": "user", "content": "question"})
    m = tk.start_message(actor, s.id, {"role": "assistant"}).value
    assert m.seq == 2
    later = tk.append_message(actor, s.id, {"role": "user", "content": "interrupt"}).value
    assert later.seq == 3
    tk.extend_message(actor, m.id, "answer")
    tk.finish_message(actor, m.id)
    history = tk.get_history(actor, s.id)
    assert [(x.seq, x.content, x.status) for x in history] == [
        (1, "question", MessageStatus.COMPLETE),
        (2, "answer", MessageStatus.COMPLETE),
        (3, "interrupt", MessageStatus.COMPLETE),
    ]


def test_the_change_log_carries_each_step_with_its_status(tk, actor):
    s = new_session(tk, actor)
    after = tk.last_offset()
    started = tk.start_message(actor, s.id, {"role": "assistant"})
    extended = tk.extend_message(actor, started.value.id, "tok")
    finished = tk.finish_message(actor, started.value.id, content="final", output_tokens=2)
    changes = [c for c in tk.read_changes(actor, after) if c.table == "messages"]
    steps = [(c.op.value, c.txid, c.row["status"], c.row["content"]) for c in changes]
    assert steps == [
        ("insert", started.txid, "streaming", ""),
        ("update", extended.txid, "streaming", "tok"),
        ("update", finished.txid, "complete", "final"),
    ]
    assert all(c.key == started.value.id and c.row["seq"] == 1 for c in changes)
    assert changes[-1].row["output_tokens"] == 2
    session_rows = [
        c
        for c in tk.read_changes(actor, after)
        if c.table == "sessions" and c.txid == finished.txid
    ]
    assert session_rows and session_rows[0].row["output_tokens"] == 2


def test_a_replayed_client_id_returns_the_stored_message(tk, actor):
    s = new_session(tk, actor)
    m = tk.start_message(actor, s.id, {"role": "assistant", "client_id": "c1"}).value
    again = tk.start_message(actor, s.id, {"role": "assistant", "client_id": "c1"}).value
    assert again.id == m.id and again.status is MessageStatus.STREAMING
    tk.finish_message(actor, m.id)
    assert (
        tk.start_message(actor, s.id, {"role": "assistant", "client_id": "c1"}).value.status
        is MessageStatus.COMPLETE
    )
    assert tk.count_messages(actor, s.id) == 1

"""The hot read paths (last_messages, get_history, get_messages) decode rows on
compiled statements with their own decoder (store/prepared.py). Every message
they return must equal, field for field and type for type, the one read back
through SQLAlchemy's ordinary execution (get_message), and they must return
exactly the rows of the history asked for: branches, before_seq, rewound,
trashed, empty and foreign sessions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from contract_helpers import contents, new_session, seqs, user_msgs, with_messages

from threadkeep import Message, MessageStatus, Role, SessionNotFound
from threadkeep.store import tables
from threadkeep.store.messages import to_message

FULL = {
    "role": "assistant",
    "content": "héllo 👋\nline two",
    "parts": [{"type": "text", "text": "héllo"}, {"n": 2**53 + 1, "f": 0.1}],
    "tool_calls": [{"id": "c1", "name": "grep", "args": {"q": "x", "deep": [1, None]}}],
    "model": "gpt-x",
    "input_tokens": 3,
    "output_tokens": 2**40,
    "client_id": "c-full",
    "metadata": {"k": {"nested": [1, 2.5, None, False, "ü"]}, "": ""},
}


def _same(fast: list[Message], slow: list[Message]) -> None:
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow, strict=True):
        assert f == s
        assert f.model_dump() == s.model_dump()
        assert f.model_fields_set == s.model_fields_set
        for name in Message.model_fields:
            assert type(getattr(f, name)) is type(getattr(s, name)), name
        assert f.created_at.tzinfo is UTC
        assert type(f.role) is Role and type(f.status) is MessageStatus


def _reference(tk: Any, actor: Any, messages: list[Message]) -> list[Message]:
    """The same messages, each read by id through SQLAlchemy's own execution
    and result rows (every read API, ``get_message`` included, now runs
    compiled statements and generated decoders)."""
    t = tables.messages

    def read(conn: sa.Connection, message_id: str) -> Message:
        row = conn.execute(
            sa.select(t).where(t.c.id == message_id, t.c.owner_id == actor.user_id)
        ).one()
        return to_message(row)

    return [tk.engine.read(lambda c, m=m: read(c, m.id)) for m in messages]


def test_every_field_reads_back_as_the_ordinary_path_reads_it(tk, actor):
    s = new_session(tk, actor)
    tk.append_messages(actor, s.id, [{"role": "user", "content": "q"}, FULL])
    tk.start_message(actor, s.id, {"role": "assistant", "content": "partial"})
    for got in (
        tk.last_messages(actor, s.id, 3),
        tk.get_history(actor, s.id),
        tk.get_messages(actor, s.id, after_seq=1),
        [tk.get_message(actor, m.id) for m in tk.get_history(actor, s.id)],
    ):
        _same(got, _reference(tk, actor, got))
    last = tk.last_messages(actor, s.id, 3)
    assert [m.status for m in last] == [MessageStatus.COMPLETE] * 2 + [MessageStatus.STREAMING]
    assert last[1].parts == FULL["parts"] and last[1].metadata == FULL["metadata"]
    assert last[1].output_tokens == 2**40 and last[1].client_id == "c-full"
    assert last[0].parts is None and last[0].tool_calls is None and last[0].model is None


def test_last_messages_of_a_branch_reads_through_the_fork(tk, actor):
    s = with_messages(tk, actor, 6, prefix="a")
    b = tk.fork_session(actor, s.id, at_seq=4).value
    tk.append_messages(actor, b.id, user_msgs(3, "b", start=5))
    assert contents(tk.last_messages(actor, b.id, 5)) == ["a3", "a4", "b5", "b6", "b7"]
    assert contents(tk.last_messages(actor, b.id, 3, before_seq=6)) == ["a3", "a4", "b5"]
    assert contents(tk.last_messages(actor, b.id, 9)) == [f"a{i}" for i in (1, 2, 3, 4)] + [
        "b5",
        "b6",
        "b7",
    ]
    # A branch with nothing of its own yet: only the inherited part.
    c = tk.fork_session(actor, s.id, at_seq=2).value
    assert contents(tk.last_messages(actor, c.id, 5)) == ["a1", "a2"]
    # The parent is unchanged by its branches.
    assert contents(tk.last_messages(actor, s.id, 2)) == ["a5", "a6"]
    got = tk.last_messages(actor, b.id, 5)
    _same(got, _reference(tk, actor, got))


def test_last_messages_before_seq_on_a_root_session(tk, actor):
    s = with_messages(tk, actor, 10)
    assert seqs(tk.last_messages(actor, s.id, 3, before_seq=5)) == [2, 3, 4]
    assert seqs(tk.last_messages(actor, s.id, 3, before_seq=2)) == [1]
    assert tk.last_messages(actor, s.id, 3, before_seq=1) == []
    assert seqs(tk.last_messages(actor, s.id, 3, before_seq=99)) == [8, 9, 10]


def test_last_messages_after_a_rewind_stops_at_the_new_head(tk, actor):
    s = with_messages(tk, actor, 8)
    tk.rewind_session(actor, s.id, to_seq=5)
    assert seqs(tk.last_messages(actor, s.id, 3)) == [3, 4, 5]
    assert seqs(tk.get_history(actor, s.id)) == [1, 2, 3, 4, 5]
    tk.append_messages(actor, s.id, user_msgs(1, "new"))
    assert contents(tk.last_messages(actor, s.id, 2)) == ["m5", "new1"]


def test_empty_trashed_and_foreign_sessions(tk, actor, other_actor):
    empty = new_session(tk, actor)
    assert tk.last_messages(actor, empty.id, 5) == []
    assert tk.get_history(actor, empty.id) == []
    gone = with_messages(tk, actor, 3)
    tk.delete_session(actor, gone.id)
    # Reads of a trashed session still work (as get_history always did).
    assert seqs(tk.last_messages(actor, gone.id, 2)) == [2, 3]
    assert seqs(tk.get_history(actor, gone.id)) == [1, 2, 3]
    mine = with_messages(tk, actor, 3)
    for sid in (mine.id, gone.id, empty.id, "no-such-session"):
        with pytest.raises(SessionNotFound):
            tk.last_messages(other_actor, sid, 2)
        with pytest.raises(SessionNotFound):
            tk.get_history(other_actor, sid)
    with pytest.raises(SessionNotFound):
        tk.last_messages(actor, "no-such-session", 2)


def test_sessions_do_not_leak_into_each_other(tk, actor, other_actor):
    a = with_messages(tk, actor, 4, prefix="a")
    b = with_messages(tk, actor, 2, prefix="b")
    theirs = with_messages(tk, other_actor, 5, prefix="t")
    assert contents(tk.last_messages(actor, a.id, 10)) == ["a1", "a2", "a3", "a4"]
    assert contents(tk.last_messages(actor, b.id, 10)) == ["b1", "b2"]
    assert contents(tk.last_messages(other_actor, theirs.id, 2)) == ["t4", "t5"]
    assert {m.owner_id for m in tk.get_history(other_actor, theirs.id)} == {other_actor.user_id}


# --- the conversions themselves (no database) ---------------------------------------


def test_sqlite_datetime_parsing_matches_the_plain_parse():
    from threadkeep.store.types import _sqlite_parse

    for text in ("2026-11-21 06:00:00.000001", "2026-11-21 06:00:00", "2026-11-21T06:00:00+00:00"):
        want = datetime.fromisoformat(text).replace(tzinfo=UTC)
        got = _sqlite_parse(text)
        assert got == want and got.tzinfo is UTC, text
    assert _sqlite_parse(None) is None


def test_json_and_enum_processors():
    from threadkeep.store.types import enum_result, json_result

    assert json_result('{"a": [1, 2.5, null, "ü"]}') == {"a": [1, 2.5, None, "ü"]}
    assert json_result(None) is None and json_result(7) == 7
    role = enum_result(Role)
    assert role("tool") is Role.TOOL and role(Role.USER) is Role.USER
    with pytest.raises(ValueError):
        role("nobody")


def test_a_generated_decoder_applies_processors_and_checks_the_row_length():
    from threadkeep.store.prepared import _compile

    decode = _compile(["a", "it's", "c"], [None, str.upper, None], [None, None, None])
    assert decode((1, "x", None)) == {"a": 1, "it's": "X", "c": None}
    assert decode((1, None, 3)) == {"a": 1, "it's": None, "c": 3}
    with pytest.raises(ValueError):
        decode((1, 2))


def test_a_decoders_then_function_runs_after_the_processor_and_never_on_null():
    from threadkeep.store.prepared import _compile

    decode = _compile(["a", "b", "c"], [str.upper, None, None], [repr, str, None])
    assert decode(("x", 7, 8)) == {"a": "'X'", "b": "7", "c": 8}
    assert decode((None, None, None)) == {"a": None, "b": None, "c": None}


def test_decoders_with_then_functions_are_kept_by_function_and_bounded():
    """The same functions get the same decoder; a caller making new functions
    per call costs a compile each time, never unbounded memory."""
    from threadkeep.store import prepared

    dialect = sa.create_engine("sqlite://").dialect
    upper = {"title": str.upper}
    first = prepared.then_decoder(dialect, tables.sessions, upper)
    assert prepared.then_decoder(dialect, tables.sessions, dict(upper)) is first
    for i in range(prepared._THEN_DECODERS_KEPT * 2):
        prepared.then_decoder(dialect, tables.sessions, {"title": lambda v, i=i: f"{v}{i}"})
    kept = getattr(dialect, prepared._THEN_DECODERS)
    assert len(kept) == prepared._THEN_DECODERS_KEPT
    assert prepared.then_decoder(dialect, tables.sessions, upper) is not first  # dropped

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, value: str) -> str:
            return value.upper()

    decode = prepared.then_decoder(dialect, tables.sessions, {"title": Unhashable()})
    assert len(kept) == prepared._THEN_DECODERS_KEPT
    row = dict.fromkeys(decode.names)
    row["title"] = "trip"
    assert decode(tuple(row.values()))["title"] == "TRIP"

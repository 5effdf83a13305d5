"""Bad input gets a typed threadkeep error and changes nothing.

Every case runs against a database that already holds a session with messages,
a tool event and a timeline event, so "nothing written" is checked against
real rows (contents, not only counts: contract_helpers.writes_nothing). The
cases share one database per engine (they are many, and each must write
nothing anyway); the tests that do write make their own session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from contract_helpers import user_msgs, writes_nothing

from conftest import shared_store_fixture
from threadkeep import (
    Actor,
    InvalidInput,
    InvalidText,
    NotFound,
    SessionNotFound,
    StoreError,
    Threadkeep,
    ThreadkeepError,
    TooLarge,
    VersionConflict,
)
from threadkeep.config import Limits


@dataclass
class Ctx:
    tk: Threadkeep
    small: Threadkeep  # same database, small limits
    actor: Actor
    other: Actor
    sid: str  # the actor's session, 2 messages
    foreign_sid: str  # other's session
    event_id: str  # a tool event in sid
    message_id: str


store = shared_store_fixture()


@pytest.fixture(scope="module")
def ctx(store) -> Ctx:
    """One context per engine, shared by every case: each case must write
    nothing, and each checks that it did not, so sharing is sound."""
    tk = store
    actor = Actor(tk.create_user("ada").value.id)
    other_actor = Actor(tk.create_user("mallory").value.id)
    s = tk.create_session(actor, title="target", tags=["t"], metadata={"k": "v"}).value
    msgs = tk.append_messages(actor, s.id, user_msgs(2)).value
    ev = tk.start_tool_event(actor, s.id, {"name": "x", "message_id": msgs[0].id}).value
    tk.append_timeline_events(actor, s.id, [{"kind": "k", "payload": {"a": 1}}])
    foreign = tk.create_session(other_actor, title="theirs").value
    tk.append_messages(other_actor, foreign.id, user_msgs(1))
    small = Threadkeep(tk.engine, Limits(max_message_bytes=1000, max_json_bytes=1000, max_batch=5))
    return Ctx(tk, small, actor, other_actor, s.id, foreign.id, ev.id, msgs[0].id)


def _msg(**fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": "ok", **fields}


def _nested(depth: int) -> Any:
    v: Any = "leaf"
    for _ in range(depth):
        v = [v]
    return v


Case = tuple[str, Callable[[Ctx], Any], type[ThreadkeepError]]

CASES: list[Case] = [
    # --- text that no engine stores faithfully ---
    (
        "nul_in_content",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(content="a\x00b")),
        InvalidText,
    ),
    (
        "surrogate_in_content",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(content="a\ud800b")),
        InvalidText,
    ),
    (
        "nul_in_metadata_key",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"k\x00": 1})),
        InvalidText,
    ),
    (
        "nul_in_metadata_value",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"k": ["x\x00"]})),
        InvalidText,
    ),
    (
        "surrogate_in_metadata_key",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"\udfff": 1})),
        InvalidText,
    ),
    (
        "surrogate_in_metadata_value",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"k": {"j": "\ud800"}})),
        InvalidText,
    ),
    (
        "nul_in_parts",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(parts=[{"text": "\x00"}])),
        InvalidText,
    ),
    (
        "nul_in_tool_calls",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(tool_calls=[{"\x00": 1}])),
        InvalidText,
    ),
    (
        "nul_in_client_id",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(client_id="c\x00")),
        InvalidText,
    ),
    (
        "nul_in_model",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(model="\x00")),
        InvalidText,
    ),
    ("nul_in_title_on_create", lambda c: c.tk.create_session(c.actor, title="t\x00"), InvalidText),
    (
        "surrogate_in_title_on_create",
        lambda c: c.tk.create_session(c.actor, title="\ud83d"),
        InvalidText,
    ),
    (
        "nul_in_title_on_update",
        lambda c: c.tk.update_session(c.actor, c.sid, title="\x00"),
        InvalidText,
    ),
    ("nul_in_tag", lambda c: c.tk.create_session(c.actor, tags=["a\x00"]), InvalidText),
    (
        "nul_in_session_metadata_key",
        lambda c: c.tk.create_session(c.actor, metadata={"\x00": 1}),
        InvalidText,
    ),
    (
        "surrogate_in_session_metadata_on_update",
        lambda c: c.tk.update_session(c.actor, c.sid, metadata={"k": "\ud800"}),
        InvalidText,
    ),
    (
        "nul_in_fork_title",
        lambda c: c.tk.fork_session(c.actor, c.sid, at_seq=1, title="\x00"),
        InvalidText,
    ),
    (
        "nul_in_tool_input",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, {"name": "x", "input": {"q": "\x00"}}),
        InvalidText,
    ),
    (
        "surrogate_in_tool_input",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, {"name": "x", "input": ["\ud800"]}),
        InvalidText,
    ),
    (
        "nul_in_tool_name",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, {"name": "x\x00"}),
        InvalidText,
    ),
    (
        "nul_in_tool_output_update",
        lambda c: c.tk.update_tool_event(c.actor, c.event_id, {"output": "\x00"}),
        InvalidText,
    ),
    (
        "surrogate_in_tool_error",
        lambda c: c.tk.finish_tool_event(c.actor, c.event_id, error="\ud800"),
        InvalidText,
    ),
    (
        "nul_in_timeline_kind",
        lambda c: c.tk.append_timeline_events(c.actor, c.sid, [{"kind": "\x00"}]),
        InvalidText,
    ),
    (
        "nul_in_timeline_payload",
        lambda c: c.tk.append_timeline_events(c.actor, c.sid, [{"kind": "k", "payload": "\x00"}]),
        InvalidText,
    ),
    # --- values JSON cannot hold ---
    (
        "nan_in_message_metadata",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"x": float("nan")})),
        InvalidInput,
    ),
    (
        "nan_in_session_metadata",
        lambda c: c.tk.update_session(c.actor, c.sid, metadata={"x": [float("nan")]}),
        InvalidInput,
    ),
    (
        "infinity_in_message_metadata",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"x": float("inf")})),
        InvalidInput,
    ),
    (
        "infinity_in_session_metadata",
        lambda c: c.tk.create_session(c.actor, metadata={"x": float("-inf")}),
        InvalidInput,
    ),
    (
        "nan_in_tool_input",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, {"name": "x", "input": float("nan")}),
        InvalidInput,
    ),
    (
        "set_in_metadata",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"x": {1, 2}})),
        InvalidInput,
    ),
    (
        "bytes_in_payload",
        lambda c: c.tk.append_timeline_events(c.actor, c.sid, [{"kind": "k", "payload": b"x"}]),
        InvalidInput,
    ),
    (
        "non_string_metadata_key",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={1: "x"})),
        InvalidInput,
    ),
    (
        "json_nested_too_deep",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(metadata={"x": _nested(100)})),
        InvalidInput,
    ),
    # --- over a size limit ---
    (
        "content_over_the_limit",
        lambda c: c.small.append_message(c.actor, c.sid, _msg(content="x" * 1001)),
        TooLarge,
    ),
    (
        "multibyte_content_over_the_limit",
        lambda c: c.small.append_message(c.actor, c.sid, _msg(content="é" * 501)),
        TooLarge,
    ),
    (
        "content_plus_metadata_over_the_limit",
        lambda c: c.small.append_message(
            c.actor, c.sid, _msg(content="x" * 600, metadata={"m": "y" * 600})
        ),
        TooLarge,
    ),
    (
        "one_oversize_message_in_a_batch",
        lambda c: c.small.append_messages(
            c.actor, c.sid, [_msg(), _msg(content="x" * 2000), _msg()]
        ),
        TooLarge,
    ),
    (
        "session_metadata_over_the_limit",
        lambda c: c.small.create_session(c.actor, metadata={"x": "y" * 2000}),
        TooLarge,
    ),
    (
        "session_metadata_update_over_the_limit",
        lambda c: c.small.update_session(c.actor, c.sid, metadata={"x": "y" * 2000}),
        TooLarge,
    ),
    (
        "tool_input_over_the_limit",
        lambda c: c.small.start_tool_event(c.actor, c.sid, {"name": "x", "input": "y" * 2000}),
        TooLarge,
    ),
    (
        "tool_output_over_the_limit",
        lambda c: c.small.finish_tool_event(c.actor, c.event_id, output="y" * 2000),
        TooLarge,
    ),
    (
        "timeline_payload_over_the_limit",
        lambda c: c.small.append_timeline_events(
            c.actor, c.sid, [{"kind": "k", "payload": ["y" * 2000]}]
        ),
        TooLarge,
    ),
    (
        "title_over_1000_characters",
        lambda c: c.tk.create_session(c.actor, title="x" * 1001),
        InvalidInput,
    ),
    (
        "session_id_over_128_characters",
        lambda c: c.tk.create_session(c.actor, id="x" * 129),
        InvalidInput,
    ),
    (
        "too_many_tags",
        lambda c: c.tk.create_session(c.actor, tags=[f"t{i}" for i in range(101)]),
        InvalidInput,
    ),
    # --- batches ---
    ("empty_append", lambda c: c.tk.append_messages(c.actor, c.sid, []), InvalidInput),
    ("empty_append_with_no_events", lambda c: c.tk.append(c.actor, c.sid), InvalidInput),
    (
        "more_than_max_batch_messages",
        lambda c: c.small.append_messages(c.actor, c.sid, user_msgs(6)),
        InvalidInput,
    ),
    (
        "more_than_max_batch_items_in_total",
        lambda c: c.small.append(
            c.actor,
            c.sid,
            user_msgs(3),
            tool_events=[{"name": "a"}, {"name": "b"}],
            timeline_events=[{"kind": "k"}],
        ),
        InvalidInput,
    ),
    (
        "one_invalid_message_in_a_batch",
        lambda c: c.tk.append_messages(c.actor, c.sid, [*user_msgs(3), {"role": "nobody"}]),
        InvalidInput,
    ),
    (
        "one_invalid_tool_event_in_an_append",
        lambda c: c.tk.append(c.actor, c.sid, user_msgs(2), tool_events=[{"name": ""}]),
        InvalidInput,
    ),
    (
        "one_invalid_timeline_event_in_an_append",
        lambda c: c.tk.append(c.actor, c.sid, user_msgs(2), timeline_events=[{"kind": 5}]),
        InvalidInput,
    ),
    # --- wrong types and unknown values ---
    (
        "unknown_role",
        lambda c: c.tk.append_message(c.actor, c.sid, {"role": "wizard"}),
        InvalidInput,
    ),
    ("missing_role", lambda c: c.tk.append_message(c.actor, c.sid, {"content": "x"}), InvalidInput),
    (
        "content_is_an_int",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(content=123)),
        InvalidInput,
    ),
    (
        "content_is_none",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(content=None)),
        InvalidInput,
    ),
    (
        "unknown_message_field",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(colour="red")),
        InvalidInput,
    ),
    (
        "negative_token_count",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(input_tokens=-1)),
        InvalidInput,
    ),
    (
        "fractional_token_count",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(output_tokens=1.5)),
        InvalidInput,
    ),
    (
        "token_count_beyond_64_bits",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(input_tokens=2**63)),
        InvalidInput,
    ),
    (
        "parts_is_a_string",
        lambda c: c.tk.append_message(c.actor, c.sid, _msg(parts="text")),
        InvalidInput,
    ),
    (
        "message_is_a_string",
        lambda c: c.tk.append_messages(c.actor, c.sid, ["hello"]),
        InvalidInput,
    ),
    ("messages_is_a_dict", lambda c: c.tk.append_messages(c.actor, c.sid, _msg()), InvalidInput),
    ("messages_is_none", lambda c: c.tk.append_messages(c.actor, c.sid, None), InvalidInput),
    (
        "tool_events_is_none",
        lambda c: c.tk.append(c.actor, c.sid, user_msgs(1), tool_events=None),
        InvalidInput,
    ),
    ("tags_is_a_string", lambda c: c.tk.create_session(c.actor, tags="x"), InvalidInput),
    (
        "tags_is_a_string_on_update",
        lambda c: c.tk.update_session(c.actor, c.sid, tags="x"),
        InvalidInput,
    ),
    ("empty_tag", lambda c: c.tk.create_session(c.actor, tags=[""]), InvalidInput),
    (
        "starred_is_not_a_bool",
        lambda c: c.tk.update_session(c.actor, c.sid, starred="maybe"),
        InvalidInput,
    ),
    ("title_is_an_int", lambda c: c.tk.create_session(c.actor, title=5), InvalidInput),
    ("empty_session_id", lambda c: c.tk.create_session(c.actor, id=""), InvalidInput),
    ("unknown_session_field", lambda c: c.tk.create_session(c.actor, colour="red"), InvalidInput),
    (
        "unknown_patch_field",
        lambda c: c.tk.update_session(c.actor, c.sid, id="new-id"),
        InvalidInput,
    ),
    ("session_is_a_string", lambda c: c.tk.create_session(c.actor, "my title"), InvalidInput),
    ("session_is_a_list", lambda c: c.tk.create_session(c.actor, [("title", "x")]), InvalidInput),
    ("patch_is_a_string", lambda c: c.tk.update_session(c.actor, c.sid, "new title"), InvalidInput),
    (
        "unknown_tool_status",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, {"name": "x", "status": "exploded"}),
        InvalidInput,
    ),
    (
        "tool_event_without_a_name",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, {}),
        InvalidInput,
    ),
    (
        "tool_event_is_a_string",
        lambda c: c.tk.start_tool_event(c.actor, c.sid, "grep"),
        InvalidInput,
    ),
    (
        "naive_tool_started_at",
        lambda c: c.tk.start_tool_event(
            c.actor, c.sid, {"name": "x", "started_at": datetime(2024, 1, 1, 12, 0)}
        ),
        InvalidInput,
    ),
    (
        "naive_tool_finished_at",
        lambda c: c.tk.finish_tool_event(c.actor, c.event_id, finished_at=datetime(2024, 1, 1)),
        InvalidInput,
    ),
    (
        "timeline_kind_is_an_int",
        lambda c: c.tk.append_timeline_events(c.actor, c.sid, [{"kind": 1}]),
        InvalidInput,
    ),
    (
        "actor_is_a_string",
        lambda c: c.tk.append_message(c.actor.user_id, c.sid, _msg()),
        InvalidInput,
    ),
    ("actor_is_none", lambda c: c.tk.create_session(None, title="x"), InvalidInput),
    (
        "actor_with_an_empty_user_id",
        lambda c: c.tk.create_session(Actor(""), title="x"),
        InvalidInput,
    ),
    ("fork_seq_is_a_string", lambda c: c.tk.fork_session(c.actor, c.sid, at_seq="1"), InvalidInput),
    (
        "rewind_seq_is_a_string",
        lambda c: c.tk.rewind_session(c.actor, c.sid, to_seq="1"),
        InvalidInput,
    ),
    # --- ids and versions ---
    (
        "unknown_session_id",
        lambda c: c.tk.append_message(c.actor, "no-such-session", _msg()),
        SessionNotFound,
    ),
    (
        "foreign_session_id",
        lambda c: c.tk.append_message(c.actor, c.foreign_sid, _msg()),
        SessionNotFound,
    ),
    (
        "foreign_session_id_on_update",
        lambda c: c.tk.update_session(c.actor, c.foreign_sid, title="mine now"),
        SessionNotFound,
    ),
    (
        "stale_version_on_update",
        lambda c: c.tk.update_session(c.actor, c.sid, title="x", expected_version=99),
        VersionConflict,
    ),
    (
        "stale_version_on_delete",
        lambda c: c.tk.delete_session(c.actor, c.sid, expected_version=0),
        VersionConflict,
    ),
    (
        "stale_version_on_restore",
        lambda c: c.tk.restore_session(c.actor, c.sid, expected_version=7),
        VersionConflict,
    ),
]


@pytest.mark.parametrize(
    ("call", "error"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises_a_typed_error_and_writes_nothing(ctx, call, error):
    with writes_nothing(ctx.tk), pytest.raises(ThreadkeepError) as info:
        call(ctx)
    assert isinstance(info.value, error), f"expected {error.__name__}, got {info.value!r}"
    assert not isinstance(info.value, StoreError), "bad input is the caller's error"
    assert str(info.value)  # a message that says what is wrong


def test_an_invalid_input_error_names_the_field(ctx):
    with pytest.raises(InvalidInput) as info:
        ctx.tk.append_messages(ctx.actor, ctx.sid, [_msg(), _msg(role="wizard")])
    assert info.value.field.startswith("messages[1]")
    assert info.value.reason


def test_too_large_reports_size_and_limit(ctx):
    with pytest.raises(TooLarge) as info:
        ctx.small.append_message(ctx.actor, ctx.sid, _msg(content="x" * 1500))
    assert info.value.limit == 1000
    assert info.value.size >= 1500


def test_content_exactly_at_the_limit_is_accepted(ctx):
    s = ctx.tk.create_session(ctx.actor).value
    m = ctx.small.append_message(ctx.actor, s.id, _msg(content="x" * 1000)).value
    assert len(m.content) == 1000
    assert ctx.tk.get_message(ctx.actor, m.id).content == "x" * 1000


def test_exactly_max_batch_items_are_accepted(ctx):
    s = ctx.tk.create_session(ctx.actor).value
    done = ctx.small.append_messages(ctx.actor, s.id, user_msgs(5, "b"))
    assert [m.seq for m in done.value] == [1, 2, 3, 4, 5]


# --- reads with bad arguments: a typed error, never a crash --------------------------

READS: list[tuple[str, Callable[[Ctx], Any], type[ThreadkeepError]]] = [
    ("list_limit_is_a_string", lambda c: c.tk.list_sessions(c.actor, limit="10"), InvalidInput),
    ("list_filter_is_a_string", lambda c: c.tk.list_sessions(c.actor, "starred"), InvalidInput),
    ("list_unknown_filter", lambda c: c.tk.list_sessions(c.actor, colour="red"), InvalidInput),
    ("list_nul_in_tag_filter", lambda c: c.tk.list_sessions(c.actor, tag="\x00"), InvalidText),
    (
        "list_nul_in_title_filter",
        lambda c: c.tk.list_sessions(c.actor, title_contains="\x00"),
        InvalidText,
    ),
    (
        "last_messages_n_is_a_string",
        lambda c: c.tk.last_messages(c.actor, c.sid, "5"),
        InvalidInput,
    ),
    (
        "get_messages_after_seq_is_a_string",
        lambda c: c.tk.get_messages(c.actor, c.sid, after_seq="x"),
        InvalidInput,
    ),
    ("read_changes_after_is_a_string", lambda c: c.tk.read_changes(c.actor, "x"), InvalidInput),
    (
        "read_changes_tables_is_a_string",
        lambda c: c.tk.read_changes(c.actor, 0, tables="messages"),
        InvalidInput,
    ),
    ("read_with_a_string_actor", lambda c: c.tk.get_session(c.actor.user_id, c.sid), InvalidInput),
]


@pytest.mark.parametrize(
    ("call", "error"), [(c[1], c[2]) for c in READS], ids=[c[0] for c in READS]
)
def test_a_read_with_bad_arguments_raises_a_typed_error(ctx, call, error):
    with pytest.raises(ThreadkeepError) as info:
        call(ctx)
    assert isinstance(info.value, error), f"expected {error.__name__}, got {info.value!r}"


@pytest.mark.parametrize("key", ["id\x00with-nul", "id\ud800with-surrogate"])
@pytest.mark.parametrize(
    "op",
    [
        "get_session",
        "get_history",
        "count_messages",
        "append_message",
        "get_message",
        "get_tool_event",
        "update_session",
    ],
)
def test_an_id_holding_unstorable_text_raises_a_typed_error_not_a_crash(ctx, key, op):
    calls: dict[str, Callable[[], Any]] = {
        "get_session": lambda: ctx.tk.get_session(ctx.actor, key),
        "get_history": lambda: ctx.tk.get_history(ctx.actor, key),
        "count_messages": lambda: ctx.tk.count_messages(ctx.actor, key),
        "append_message": lambda: ctx.tk.append_message(ctx.actor, key, _msg()),
        "get_message": lambda: ctx.tk.get_message(ctx.actor, key),
        "get_tool_event": lambda: ctx.tk.get_tool_event(ctx.actor, key),
        "update_session": lambda: ctx.tk.update_session(ctx.actor, key, title="x"),
    }
    with writes_nothing(ctx.tk), pytest.raises(ThreadkeepError) as info:
        calls[op]()
    assert isinstance(info.value, InvalidInput | NotFound), repr(info.value)


def test_a_float_beyond_64_bits_is_refused_on_both_engines(ctx: Ctx) -> None:
    """jsonb would read 1e20 back as an integer on PostgreSQL, not on SQLite."""
    for value in (1e20, -1.8446744073709552e19):
        with writes_nothing(ctx.tk), pytest.raises(InvalidInput):
            ctx.tk.append_message(ctx.actor, ctx.sid, _msg(metadata={"x": value}))
        with writes_nothing(ctx.tk), pytest.raises(InvalidInput):
            ctx.tk.finish_tool_event(ctx.actor, ctx.event_id, output=value)

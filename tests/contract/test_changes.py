"""The change log that sync reads: txids, offsets, scoping, filters."""

from __future__ import annotations

import itertools

import pytest
from contract_helpers import new_session, not_raising, user_msgs, with_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadkeep import Actor, Change, InvalidInput, Operation
from threadkeep.sync.encoding import value_text
from threadkeep.sync.shapes import Shape, change_messages, snapshot_messages


def _by_txid(changes: list[Change], txid: int) -> list[Change]:
    return [c for c in changes if c.txid == txid]


def test_every_write_returns_a_txid_that_appears_in_the_change_log(tk, actor):
    writes = {}
    s = tk.create_session(actor, title="t")
    writes["create"] = s
    sid = s.value.id
    writes["append"] = tk.append_messages(actor, sid, user_msgs(3))
    writes["update"] = tk.update_session(actor, sid, title="t2")
    writes["fork"] = tk.fork_session(actor, sid, at_seq=2)
    ev = tk.start_tool_event(actor, sid, {"name": "x"})
    writes["tool start"] = ev
    writes["tool finish"] = tk.finish_tool_event(actor, ev.value.id, output=1)
    writes["timeline"] = tk.append_timeline_events(actor, sid, [{"kind": "k"}])
    other = new_session(tk, actor)
    tk.append_messages(actor, other.id, user_msgs(3))
    writes["rewind"] = tk.rewind_session(actor, other.id, to_seq=1)
    writes["delete"] = tk.delete_session(actor, other.id)
    writes["restore"] = tk.restore_session(actor, other.id)
    log = tk.read_changes(actor, 0)
    logged = {c.txid for c in log}
    for name, done in writes.items():
        assert done.txid in logged, name
    assert len({d.txid for d in writes.values()}) == len(writes), "txids are per operation"


def test_the_rows_of_one_operation_share_its_txid(tk, actor):
    s = new_session(tk, actor)
    done = tk.append_messages(actor, s.id, user_msgs(4))
    rows = _by_txid(tk.read_changes(actor, 0), done.txid)
    assert sorted((c.table, c.key) for c in rows if c.table == "messages") == sorted(
        ("messages", m.id) for m in done.value
    )
    assert {c.op for c in rows if c.table == "messages"} == {Operation.INSERT}
    assert [c.key for c in rows if c.table == "sessions"] == [s.id]
    assert all(c.session_id == s.id and c.owner_id == actor.user_id for c in rows)


def test_the_change_rows_carry_the_new_row(tk, actor):
    s = tk.create_session(actor, title="hello", tags=["a"]).value
    m = tk.append_message(actor, s.id, {"role": "user", "content": "hi", "client_id": "c"}).value
    log = tk.read_changes(actor, 0)
    created = next(c for c in log if c.table == "sessions" and c.op == Operation.INSERT)
    assert created.key == s.id
    assert created.row["title"] == "hello" and created.row["tags"] == ["a"]
    inserted = next(c for c in log if c.table == "messages")
    assert inserted.key == m.id
    assert inserted.row["content"] == "hi"
    assert inserted.row["seq"] == 1
    assert inserted.row["client_id"] == "c"


def test_rewind_logs_every_row_it_touches_under_one_txid(tk, actor):
    s = with_messages(tk, actor, 5)
    child = tk.fork_session(actor, s.id, at_seq=4).value
    done = tk.rewind_session(actor, s.id, to_seq=2)
    branch = done.value.branch
    rows = _by_txid(tk.read_changes(actor, 0), done.txid)
    keys = {(c.table, c.key, c.op) for c in rows}
    assert ("sessions", branch.id, Operation.INSERT) in keys
    assert ("sessions", s.id, Operation.UPDATE) in keys
    assert ("sessions", child.id, Operation.UPDATE) in keys  # re-parented
    moved = {c.key for c in rows if c.table == "messages"}
    assert moved == {m.id for m in tk.get_history(actor, branch.id)[2:]}
    # A move between sessions: out of the rewound one, then into the branch.
    msgs = [c for c in rows if c.table == "messages"]
    outs = [c for c in msgs if c.op == Operation.DELETE]
    ins = [c for c in msgs if c.op == Operation.INSERT]
    assert len(outs) == len(ins) == len(moved) == 3
    assert all(c.session_id == s.id and c.row is None for c in outs)
    assert all(c.session_id == branch.id and c.row["session_id"] == branch.id for c in ins)
    for c in ins:  # each leaves before it arrives
        assert max(o.offset for o in outs if o.key == c.key) < c.offset


def test_rewind_logs_the_move_of_the_moved_messages_events(tk, actor):
    """The tool and timeline events of the messages a rewind moves go to the
    branch with them; a sync client following either session must see them
    leave and arrive, as it sees the messages (found by test_log_replay)."""
    s = with_messages(tk, actor, 3)
    history = tk.get_history(actor, s.id)
    kept, moved = history[0], history[2]
    done = tk.append(
        actor,
        s.id,
        tool_events=[{"name": "grep", "message_id": m.id} for m in (kept, moved)],
        timeline_events=[{"kind": "step", "message_id": m.id} for m in (kept, moved)],
    ).value
    rewound = tk.rewind_session(actor, s.id, to_seq=1)
    branch = rewound.value.branch
    assert branch is not None
    rows = _by_txid(tk.read_changes(actor, 0), rewound.txid)
    for table, events in (
        ("tool_events", done.tool_events),
        ("timeline_events", done.timeline_events),
    ):
        went = events[1]
        logged = [c for c in rows if c.table == table]
        assert [(c.key, c.op, c.session_id) for c in logged] == [
            (went.id, Operation.DELETE, s.id),  # the kept one stays: not logged
            (went.id, Operation.INSERT, branch.id),
        ], table
        assert logged[1].row is not None and logged[1].row["session_id"] == branch.id


def test_session_updates_log_only_what_changed(tk, actor):
    """Sync sends an update as key + changed columns; and only moving in or out
    of the trash logs deleted_at (that is how sync tells a restore from an edit)."""
    s = new_session(tk, actor)
    t = tk.update_session(actor, s.id, title="renamed").txid
    (upd,) = _by_txid(tk.read_changes(actor, 0), t)
    assert set(upd.row) == {"id", "title", "version", "updated_at"}
    trashed = tk.delete_session(actor, s.id).txid
    (gone,) = _by_txid(tk.read_changes(actor, 0), trashed)
    assert gone.row["deleted_at"] is not None and "title" not in gone.row
    again = tk.delete_session(actor, s.id).txid  # no-op: the key alone, for its txid
    assert [c.row for c in _by_txid(tk.read_changes(actor, 0), again)] == [{"id": s.id}]
    back = tk.restore_session(actor, s.id).txid
    (restored,) = _by_txid(tk.read_changes(actor, 0), back)
    assert restored.row["deleted_at"] is None and restored.row["title"] == "renamed"


def test_offsets_are_strictly_increasing(tk, actor):
    for _ in range(3):
        s = new_session(tk, actor)
        tk.append_messages(actor, s.id, user_msgs(3))
        tk.update_session(actor, s.id, starred=True)
    offsets = [c.offset for c in tk.read_changes(actor, 0)]
    assert len(offsets) >= 3 * (1 + 3 + 1)  # create, 3 messages, update; per session
    assert all(a < b for a, b in itertools.pairwise(offsets))
    assert tk.last_offset() >= offsets[-1]


def test_reading_after_the_last_offset_returns_only_newer_changes(tk, actor):
    s = with_messages(tk, actor, 2)
    first = tk.read_changes(actor, 0)
    last = first[-1].offset
    assert tk.read_changes(actor, last) == []
    done = tk.append_message(actor, s.id, {"role": "user", "content": "new"})
    newer = tk.read_changes(actor, last)
    assert newer and all(c.offset > last for c in newer)
    assert {c.txid for c in newer} == {done.txid}
    assert tk.read_changes(actor, 0) == first + newer


def test_following_the_log_page_by_page_never_skips_or_repeats(tk, actor):
    s = new_session(tk, actor)
    for i in range(5):
        tk.append_messages(actor, s.id, user_msgs(3, f"p{i}-"))
    everything = tk.read_changes(actor, 0)
    seen: list[Change] = []
    after = 0
    while True:
        page = tk.read_changes(actor, after, limit=4)
        if not page:
            break
        seen += page
        after = page[-1].offset
    assert seen == everything


def test_another_users_changes_never_appear(tk, actor, other_actor):
    mine = with_messages(tk, actor, 2)
    theirs = with_messages(tk, other_actor, 3)
    tk.fork_session(other_actor, theirs.id, at_seq=1)
    tk.start_tool_event(other_actor, theirs.id, {"name": "x"})
    tk.delete_session(other_actor, theirs.id)
    log = tk.read_changes(actor, 0)
    assert log
    assert {c.owner_id for c in log} == {actor.user_id}
    assert {c.session_id for c in log} == {mine.id}
    assert tk.read_changes(actor, 0, session_id=theirs.id) == []
    their_log = tk.read_changes(other_actor, 0)
    assert {c.owner_id for c in their_log} == {other_actor.user_id}
    assert not {c.offset for c in log} & {c.offset for c in their_log}


def test_filter_by_session_id(tk, actor):
    a = with_messages(tk, actor, 2)
    b = with_messages(tk, actor, 3)
    only_b = tk.read_changes(actor, 0, session_id=b.id)
    assert {c.session_id for c in only_b} == {b.id}
    assert len([c for c in only_b if c.table == "messages"]) == 3
    assert {c.session_id for c in tk.read_changes(actor, 0, session_id=a.id)} == {a.id}


def test_filter_by_tables(tk, actor):
    s = with_messages(tk, actor, 2)
    tk.start_tool_event(actor, s.id, {"name": "x"})
    tk.append_timeline_events(actor, s.id, [{"kind": "k"}])
    assert {c.table for c in tk.read_changes(actor, 0, tables=["messages"])} == {"messages"}
    both = tk.read_changes(actor, 0, tables=["sessions", "tool_events"])
    assert {c.table for c in both} == {"sessions", "tool_events"}
    assert {c.table for c in tk.read_changes(actor, 0)} == {
        "sessions",
        "messages",
        "tool_events",
        "timeline_events",
    }


def test_an_unknown_table_raises_invalid_input(tk, actor):
    cases = {str(t): t for t in (["nope"], ["messages", "users"], ["changes"], ["api_tokens"])}
    wrong = not_raising(cases, lambda t: tk.read_changes(actor, 0, tables=t), InvalidInput)
    assert wrong == {}


def test_a_change_page_size_out_of_range_raises_invalid_input(tk, actor):
    limits = {str(n): n for n in (0, -1, 1001)}
    assert not_raising(limits, lambda n: tk.read_changes(actor, 0, limit=n), InvalidInput) == {}


def test_an_idempotent_retry_adds_nothing_to_the_log(tk, actor):
    s = new_session(tk, actor)
    msg = {"role": "user", "content": "x", "client_id": "c"}
    first = tk.append_message(actor, s.id, msg)
    before = tk.read_changes(actor, 0)
    again = tk.append_message(actor, s.id, msg)
    assert tk.read_changes(actor, 0) == before
    assert again.txid == first.txid


def test_a_no_op_delete_returns_a_txid_a_sync_client_can_wait_for(tk, actor):
    s = new_session(tk, actor)
    tk.delete_session(actor, s.id)
    again = tk.delete_session(actor, s.id)  # already in the trash: not an error
    assert again.txid in {c.txid for c in tk.read_changes(actor, 0)}


def test_a_no_op_rewind_returns_a_txid_a_sync_client_can_wait_for(tk, actor):
    s = with_messages(tk, actor, 2)
    done = tk.rewind_session(actor, s.id, to_seq=2)
    assert done.value.branch is None
    assert done.txid in {c.txid for c in tk.read_changes(actor, 0)}


def test_a_message_change_row_is_the_stored_row(tk, actor):
    """Both append paths (the plain one, and the general one that events
    force) log each message as the row that was stored: every column but the
    writer's txid, created_at as ISO text."""
    s = new_session(tk, actor)
    msg = {
        "role": "assistant",
        "content": "naïve ☃",
        "metadata": {"k": [1, "x", None], "f": 1.5},
        "parts": [{"type": "text", "text": "naïve ☃"}],
        "model": "m",
        "input_tokens": 3,
        "output_tokens": 4,
        "client_id": "c-1",
    }
    plain = tk.append_messages(actor, s.id, [msg, {"role": "user", "content": "b"}])
    general = tk.append(actor, s.id, [{**msg, "client_id": "c-2"}], timeline_events=[{"kind": "k"}])
    stored = plain.value + general.value.messages
    log = {c.key: c for c in tk.read_changes(actor, 0) if c.table == "messages"}
    for m in stored:
        expected = m.model_dump(mode="json")
        expected["created_at"] = m.created_at.isoformat()
        assert log[m.id].row == expected


_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63 - 1), 2**63 - 1)  # what check_json takes
    | st.floats(-1e15, 1e15, allow_nan=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=_TEXT,
    metadata=st.dictionaries(_TEXT, _JSON, max_size=4),
    parts=st.none() | st.lists(_JSON, max_size=3),
)
def test_a_client_gets_the_same_message_from_the_log_as_from_a_snapshot(
    tk, content, metadata, parts
):
    """Whatever the text and JSON of a message, the change row a live client
    receives decodes to what a snapshot gives for that message, on the one
    statement path (PostgreSQL builds that change row in SQL) and on the
    general one."""
    me = Actor(tk.create_user("json").value.id)
    s = new_session(tk, me)
    msg = {"role": "user", "content": content, "metadata": metadata, "parts": parts}
    start = tk.sync_state().last_offset
    tk.append_message(me, s.id, msg)
    tk.append(me, s.id, [msg], timeline_events=[{"kind": "k"}])
    shape = Shape("messages", me.user_id, s.id)
    logged = tk.shape_changes(me, "messages", start, session_id=s.id).changes
    live = {m["key"]: m["value"] for m in change_messages(shape, logged)}
    # As the shape endpoint reads it: encoded as the rows come out of the store.
    text = value_text("messages")
    rows = tk.shape_snapshot(me, "messages", session_id=s.id, encode=text).rows
    snap = {m["key"]: m["value"] for m in snapshot_messages(shape, rows, encoded=True)}
    assert len(live) == 2 and live == snap
    plain = tk.shape_snapshot(me, "messages", session_id=s.id).rows
    assert {m["key"]: m["value"] for m in snapshot_messages(shape, plain)} == snap


def test_a_snapshot_read_with_encode_passes_each_non_null_value_through_it(tk, actor):
    titled = tk.create_session(actor, title="Trip").value
    untitled = tk.create_session(actor).value
    plain = {r["id"]: r for r in tk.shape_snapshot(actor, "sessions").rows}
    rows = {
        r["id"]: r for r in tk.shape_snapshot(actor, "sessions", encode={"title": str.upper}).rows
    }
    assert rows[titled.id]["title"] == "TRIP" and rows[untitled.id]["title"] is None
    for sid in (titled.id, untitled.id):  # the other columns as they are read without it
        assert {k: v for k, v in rows[sid].items() if k != "title"} == {
            k: v for k, v in plain[sid].items() if k != "title"
        }


@pytest.mark.parametrize("encode", [["title"], {"title": 3}, "title"])
def test_encode_must_map_column_names_to_functions(tk, actor, encode):
    with pytest.raises(InvalidInput) as e:
        tk.shape_snapshot(actor, "sessions", encode=encode)
    assert e.value.field == "encode"

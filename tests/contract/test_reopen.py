"""Durability across a close and a reopen: everything written is there, equal."""

from __future__ import annotations

from datetime import UTC, datetime

from contract_helpers import user_msgs

from threadkeep import Actor, Threadkeep


def test_everything_written_is_there_and_equal_after_close_and_reopen(db_url):
    tk = Threadkeep.open(db_url)
    me = Actor(tk.create_user("ada", id="user-ada").value.id)
    root = tk.create_session(
        me, id="root", title="Root", tags=["x"], starred=True, metadata={"k": [1, "é"]}
    ).value
    tk.append(
        me,
        root.id,
        [
            {"role": "system", "content": "be brief", "client_id": "c0"},
            {"role": "user", "content": "hello 👋", "id": "m-user", "input_tokens": 5},
            {
                "role": "assistant",
                "content": "",
                "id": "m-call",
                "tool_calls": [{"id": "t1"}],
                "output_tokens": 9,
                "parts": [{"type": "tool", "id": "t1"}],
            },
        ],
        tool_events=[{"name": "grep", "message_id": "m-call", "call_id": "t1", "input": {"q": 1}}],
        timeline_events=[{"kind": "turn", "payload": {"n": 1, "f": 0.5}, "message_id": "m-user"}],
    )
    ev = tk.list_tool_events(me, root.id)[0]
    tk.finish_tool_event(
        me, ev.id, output={"hits": ["a"]}, finished_at=datetime(2030, 1, 1, tzinfo=UTC)
    )
    tk.append_messages(me, root.id, user_msgs(3, "more"))
    fork = tk.fork_session(me, root.id, at_seq=4, id="fork", title="Alt").value
    tk.append_message(me, fork.id, {"role": "user", "content": "on the fork"})
    rewound = tk.rewind_session(me, root.id, to_seq=2, branch_id="tail").value
    tk.append_message(me, root.id, {"role": "user", "content": "after rewind"})
    binned = tk.create_session(me, id="binned").value
    tk.delete_session(me, binned.id)

    ids = ["root", "fork", "tail", "binned"]
    before = {
        "sessions": {i: tk.get_session(me, i) for i in ids},
        "histories": {i: tk.get_history(me, i) for i in ids},
        "tools": {i: tk.list_tool_events(me, i) for i in ids},
        "timeline": {i: tk.list_timeline_events(me, i) for i in ids},
        "branches": {i: tk.list_branches(me, i) for i in ids},
        "list": tk.list_sessions(me).items,
        "trash": tk.list_sessions(me, trashed=True).items,
        "changes": tk.read_changes(me, 0),
        "users": tk.list_users(),
    }
    assert rewound.branch is not None and rewound.branch.id == "tail"
    assert [m.content for m in before["histories"]["tail"]][-1] == "more3"
    tk.close()

    with Threadkeep.open(db_url) as again:
        after = {
            "sessions": {i: again.get_session(me, i) for i in ids},
            "histories": {i: again.get_history(me, i) for i in ids},
            "tools": {i: again.list_tool_events(me, i) for i in ids},
            "timeline": {i: again.list_timeline_events(me, i) for i in ids},
            "branches": {i: again.list_branches(me, i) for i in ids},
            "list": again.list_sessions(me).items,
            "trash": again.list_sessions(me, trashed=True).items,
            "changes": again.read_changes(me, 0),
            "users": again.list_users(),
        }
        for key in before:
            assert after[key] == before[key], key
        # and it keeps going where it stopped
        nxt = again.append_message(me, "root", {"role": "user", "content": "next"}).value
        assert nxt.seq == 4
        replay = again.append_message(
            me, "root", {"role": "system", "content": "x", "client_id": "c0"}
        )
        assert replay.value == before["histories"]["root"][0]
        assert (
            again.read_changes(me, before["changes"][-1].offset)[0].offset
            > before["changes"][-1].offset
        )

"""What was written is what is read after the store is closed and opened again:
sessions with tags and metadata, messages, a fork, a rewind, tool events
started and finished, timeline events, the trash, the change log."""

from __future__ import annotations

from typing import Any

from threadkeep import Actor, Threadkeep, ToolStatus

TEXT = "héllo 👋 — 日本語\nline two\ttab"
META = {"k": [1, 2.5, None, True, {"x": "ü"}], "nested": {"deep": {"deeper": []}}, "f": 0.1}


def _write(tk: Threadkeep) -> dict[str, Any]:
    """Write one of everything; return what the calls returned and the ids."""
    w: dict[str, Any] = {}
    ada = tk.create_user("ada").value
    bob = tk.create_user("bob", id="bob-id").value
    w["users"] = [ada, bob]
    a = Actor(ada.id)
    w["actor"] = a
    s1 = tk.create_session(
        a,
        title="Plans ü",
        model="gpt-x",
        provider="openai",
        tags=["work", "urgent", "ü"],
        metadata=META,
        starred=True,
    ).value
    s2 = tk.create_session(a, {"title": "archived one", "archived": True, "pinned": True}).value
    s3 = tk.create_session(a, title="to the trash", id="chosen-id-3").value
    s_bob = tk.create_session(Actor(bob.id), title="bob's").value
    msgs = tk.append_messages(
        a,
        s1.id,
        [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": TEXT,
                "client_id": "c-1",
                "metadata": META,
                "parts": [{"type": "text", "text": TEXT}, {"type": "image", "ref": "blob:1"}],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call-1", "name": "grep", "args": {"q": "x"}}],
                "model": "gpt-x",
                "input_tokens": 11,
                "output_tokens": 22,
                "id": "msg-assistant-1",
            },
            {"role": "tool", "content": "3 matches", "client_id": "c-3"},
            {"role": "assistant", "content": "done", "output_tokens": 5},
            {"role": "user", "content": "and then?", "client_id": "c-5"},
        ],
    ).value
    # A message, its tool call and a timeline event in one atomic append.
    both = tk.append(
        a,
        s1.id,
        [{"role": "assistant", "content": "running", "id": "msg-running"}],
        tool_events=[{"name": "bash", "input": {"cmd": "ls"}, "message_id": "msg-running"}],
        timeline_events=[{"kind": "thinking", "payload": {"ms": 120}, "message_id": "msg-running"}],
    ).value
    started = tk.start_tool_event(
        a,
        s1.id,
        {"name": "grep", "input": {"q": "x"}, "call_id": "call-1", "message_id": "msg-assistant-1"},
    ).value
    finished = tk.finish_tool_event(a, started.id, output={"matches": [1, 2, 3]}).value
    failed_start = tk.start_tool_event(a, s1.id, {"name": "curl", "input": None}).value
    failed = tk.finish_tool_event(a, failed_start.id, error="exit 7").value
    final_bash = tk.finish_tool_event(a, both.tool_events[0].id, output="a\nb").value
    timeline = tk.append_timeline_events(
        a,
        s1.id,
        [{"kind": "status", "payload": "idle"}, {"kind": "compact", "payload": {"n": 3}}],
    ).value
    fork = tk.fork_session(a, s1.id, at_seq=3, title="what if").value
    fork_msgs = tk.append_messages(
        a, fork.id, [{"role": "user", "content": "alt"}, {"role": "assistant", "content": "ok"}]
    ).value
    # Rewind s1 to seq 4: seqs 5..7 move to a new branch.
    rewound = tk.rewind_session(a, s1.id, to_seq=4, branch_id="branch-of-s1").value
    s2v = tk.update_session(
        a, s2.id, {"tags": ["x"], "metadata": {"a": 1}}, expected_version=s2.version
    ).value
    trashed = tk.delete_session(a, s3.id).value
    w.update(
        s1=s1,
        s2=s2v,
        s3=trashed,
        s_bob=s_bob,
        msgs=msgs,
        both=both,
        finished=finished,
        failed=failed,
        final_bash=final_bash,
        timeline=timeline,
        fork=fork,
        fork_msgs=fork_msgs,
        rewound=rewound,
    )
    return w


def _snapshot(tk: Threadkeep, a: Actor, session_ids: list[str]) -> dict[str, Any]:
    """Everything the library can read back, as model objects."""
    snap: dict[str, Any] = {"users": tk.list_users()}
    for sid in session_ids:
        snap[f"session:{sid}"] = tk.get_session(a, sid)
        history = tk.get_history(a, sid)
        snap[f"history:{sid}"] = history
        snap[f"count:{sid}"] = tk.count_messages(a, sid)
        snap[f"last2:{sid}"] = tk.last_messages(a, sid, 2)
        snap[f"tools:{sid}"] = tk.list_tool_events(a, sid)
        snap[f"timeline:{sid}"] = tk.list_timeline_events(a, sid)
        snap[f"branches:{sid}"] = tk.list_branches(a, sid)
        for m in history:
            snap[f"message:{m.id}"] = tk.get_message(a, m.id)
        for t in snap[f"tools:{sid}"]:
            snap[f"tool:{t.id}"] = tk.get_tool_event(a, t.id)
    for name, flt in {
        "live": {},
        "trash": {"trashed": True},
        "starred": {"starred": True},
        "archived": {"archived": True},
        "tag": {"tag": "urgent"},
        "title": {"title_contains": "PLANS"},
    }.items():
        snap[f"list:{name}"] = tk.list_sessions(a, flt, limit=100)
    stream, last = [], 0
    while page := tk.read_changes(a, after=last, limit=7):
        stream.extend(page)
        last = page[-1].offset
    snap["changes"] = stream
    snap["last_offset"] = tk.last_offset()
    return snap


def test_everything_reads_back_equal_after_reopen(db_url: str) -> None:
    with Threadkeep.open(db_url) as tk:
        w = _write(tk)
        a: Actor = w["actor"]
        ids = [
            w["s1"].id,
            w["s2"].id,
            w["s3"].id,
            w["fork"].id,
            "branch-of-s1",
        ]
        before = _snapshot(tk, a, ids)
        bob_before = tk.get_session(Actor("bob-id"), w["s_bob"].id)

    # What was written (checked against exact values, before any reopen).
    s1, branch = w["rewound"].session, w["rewound"].branch
    assert branch is not None and branch.id == "branch-of-s1"
    assert (s1.head_seq, branch.head_seq, branch.fork_seq) == (4, 7, 4)
    assert [m.seq for m in before[f"history:{s1.id}"]] == [1, 2, 3, 4]
    written = [*w["msgs"], *w["both"].messages]
    assert [m.id for m in before["history:branch-of-s1"]] == [m.id for m in written]
    fork_history = before[f"history:{w['fork'].id}"]
    assert [m.id for m in fork_history] == [m.id for m in [*w["msgs"][:3], *w["fork_msgs"]]]
    assert [m.seq for m in fork_history] == [1, 2, 3, 4, 5]
    assert before[f"message:{w['msgs'][1].id}"] == w["msgs"][1]  # not moved: as returned
    assert before[f"session:{w['s3'].id}"].deleted_at is not None
    assert [s.id for s in before["list:trash"].items] == [w["s3"].id]
    # Branches inherit the tags.
    assert {s.id for s in before["list:tag"].items} == {s1.id, w["fork"].id, branch.id}
    assert w["finished"].status == ToolStatus.SUCCEEDED
    assert w["finished"].output == {"matches": [1, 2, 3]}
    assert w["failed"].status == ToolStatus.FAILED and w["failed"].error == "exit 7"

    # Reopen: every read is equal, field for field.
    with Threadkeep.open(db_url) as tk:
        after = _snapshot(tk, a, ids)
        assert after.keys() == before.keys()
        for key in before:
            assert after[key] == before[key], key
        assert tk.get_session(Actor("bob-id"), w["s_bob"].id) == bob_before
        # Objects the write calls returned, where nothing changed them since.
        assert tk.list_users() == w["users"]
        assert tk.get_message(a, w["msgs"][0].id) == w["msgs"][0]
        assert tk.get_message(a, w["msgs"][2].id) == w["msgs"][2]
        assert tk.get_tool_event(a, w["finished"].id) == w["finished"]
        assert tk.get_tool_event(a, w["failed"].id) == w["failed"]
        assert tk.get_session(a, w["s2"].id) == w["s2"]
        assert tk.get_session(a, w["s3"].id) == w["s3"]
        assert tk.get_session(a, s1.id) == s1
        assert tk.get_session(a, "branch-of-s1") == branch
        assert tk.get_session(a, w["fork"].id).head_seq == 5
        s1_after = tk.get_session(a, w["s1"].id)
        assert (s1_after.tags, s1_after.metadata, s1_after.starred) == (
            ["work", "urgent", "ü"],
            META,
            True,
        )
        # Moved messages are the same messages, now held by the branch.
        moved = {m.id: m for m in after["history:branch-of-s1"]}
        for m in written[4:]:
            assert moved[m.id] == m.model_copy(update={"session_id": "branch-of-s1"})
        timeline = after["timeline:branch-of-s1"] + after[f"timeline:{s1.id}"]
        assert sorted(e.id for e in timeline) == sorted(
            e.id for e in [*w["both"].timeline_events, *w["timeline"]]
        )

    # Without migrating, too.
    with Threadkeep.open(db_url, migrate=False) as tk:
        assert _snapshot(tk, a, ids) == before

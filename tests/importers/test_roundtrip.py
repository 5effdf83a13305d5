"""Export -> import into an empty store is lossless on both engines: the same
sessions (branches, rewinds, trash, counters), messages, tool events,
timeline events, every session-record table and the uploads' metadata, row
for row."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conftest import create_pg_database, drop_pg_database, row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.exporters import export
from threadkeep.importers import FORMATS, run_import
from threadkeep.store import tables

USER = "ada-roundtrip"


def populate(tk: Threadkeep) -> Actor:
    me = Actor(tk.create_user("Ada", id=USER).value.id)
    a = tk.create_session(me, id="a", title="Plans", tags=["x", "y"], metadata={"k": [1, 2.5]})
    a_id = a.value.id
    msgs = tk.append_messages(
        me,
        a_id,
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "héllo 👋", "client_id": "c1", "metadata": {"n": 1}},
            {
                "role": "assistant",
                "content": "hi",
                "parts": [{"type": "text", "text": "hi"}],
                "tool_calls": [{"name": "search"}],
                "model": "m1",
                "input_tokens": 7,
                "output_tokens": 3,
            },
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": "sure"},
        ],
    ).value
    ev = tk.start_tool_event(
        me, a_id, {"name": "search", "input": {"q": "x"}, "message_id": msgs[2].id}
    ).value
    tk.finish_tool_event(me, ev.id, output={"hits": 3})
    tk.append_timeline_events(me, a_id, [{"kind": "note", "payload": {"p": 1}}])
    tk.append(
        me,
        a_id,
        [{"role": "tool", "content": "3 hits", "id": "tool-msg"}],
        timeline_events=[{"kind": "seen", "message_id": "tool-msg"}],
        tool_events=[
            {"name": "fetch", "status": "failed", "error": "404", "message_id": "tool-msg"}
        ],
    )
    fork = tk.fork_session(me, a_id, at_seq=2, id="a-fork", title="Other idea").value
    tk.append_messages(me, fork.id, [{"role": "assistant", "content": "another answer"}])
    # A rewind moves the tail (and its events) to a new branch.
    tk.rewind_session(me, a_id, to_seq=4, branch_id="a-tail")
    streaming = tk.create_session(me, id="s").value
    tk.start_message(me, streaming.id, {"role": "assistant", "content": "part"})
    b = tk.create_session(me, id="b", title="Old").value
    tk.append_message(me, b.id, {"role": "user", "content": "bye"})
    tk.delete_session(me, b.id)
    tk.create_session(me, id="empty", starred=True, pinned=True, archived=True)
    record_everything(tk, me, a_id, msgs[2].id, ev.id)
    return me


UPLOAD_BYTES = b"the bytes of notes.txt\n"


def record_everything(tk: Threadkeep, me: Actor, sid: str, mid: str, tool_id: str) -> None:
    """One row or more of every session-record table, and an upload."""
    tk.replace_todos(
        me,
        sid,
        [
            {"content": "plan", "status": "completed"},
            {"content": "book", "status": "in_progress", "active_form": "booking"},
        ],
    )
    tk.bind_repo(me, sid, {"path": "/src/old", "branch": "main"})
    tk.bind_repo(me, sid, {"remote_url": "https://example.org/r.git", "commit_sha": "abc123"})
    tk.set_summary(me, sid, {"summary": "A trip", "key_decisions": ["Lisbon"], "title": "T"})
    tk.create_snapshot(me, sid, {"state": {"step": 2}, "summary": {"s": 1}, "starred": True})
    tk.create_checkpoint(me, sid, {"message_id": mid, "label": "cp", "context": {"k": 1}})
    tk.record_misalignment(
        me,
        sid,
        {
            "kind": "scope",
            "severity": "high",
            "description": "went off plan",
            "evidence": [{"kind": "message", "id": mid}, {"kind": "tool_event", "id": tool_id}],
        },
    )
    tk.record_hook_decision(
        me,
        sid,
        {"rule_id": "r1", "event": "tool_call", "decision": "warn", "tool_event_id": tool_id},
    )
    tk.create_recording(me, sid, {"name": "rec", "events": [{"t": 0}], "duration_ms": 5})
    tk.record_file_change(me, sid, {"path": "a.py", "diff": "+x", "tool_event_id": tool_id})
    tk.record_analytics_event(
        me, sid, {"event_type": "turn", "input_tokens": 3, "cost_usd": 0.25, "properties": {}}
    )
    tk.upload(me, sid, [UPLOAD_BYTES], filename="notes.txt", media_type="text/plain")


_SKIP = {"txid"}  # which transaction wrote a message row is not part of its data


def dump(tk: Threadkeep) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tk.engine.sa_engine.connect() as conn:
        names = ["sessions", "messages", "tool_events", "timeline_events", "uploads"]
        for name in [*names, *(t.name for t in tables.SESSION_RECORD_TABLES)]:
            t = tables.metadata.tables[name]
            rows = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
            out[name] = [{k: v for k, v in r.items() if k not in _SKIP} for r in rows]
    return out


def export_text(tk: Threadkeep, me: Actor, fmt: str = "jsonl") -> str:
    buf = io.StringIO()
    export(tk, me, buf, format=fmt)
    return buf.getvalue()


def test_export_then_import_into_an_empty_store_gives_the_same_rows(
    db_url: str, tmp_path: Path
) -> None:
    with Threadkeep.open(db_url) as tk:
        me = populate(tk)
        text = export_text(tk, me)
        original = dump(tk)
    path = tmp_path / "export.jsonl"
    path.write_text(text, encoding="utf-8")
    second = db_url.replace("threadkeep.db", "second.db")
    if second == db_url:  # PostgreSQL: a fresh database of its own
        second = create_pg_database()
    try:
        with Threadkeep.open(second) as tk2:
            tk2.create_user("Ada", id=USER)
            # The export holds the uploads' metadata, not their bytes: they are
            # copied beside it (docs/blobs.md), as an operator would.
            tk2.blobs.put([UPLOAD_BYTES], max_bytes=1 << 20)
            report = run_import(
                tk2,
                me,
                FORMATS["threadkeep"].read(path, me.user_id),
                format="threadkeep",
                path=str(path),
                verify=True,
            )
            assert report.failed == [] and report.verified is True
            assert not any("upload" in r for _, r in report.skipped)
            assert all(original[name] for name in original)  # every table has rows
            assert dump(tk2) == original
            assert export_text(tk2, me).splitlines()[1:] == text.splitlines()[1:]
            # And once more: nothing changes.
            before = row_counts(tk2)
            again = run_import(
                tk2,
                me,
                FORMATS["threadkeep"].read(path, me.user_id),
                format="threadkeep",
                path=str(path),
            )
            assert again.count("created") == 0 and row_counts(tk2) == before
    finally:
        if not second.startswith("sqlite"):
            drop_pg_database(second)


def test_json_and_markdown_exports_hold_every_session(tk: Threadkeep) -> None:
    me = populate(tk)
    doc = json.loads(export_text(tk, me, "json"))
    assert doc["format"] == "threadkeep"
    ids = [s["session"]["id"] for s in doc["sessions"]]
    assert sorted(ids) == ["a", "a-fork", "a-tail", "b", "empty", "s"]
    assert ids.index("a") < ids.index("a-fork") and ids.index("a") < ids.index("a-tail")
    tail = next(s for s in doc["sessions"] if s["session"]["id"] == "a-tail")
    assert [m["content"] for m in tail["messages"]] == ["sure", "3 hits"]
    md = export_text(tk, me, "markdown")
    assert "## Plans" in md and "héllo 👋" in md and "branch of `a` after message 2" in md
    assert "- in the trash" in md
    assert "#### Summary\n\nA trip\n" in md and "- [x] plan\n- [~] book\n" in md
    (a_doc,) = [x for x in doc["sessions"] if x["session"]["id"] == "a"]
    tables_held = {r["table"] for r in a_doc["records"]}
    assert tables_held == {t.name for t in tables.SESSION_RECORD_TABLES} | {"uploads"}


def test_exporting_one_session_takes_its_branches_along(tk: Threadkeep) -> None:
    me = populate(tk)
    buf = io.StringIO()
    counts = export(tk, me, buf, format="jsonl", session_ids=["a"])
    sessions = [
        json.loads(line)["data"]["id"]
        for line in buf.getvalue().splitlines()
        if '"type":"session"' in line
    ]
    assert sessions == ["a", "a-fork", "a-tail"] or sessions == ["a", "a-tail", "a-fork"]
    assert counts.sessions == 3


def _import_text(tk: Threadkeep, me: Actor, text: str, tmp_path: Path) -> Any:
    path = tmp_path / "export.jsonl"
    path.write_text(text, encoding="utf-8")
    return run_import(
        tk, me, FORMATS["threadkeep"].read(path, me.user_id), format="threadkeep", path=str(path)
    )


def _evidence(message_id: str) -> dict[str, Any]:
    return {
        "kind": "k",
        "description": "d",
        "evidence": [{"kind": "message", "id": message_id}],
    }


def test_a_record_naming_a_message_purged_since_is_exported_and_imported_as_it_is(
    tk: Threadkeep, tmp_path: Path
) -> None:
    """A record names a message of its session; a rewind moves the message
    into a branch, and purging the branch deletes it. The record still names
    it: the store's own state, which its export must import. Before, the
    import refused the session ("no message ... of this user has that id"),
    so a user who had done this could not move their data."""
    me = Actor(tk.create_user("ada").value.id)
    s = tk.create_session(me, id="dangling").value
    m = tk.append_message(me, s.id, {"role": "user", "content": "said"}).value
    tk.record_misalignment(me, s.id, _evidence(m.id))
    branch = tk.rewind_session(me, s.id, to_seq=0).value.branch
    assert branch is not None
    tk.delete_session(me, branch.id)
    tk.purge_session(me, branch.id)
    text = export_text(tk, me)
    assert m.id in text and tk.get_messages(me, s.id) == []

    with Threadkeep.open(f"sqlite:///{tmp_path}/second.db") as second:
        second.create_user("ada", id=me.user_id)
        report = _import_text(second, me, text, tmp_path)
        assert report.failed == [], report.failed
        (kept,) = second.list_misalignments(me, "dangling")
        assert [e.id for e in kept.evidence] == [m.id]
        assert export_text(second, me).splitlines()[1:] == text.splitlines()[1:]


def test_a_record_naming_another_users_message_is_refused(tk: Threadkeep, tmp_path: Path) -> None:
    """What the import still refuses: an id another user's message has, with
    the answer an id of nobody's used to get, and nothing written."""
    victim = Actor(tk.create_user("victim").value.id)
    vs = tk.create_session(victim).value
    theirs = tk.append_message(victim, vs.id, {"role": "user", "content": "private"}).value
    me = Actor(tk.create_user("mallory").value.id)
    s = tk.create_session(me, id="mine").value
    m = tk.append_message(me, s.id, {"role": "user", "content": "mine"}).value
    tk.record_misalignment(me, s.id, _evidence(m.id))
    forged = "\n".join(
        line.replace(m.id, theirs.id) if '"table":"misalignments"' in line else line
        for line in export_text(tk, me).splitlines()
    )
    assert theirs.id in forged
    tk.delete_session(me, s.id)
    tk.purge_session(me, s.id)  # so that the import makes the session again

    before = row_counts(tk)
    report = _import_text(tk, me, forged, tmp_path)
    (failed,) = report.failed
    assert failed[1].endswith(
        f"names {theirs.id!r}: no message or tool event of this user has that id"
    ), failed
    assert row_counts(tk) == before

"""The session record an import stores beside the messages, on both engines:
todos (the last list wins), the repo binding and the summary from Claude
Code and legacy JSON; the session-record rows and upload metadata of
threadkeep's own export. Each: a dry run writes nothing, a second import
changes nothing, a bad row fails its session only (file and line) and writes
nothing of it."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.errors import SessionNotFound
from threadkeep.exporters import export
from threadkeep.importers import FORMATS, run_import
from threadkeep.importers.run import ImportReport
from threadkeep.store import tables
from threadkeep.store.imports import RECORD_KINDS

DATA = Path(__file__).parent / "data"


def run(tk: Threadkeep, actor: Actor, fmt: str, path: Path, **kw: bool) -> ImportReport:
    return run_import(
        tk, actor, FORMATS[fmt].read(path, actor.user_id), format=fmt, path=str(path), **kw
    )


def _line(rec: dict[str, Any]) -> str:
    return json.dumps(rec) + "\n"


def _user(uid: str, text: str, parent: str | None = None) -> dict[str, Any]:
    return {
        "type": "user",
        "uuid": uid,
        "parentUuid": parent,
        "sessionId": "s",
        "cwd": "/w",
        "timestamp": "2025-01-01T00:00:00Z",
        "message": {"role": "user", "content": text},
    }


def _todo_write(uid: str, parent: str, todos: list[dict[str, Any]]) -> dict[str, Any]:
    block = {"type": "tool_use", "id": f"t-{uid}", "name": "TodoWrite", "input": {"todos": todos}}
    return {
        "type": "assistant",
        "uuid": uid,
        "parentUuid": parent,
        "sessionId": "s",
        "timestamp": "2025-01-01T00:00:01Z",
        "message": {"role": "assistant", "model": "m", "content": [block]},
    }


def test_the_record_tables_and_the_exported_kinds_agree() -> None:
    assert set(RECORD_KINDS) == {t.name for t in tables.SESSION_RECORD_TABLES}


@pytest.mark.parametrize(
    ("fmt", "path", "expect"),
    [
        # The main transcript and its subagent's each have a cwd.
        ("claude-code", "claude-project", {"todos": 2, "repo_bindings": 2, "summaries": 1}),
        ("legacy-json", "legacy", {"todos": 1, "repo_bindings": 0, "summaries": 1}),
    ],
)
def test_dry_run_writes_nothing_then_import_then_again_changes_nothing(
    tk: Threadkeep, actor: Actor, fmt: str, path: str, expect: dict[str, int]
) -> None:
    before = row_counts(tk)
    dry = run(tk, actor, fmt, DATA / path, dry_run=True)
    assert row_counts(tk) == before
    planned = dry.totals("would_create").as_dict()
    assert {k: planned[k] for k in expect} == expect
    done = run(tk, actor, fmt, DATA / path)
    created = done.totals("created").as_dict()
    assert {k: created[k] for k in expect} == expect
    after = row_counts(tk)
    for table, n in expect.items():
        assert after[table] == before[table] + n
    again = run(tk, actor, fmt, DATA / path)
    assert again.count("created") == again.count("updated") == 0
    assert again.count("unchanged") == done.count("created")
    assert row_counts(tk) == after
    # A dry run over what is there: nothing would change.
    dry_again = run(tk, actor, fmt, DATA / path, dry_run=True)
    assert dry_again.count("would_create") == dry_again.count("would_update") == 0
    assert row_counts(tk) == after


def test_a_todo_list_written_later_in_the_transcript_wins_when_it_grows(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    f = tmp_path / "s.jsonl"
    first = [{"content": "a", "status": "pending"}, {"content": "b", "status": "pending"}]
    f.write_text(_line(_user("u1", "go")) + _line(_todo_write("a1", "u1", first)))
    assert run(tk, actor, "claude-code", tmp_path).count("created") == 1
    (main,) = tk.list_sessions(actor).items
    assert [t.content for t in tk.list_todos(actor, main.id)] == ["a", "b"]
    ids = [t.id for t in tk.list_todos(actor, main.id)]
    later = [{"content": "a", "status": "completed", "activeForm": "doing a"}]
    with f.open("a") as out:
        out.write(_line(_user("u2", "next", "a1")) + _line(_todo_write("a2", "u2", later)))
    grown = run(tk, actor, "claude-code", tmp_path)
    assert grown.count("updated") == 1
    (todo,) = tk.list_todos(actor, main.id)
    assert (todo.id, todo.content, todo.status.value, todo.active_form) == (
        ids[0],  # the same row, changed in place: position-derived ids
        "a",
        "completed",
        "doing a",
    )
    before = row_counts(tk)
    assert run(tk, actor, "claude-code", tmp_path).count("unchanged") == 1
    assert row_counts(tk) == before


def test_a_bad_todo_fails_only_its_session_with_file_and_line(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    bad = [{"content": "a", "status": "pending"}, {"content": "b", "status": "blocked"}]
    (tmp_path / "bad.jsonl").write_text(
        _line(_user("u1", "go")) + _line(_todo_write("a1", "u1", bad))
    )
    good = [{"content": "a", "status": "pending"}]
    (tmp_path / "good.jsonl").write_text(
        _line(_user("u1", "go")) + _line(_todo_write("a1", "u1", good))
    )
    before = row_counts(tk)
    report = run(tk, actor, "claude-code", tmp_path)
    assert report.count("created") == 1 and len(report.failed) == 1
    where, reason = report.failed[0]
    assert "bad.jsonl" in where and "bad.jsonl line 2 todos[1].status" in reason
    after = row_counts(tk)
    assert after["sessions"] == before["sessions"] + 1 and after["todos"] == before["todos"] + 1
    (only,) = tk.list_sessions(actor).items
    assert only.metadata["file"] == "good"
    # Alone, the bad transcript writes nothing at all.
    (tmp_path / "good.jsonl").unlink()
    report = run(tk, actor, "claude-code", tmp_path)
    assert report.count("created") == 0 and len(report.failed) == 1
    assert row_counts(tk) == after


def test_a_bad_legacy_todo_fails_only_its_chat(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    chats = [
        {"id": "ok", "messages": [{"role": "user", "content": "x"}], "todos": [{"content": "t"}]},
        {
            "id": "no",
            "messages": [{"role": "user", "content": "y"}],
            "todos": [{"content": "t", "status": "done"}],
        },
    ]
    (tmp_path / "chat-1.json").write_text(json.dumps(chats))
    before = row_counts(tk)
    report = run(tk, actor, "legacy-json", tmp_path)
    assert report.count("created") == 1 and len(report.failed) == 1
    assert "chat-1.json[1] todos[0].status" in report.failed[0][1]
    after = row_counts(tk)
    assert after["sessions"] == before["sessions"] + 1 and after["todos"] == before["todos"] + 1


def test_a_binding_that_cannot_be_stored_is_reported_and_the_session_imported(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    rec = _user("u1", "go")
    rec["gitBranch"] = "b" * 300  # longer than a branch column holds
    (tmp_path / "s.jsonl").write_text(_line(rec))
    report = run(tk, actor, "claude-code", tmp_path)
    assert report.count("created") == 1 and report.failed == []
    assert any("not stored as a repo binding" in r for _, r in report.skipped)
    (main,) = tk.list_sessions(actor).items
    assert tk.list_repo_bindings(actor, main.id) == []
    assert main.metadata["cwd"] == "/w"  # the source's word is kept all the same


def _export(tk: Threadkeep, actor: Actor) -> list[dict[str, Any]]:
    buf = io.StringIO()
    export(tk, actor, buf, format="jsonl")
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(_line(x) for x in lines))
    return path


def test_exported_records_import_idempotently_and_a_bad_one_fails_its_session(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    sid = tk.create_session(actor, id="r1").value.id
    mid = tk.append_message(actor, sid, {"role": "user", "content": "x"}).value.id
    tk.replace_todos(actor, sid, [{"content": "a", "status": "completed"}])
    tk.create_checkpoint(actor, sid, {"message_id": mid})
    tk.set_summary(actor, sid, {"summary": "s"})
    tk.upload(actor, sid, [b"abc"], filename="a.txt")
    lines = _export(tk, actor)
    kinds = [(x["type"], x.get("table")) for x in lines[1:]]
    assert ("record", "todos") in kinds and ("record", "uploads") in kinds
    # The same user's store, the session purged: the records come back with it.
    tk.delete_session(actor, sid)
    tk.purge_session(actor, sid)
    f = _write(tmp_path / "e.jsonl", lines)
    before = row_counts(tk)
    dry = run(tk, actor, "threadkeep", f, dry_run=True)
    assert dry.totals("would_create").as_dict()["records"] == 1  # the checkpoint
    assert row_counts(tk) == before
    done = run(tk, actor, "threadkeep", f)
    counts = done.totals("created").as_dict()
    assert (counts["todos"], counts["summaries"], counts["records"], counts["uploads"]) == (
        1,
        1,
        1,
        1,
    )
    assert [t.content for t in tk.list_todos(actor, sid)] == ["a"]
    assert len(tk.list_uploads(actor, sid)) == 1
    after = row_counts(tk)
    assert run(tk, actor, "threadkeep", f).count("unchanged") == 1
    assert row_counts(tk) == after

    # A bad todo (unknown status) in another exported session: that session
    # fails, naming its line, and nothing of it is written.
    bad = [dict(x) for x in lines]
    for x in bad[1:]:
        x["data"] = dict(x["data"])
        if x["type"] == "session":
            x["data"]["id"] = "r2"
        if x["type"] in ("message",):
            x["data"]["id"] = "m-r2"
        if x["type"] == "record":
            x["data"]["id"] = x["data"]["id"] + "-r2"
            if x["table"] == "todos":
                x["data"]["status"] = "blocked"
            if x["table"] == "checkpoints":
                x["data"]["message_id"] = "m-r2"
    bad_file = _write(tmp_path / "bad.jsonl", bad)
    report = run(tk, actor, "threadkeep", bad_file)
    assert report.count("created") == 0 and len(report.failed) == 1
    todo_line = 1 + next(i for i, x in enumerate(bad) if x.get("table") == "todos")
    assert f"bad.jsonl line {todo_line}.status" in report.failed[0][1]
    assert row_counts(tk) == after
    with pytest.raises(SessionNotFound):
        tk.get_session(actor, "r2")


def test_an_exported_upload_without_its_bytes_is_reported_not_stored(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    sid = tk.create_session(actor, id="u").value.id
    tk.append_message(actor, sid, {"role": "user", "content": "x"})
    lines = _export(tk, actor)
    row = {
        "id": "up-1",
        "filename": "gone.bin",
        "media_type": "application/octet-stream",
        "size": 3,
        "sha256": "0" * 64,
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    lines.append({"type": "record", "table": "uploads", "data": row})
    tk.delete_session(actor, sid)
    tk.purge_session(actor, sid)
    f = _write(tmp_path / "e.jsonl", lines)
    report = run(tk, actor, "threadkeep", f)
    assert report.count("created") == 1 and report.failed == []
    assert any("up-1 (gone.bin): its bytes are not in this store" in r for _, r in report.skipped)
    assert tk.list_uploads(actor, sid) == []


def test_an_exported_record_twice_or_a_second_summary_fails_the_session(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    sid = tk.create_session(actor, id="d").value.id
    tk.append_message(actor, sid, {"role": "user", "content": "x"})
    tk.set_summary(actor, sid, {"summary": "first"})
    tk.replace_todos(actor, sid, [{"content": "a"}])
    lines = _export(tk, actor)
    todo = next(x for x in lines if x.get("table") == "todos")
    twice = _write(tmp_path / "twice.jsonl", [*lines, todo])
    before = row_counts(tk)
    report = run(tk, actor, "threadkeep", twice)
    assert len(report.failed) == 1 and "appears twice" in report.failed[0][1]
    assert f"twice.jsonl line {len(lines) + 1}" in report.failed[0][1]
    assert row_counts(tk) == before
    # A summary set since the export (another row) is not overwritten by it.
    tk.delete_summary(actor, sid)
    tk.set_summary(actor, sid, {"summary": "second"})
    before = row_counts(tk)
    report = run(tk, actor, "threadkeep", _write(tmp_path / "e.jsonl", lines))
    assert len(report.failed) == 1 and "has a summary already" in report.failed[0][1]
    assert row_counts(tk) == before
    assert tk.get_summary(actor, sid).summary == "second"


def test_growth_of_a_transcript_rewound_in_threadkeep_is_refused_clearly(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    """A rewind in threadkeep moved the imported session's later messages to a
    branch; the transcript's growth would add them again under the same ids.
    Refused with a reason that names the rewind (it used to be the database's
    unique-constraint message), and nothing is written."""
    f = tmp_path / "s.jsonl"
    f.write_text(
        "".join(_line(_user(f"u{i}", f"turn {i}", f"u{i - 1}" if i else None)) for i in range(4))
    )
    assert run(tk, actor, "claude-code", tmp_path).count("created") == 1
    (main,) = tk.list_sessions(actor).items
    tk.rewind_session(actor, main.id, to_seq=2)
    with f.open("a") as out:
        out.write(_line(_user("u4", "turn 4", "u3")))
    before = row_counts(tk)
    report = run(tk, actor, "claude-code", tmp_path)
    assert report.count("failed") == 1
    (error,) = [s.error for s in report.sessions]
    assert error is not None and "a rewind moved it there" in error, error
    assert row_counts(tk) == before


def _age_blob(tk: Threadkeep, sha256: str) -> None:
    """Make a blob look stored two hours ago (blobs copied with their times)."""
    old = datetime.now(UTC) - timedelta(hours=2)
    if tk.blobs.name == "fs":
        os.utime(tk.blobs.path(sha256), (old.timestamp(), old.timestamp()))
    else:
        b = tables.blobs.c
        with tk.engine.sa_engine.begin() as conn:
            conn.execute(tables.blobs.update().where(b.sha256 == sha256).values(touched_at=old))


def test_an_exported_upload_whose_size_is_not_its_blobs_is_reported_not_stored(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    """A row that names bytes the blob store holds, with another size (an
    edited or corrupted export), would serve more or fewer bytes than it
    says: it is reported, not stored."""
    sid = tk.create_session(actor, id="u").value.id
    tk.append_message(actor, sid, {"role": "user", "content": "x"})
    lines = _export(tk, actor)
    sha = tk.blobs.put([b"abc"], max_bytes=1 << 20).sha256
    row = {
        "id": "up-1",
        "filename": "short.bin",
        "media_type": "application/octet-stream",
        "size": 5,
        "sha256": sha,
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    lines.append({"type": "record", "table": "uploads", "data": row})
    tk.delete_session(actor, sid)
    tk.purge_session(actor, sid)
    report = run(tk, actor, "threadkeep", _write(tmp_path / "e.jsonl", lines))
    assert report.count("created") == 1 and report.failed == []
    assert any("up-1 (short.bin): the export gives it 5 bytes" in r for _, r in report.skipped)
    assert tk.list_uploads(actor, sid) == []


def test_garbage_collection_while_an_import_runs_keeps_the_bytes_of_its_uploads(
    tk: Threadkeep, actor: Actor, tmp_path: Path, monkeypatch: Any
) -> None:
    """An exported upload is imported when the blob store holds its bytes (the
    operator copied the blobs beside the export, docs/blobs.md). The import
    only asked ``exists`` while it read the source; a garbage collection
    between that and the import's commit (``serve`` runs one on its own) saw
    the bytes unreferenced and old, and deleted them: the upload row was
    stored, counted and reported imported, naming bytes that were gone. The
    import now touches the bytes (``BlobStore.touch``): the protection the
    blob contract gives an upload whose row is not written yet."""
    data = b"the bytes of an upload\n"
    sid = tk.create_session(actor, id="moved").value.id
    tk.append_message(actor, sid, {"role": "user", "content": "x"})
    sha = tk.upload(actor, sid, [data], filename="mine.txt").value.sha256
    lines = _export(tk, actor)
    tk.delete_session(actor, sid)
    tk.purge_session(actor, sid)  # as if the export came from another store,
    tk.blobs.put([data], max_bytes=1 << 20)  # and its blobs were copied beside it
    _age_blob(tk, sha)
    _between_reading_and_writing(monkeypatch, tk.collect_garbage)  # the default grace: an hour
    _imported_with_its_bytes(tk, actor, sid, _write(tmp_path / "e.jsonl", lines), data)


def test_an_erasure_while_an_import_runs_refuses_the_import_rather_than_lose_its_bytes(
    tk: Threadkeep, actor: Actor, other_actor: Actor, tmp_path: Path, monkeypatch: Any
) -> None:
    """Another user holds the same bytes; the import has touched them; that
    user is erased before the import writes. The erasure's cutoff is the
    moment it starts, so the blob is old to it, and no committed row uses it:
    it goes. The import then writes its rows under the blob's lock, finds
    the bytes gone, and is refused: no upload row without its bytes."""
    data = b"the bytes both users hold\n"
    theirs = tk.create_session(other_actor).value.id
    sha = tk.upload(other_actor, theirs, [data], filename="theirs.txt").value.sha256
    sid = tk.create_session(actor, id="moved").value.id
    tk.append_message(actor, sid, {"role": "user", "content": "x"})
    tk.upload(actor, sid, [data], filename="mine.txt")
    lines = _export(tk, actor)
    tk.delete_session(actor, sid)
    tk.purge_session(actor, sid)
    assert tk.blobs.exists(sha)
    _between_reading_and_writing(monkeypatch, lambda: tk.erase_user(other_actor.user_id))

    report = run(tk, actor, "threadkeep", _write(tmp_path / "e.jsonl", lines))

    assert len(report.failed) == 1 and "were deleted while" in report.failed[0][1]
    assert not tk.blobs.exists(sha)
    # Nothing of the session was written: no row names bytes that are gone.
    with pytest.raises(SessionNotFound):
        tk.get_session(actor, sid)
    counts = tk.user_row_counts(actor.user_id)
    assert counts.get("uploads", 0) == counts.get("sessions", 0) == 0


def _between_reading_and_writing(monkeypatch: Any, action: Callable[[], object]) -> None:
    """Run ``action`` once the import has read its source (and touched the
    blobs its uploads name) and before it writes anything."""
    from threadkeep.service.imports import ImportOps

    plans = ImportOps._plans

    def plans_then_act(self: Any, *args: Any) -> Any:
        out = plans(self, *args)
        action()
        return out

    monkeypatch.setattr(ImportOps, "_plans", plans_then_act)


def _imported_with_its_bytes(
    tk: Threadkeep, actor: Actor, sid: str, export: Path, data: bytes
) -> None:
    report = run(tk, actor, "threadkeep", export)
    assert report.failed == [] and report.totals("created").uploads == 1
    (upload,) = tk.list_uploads(actor, sid)
    assert b"".join(tk.open_upload(actor, upload.id).chunks) == data

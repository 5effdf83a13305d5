"""Generated messy inputs: malformed lines, orphan parents, cycles, duplicate
lines, huge fields, non-UTF-8 bytes. Whatever the input: no crash, every
failure names its file and line, and each source session is either stored
whole (the database's counts equal the source's) or not at all."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import row_counts, shared_store_fixture
from threadkeep import Actor, Threadkeep
from threadkeep.config import Limits
from threadkeep.errors import SessionNotFound
from threadkeep.importers import FORMATS, run_import
from threadkeep.importers.run import source_counts, stored_counts
from threadkeep.store import tables

store = shared_store_fixture("import-props")
LIMIT = 4000  # a small message limit, so "huge" fields stay cheap to generate

UUIDS = [f"u{i}" for i in range(8)]

record = st.fixed_dictionaries(
    {
        "uuid": st.sampled_from(UUIDS),
        "parent": st.one_of(st.none(), st.sampled_from([*UUIDS, "dangling"])),
        "type": st.sampled_from(["user", "assistant", "assistant", "system", "attachment"]),
        "text": st.one_of(
            st.text(max_size=30),
            st.just("x" * (LIMIT + 10)),  # over the limit: TooLarge for that session
            st.just("nul \x00 and lone \ud800"),  # repaired to U+FFFD
        ),
        "tool": st.sampled_from([None, "toolu_1", "toolu_2"]),
        "mutation": st.sampled_from(
            ["none"] * 6 + ["truncate", "non_utf8", "duplicate", "not_object"]
        ),
    }
)


def render(rec: dict[str, Any], session: str) -> list[bytes]:
    body: dict[str, Any] = {
        "type": rec["type"],
        "uuid": rec["uuid"],
        "parentUuid": rec["parent"],
        "sessionId": session,
        "timestamp": "2025-01-01T00:00:00.000Z",
    }
    if rec["type"] == "user":
        content: Any = rec["text"]
        if rec["tool"]:
            content = [{"type": "tool_result", "tool_use_id": rec["tool"], "content": rec["text"]}]
        body["message"] = {"role": "user", "content": content}
    elif rec["type"] == "assistant":
        blocks: list[Any] = [{"type": "text", "text": rec["text"]}]
        if rec["tool"]:
            blocks.append({"type": "tool_use", "id": rec["tool"], "name": "Bash", "input": {}})
        body["message"] = {"role": "assistant", "id": "msg", "content": blocks}
    else:
        body["subtype"] = "informational"
    raw = json.dumps(body).encode()
    m = rec["mutation"]
    if m == "truncate":
        return [raw[: len(raw) // 2]]
    if m == "non_utf8":
        return [raw[:10] + b"\xff\xfe" + raw[10:]]
    if m == "duplicate":
        return [raw, raw]
    if m == "not_object":
        return [b"[1, 2, 3]"]
    return [raw]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=st.lists(st.lists(record, min_size=1, max_size=8), min_size=1, max_size=3))
def test_messy_claude_code_files_import_whole_or_not_at_all(
    store: Threadkeep, files: list[list[dict[str, Any]]]
) -> None:
    tk = Threadkeep(store.engine, Limits(max_message_bytes=LIMIT, max_json_bytes=LIMIT))
    me = Actor(tk.create_user("p", id=f"p-{uuid.uuid4()}").value.id)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, recs in enumerate(files):
            lines = [ln for rec in recs for ln in render(rec, f"s{i}")]
            (root / f"s{i}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        before = row_counts(tk)
        report = run_import(
            tk,
            me,
            FORMATS["claude-code"].read(root, me.user_id),
            format="claude-code",
            path=str(root),
            verify=True,
        )
        stored = 0
        for r in report.sessions:  # --hypothesis-show-statistics: which paths ran
            event(r.status + ": " + (r.error or "")[:40])
        for result in report.sessions:
            if result.status == "failed":
                assert " line " in (result.error or "") or "line" in result.source
                if result.session_id:
                    try:
                        tk.get_session(me, result.session_id)
                    except SessionNotFound:
                        pass
                    else:  # pragma: no cover - the assertion below reports it
                        raise AssertionError(f"half-imported: {result}")
            else:
                assert result.status == "created"
                assert result.source_counts == result.stored_counts, result
                stored += result.counts.messages
        # Nothing else was written: the message rows are exactly those created.
        after = row_counts(tk)
        assert after["messages"] - before["messages"] == stored
        for where, reason in report.failed:
            assert where and reason
        # And a second run of the same files changes nothing.
        again = run_import(
            tk,
            me,
            FORMATS["claude-code"].read(root, me.user_id),
            format="claude-code",
            path=str(root),
        )
        assert again.count("created") == again.count("updated") == 0
        assert row_counts(tk) == after


def test_a_cycle_in_the_parent_chain_fails_the_session_with_its_line(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    lines = [
        {
            "type": "user",
            "uuid": "a",
            "parentUuid": "b",
            "message": {"role": "user", "content": "x"},
        },
        {
            "type": "user",
            "uuid": "b",
            "parentUuid": "a",
            "message": {"role": "user", "content": "y"},
        },
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (tmp_path / "ok.jsonl").write_text(
        json.dumps(
            {
                "type": "user",
                "uuid": "z",
                "parentUuid": None,
                "sessionId": "ok",
                "message": {"role": "user", "content": "fine"},
            }
        )
        + "\n"
    )
    before = row_counts(tk)
    report = run_import(
        tk,
        actor,
        FORMATS["claude-code"].read(tmp_path, actor.user_id),
        format="claude-code",
        path=str(tmp_path),
    )
    assert report.failed == [("c.jsonl line 1", "cycle in the parentUuid chain at a")]
    assert report.count("created") == 1
    assert row_counts(tk)["messages"] == before["messages"] + 1


def test_a_bad_line_in_the_middle_fails_only_its_session(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    good = {
        "type": "user",
        "uuid": "a",
        "parentUuid": None,
        "message": {"role": "user", "content": "x"},
    }
    (tmp_path / "bad.jsonl").write_bytes(
        json.dumps(good).encode() + b"\n{not json\n" + json.dumps({**good, "uuid": "b"}).encode()
    )
    (tmp_path / "good.jsonl").write_text(json.dumps(good) + "\n")
    before = row_counts(tk)
    report = run_import(
        tk,
        actor,
        FORMATS["claude-code"].read(tmp_path, actor.user_id),
        format="claude-code",
        path=str(tmp_path),
    )
    assert [w for w, _ in report.failed] == ["bad.jsonl line 2"]
    assert "not valid JSON" in report.failed[0][1]
    assert report.count("created") == 1
    assert row_counts(tk)["messages"] == before["messages"] + 1


def test_source_and_stored_counts_agree_after_a_chatgpt_import(
    tk: Threadkeep, actor: Actor
) -> None:
    data = Path(__file__).parent / "data" / "chatgpt"
    sessions = [s for s in FORMATS["chatgpt"].read(data, actor.user_id) if hasattr(s, "branches")]
    for s in sessions:
        tk.import_session(actor, s)  # type: ignore[arg-type]
        assert source_counts(s) == stored_counts(tk, actor, s)  # type: ignore[arg-type]


def _big_chat(path: Path, n: int, bad_at: int | None) -> None:
    messages = [
        {"role": "wizard" if i == bad_at else ("user", "assistant")[i % 2], "content": f"m{i}"}
        for i in range(n)
    ]
    path.write_text(json.dumps({"id": "big", "title": "Big", "messages": messages}))


def test_a_bad_record_after_change_rows_were_spilled_rolls_back_everything(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    # 1,200 messages: the first chunks' rows and change rows are written
    # before the bad record at 1,100 is read; all of it must go.
    _big_chat(tmp_path / "chat-big.json", 1200, bad_at=1100)
    before = row_counts(tk)
    report = run_import(
        tk,
        actor,
        FORMATS["legacy-json"].read(tmp_path, actor.user_id),
        format="legacy-json",
        path=str(tmp_path),
    )
    assert [w for w, _ in report.failed] == ["chat-big.json messages[1100]"]
    assert row_counts(tk) == before


def test_a_long_import_logs_every_row_once_with_contiguous_offsets(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    _big_chat(tmp_path / "chat-big.json", 1200, bad_at=None)
    before = row_counts(tk)
    report = run_import(
        tk,
        actor,
        FORMATS["legacy-json"].read(tmp_path, actor.user_id),
        format="legacy-json",
        path=str(tmp_path),
    )
    assert report.failed == []
    tk.engine.prepare_changes_read()
    with tk.engine.sa_engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.changes.c.log_offset, tables.changes.c.txid, tables.changes.c.op)
            .where(tables.changes.c.log_offset > before["log_state.last_offset"])
            .order_by(tables.changes.c.log_offset)
        ).all()
    offsets = [r.log_offset for r in rows]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert len({r.txid for r in rows}) == 1  # one transaction
    assert len(rows) == 1 + 1200 + 1  # session insert, messages, session counters
    assert row_counts(tk)["messages"] == before["messages"] + 1200


def test_a_transcript_of_only_a_summary_is_reported_not_imported(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    (tmp_path / "s.jsonl").write_text('{"type":"summary","summary":"x","leafUuid":"l"}\n')
    before = row_counts(tk)
    report = run_import(
        tk,
        actor,
        FORMATS["claude-code"].read(tmp_path, actor.user_id),
        format="claude-code",
        path=str(tmp_path),
    )
    assert report.sessions == [] and report.failed == []
    assert report.skipped == [
        ("s.jsonl", "no messages or events (only summary or title records): not imported")
    ]
    assert row_counts(tk) == before


def test_a_long_import_beside_concurrent_appends_keeps_one_gapless_log(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    import threading

    _big_chat(tmp_path / "chat-big.json", 1500, bad_at=None)
    other = tk.create_session(actor, id="busy").value.id
    tk.engine.prepare_changes_read()  # PostgreSQL numbers committed rows lazily
    start = row_counts(tk)["log_state.last_offset"]

    def appender() -> None:
        for i in range(100):
            tk.append_message(actor, other, {"role": "user", "content": f"x{i}"})

    t = threading.Thread(target=appender)
    t.start()
    report = run_import(
        tk,
        actor,
        FORMATS["legacy-json"].read(tmp_path, actor.user_id),
        format="legacy-json",
        path=str(tmp_path),
    )
    t.join()
    assert report.failed == []
    tk.engine.prepare_changes_read()
    with tk.engine.sa_engine.connect() as conn:
        offsets = (
            conn.execute(
                sa.select(tables.changes.c.log_offset)
                .where(tables.changes.c.log_offset > start)
                .order_by(tables.changes.c.log_offset)
            )
            .scalars()
            .all()
        )
    # 100 appends log 2 rows each (message, session); the import 1 + 1500 + 1.
    assert offsets == list(range(start + 1, start + 1 + 200 + 1502))
    assert tk.count_messages(actor, other) == 100


def _line(uid: str, parent: str | None, content: Any = None, kind: str = "user") -> str:
    rec: dict[str, Any] = {
        "type": kind,
        "uuid": uid,
        "parentUuid": parent,
        "sessionId": "g",
        "timestamp": "2025-01-01T00:00:00Z",
    }
    if kind == "assistant":
        rec["message"] = {"role": "assistant", "id": uid, "content": content}
    elif kind == "user":
        rec["message"] = {"role": "user", "content": content if content is not None else uid}
    else:
        rec["subtype"] = "informational"
    return json.dumps(rec) + "\n"


def _claude(tk: Threadkeep, actor: Actor, root: Path, dry_run: bool = False) -> Any:
    return run_import(
        tk,
        actor,
        FORMATS["claude-code"].read(root, actor.user_id),
        format="claude-code",
        path=str(root),
        dry_run=dry_run,
        verify=not dry_run,
    )


def test_reimporting_a_transcript_that_grew_adds_what_is_new(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    call = [{"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"c": "ls"}}]
    result = [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "a.txt"}]
    path = tmp_path / "g.jsonl"
    path.write_text(_line("a", None) + _line("b", "a", call, "assistant"))
    first = _claude(tk, actor, tmp_path)
    assert first.count("created") == 1
    (sid,) = [s.session_id for s in first.sessions]
    (started,) = tk.list_tool_events(actor, sid)
    assert started.status.value == "started"  # no result yet
    with path.open("a") as f:  # the transcript goes on: a note, the result, a reply
        f.write(_line("n", "b", kind="system") + _line("c", "b", result) + _line("d", "c"))
    dry = _claude(tk, actor, tmp_path, dry_run=True)
    assert dry.count("would_update") == 1 and dry.totals("would_update").messages == 2
    grown = _claude(tk, actor, tmp_path)
    assert grown.count("updated") == 1 and grown.verified is True
    assert grown.totals("updated").messages == 2
    assert [m.content for m in tk.get_history(actor, sid)] == ["a", "", "a.txt", "d"]
    (done,) = tk.list_tool_events(actor, sid)
    assert (done.id, done.status.value, done.version) == (started.id, "succeeded", 2)
    assert [e.kind for e in tk.list_timeline_events(actor, sid)] == ["claude.system.informational"]
    before = row_counts(tk)
    again = _claude(tk, actor, tmp_path)
    assert again.count("unchanged") == 1 and row_counts(tk) == before


def test_a_source_that_grew_a_branch_gets_the_branch(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(_line("a", None) + _line("b", "a"))
    (first,) = _claude(tk, actor, tmp_path).sessions
    path.write_text(_line("a", None) + _line("x", "a") + _line("b", "a") + _line("c", "b"))
    report = _claude(tk, actor, tmp_path)
    assert report.count("updated") == 1 and report.verified is True
    assert [m.content for m in tk.get_history(actor, first.session_id)] == ["a", "b", "c"]
    (branch,) = tk.list_branches(actor, first.session_id)
    assert [m.content for m in tk.get_history(actor, branch.id)] == ["a", "x"]


def test_a_source_that_changed_otherwise_is_refused_and_nothing_written(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text(_line("a", None) + _line("b", "a"))
    _claude(tk, actor, tmp_path)
    # A rewind since: the newest path is a-x-y now, and b moved to a branch.
    path.write_text(_line("a", None) + _line("b", "a") + _line("x", "a") + _line("y", "x"))
    before = row_counts(tk)
    report = _claude(tk, actor, tmp_path)
    assert report.count("created") == 0 and len(report.failed) == 1
    assert "changed since it was imported" in report.failed[0][1]
    assert row_counts(tk) == before


def _webui_chat(path: Path, answer: str, done: bool) -> None:
    messages = {
        "q": {"id": "q", "parentId": None, "childrenIds": ["a"], "role": "user", "content": "q?"},
        "a": {
            "id": "a",
            "parentId": "q",
            "childrenIds": [],
            "role": "assistant",
            "content": answer,
            "done": done,
            "timestamp": 1700000005,
        },
    }
    row = {"id": "c1", "title": "T", "chat": {"history": {"currentId": "a", "messages": messages}}}
    path.write_text(json.dumps([row]))


def test_a_stored_message_whose_source_changed_is_refused_not_kept_stale(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    """An Open WebUI export taken while a reply was streaming holds it cut
    short (``done: false``); the next export holds it whole, under the same
    id. A re-import that compares only ids called that ``unchanged`` (and
    verified it) while the database kept the cut-off reply: the rest of the
    answer was lost without a word. A stored message that differs from the
    source is a source that changed: refused, named, nothing written."""
    path = tmp_path / "chat-export-1.json"

    def webui_import() -> Any:
        source = FORMATS["open-webui"].read(path, actor.user_id)
        return run_import(tk, actor, source, format="open-webui", path=str(path), verify=True)

    _webui_chat(path, "The answer is", done=False)
    first = webui_import()
    assert first.count("created") == 1
    (sid,) = [s.session_id for s in first.sessions]
    _webui_chat(path, "The answer is 42, and here is why: ...", done=True)
    before = row_counts(tk)
    again = webui_import()
    assert again.count("unchanged") == 0 and len(again.failed) == 1
    assert "changed since it was imported" in again.failed[0][1]
    assert "message a" in again.failed[0][1] or "message a" in again.failed[0][0]
    assert row_counts(tk) == before
    assert [m.content for m in tk.get_history(actor, sid)] == ["q?", "The answer is"]

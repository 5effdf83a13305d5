"""Each importer on its hand-written fixture, on both engines: what is
created, how branches and tool calls map, what is reported as skipped, that a
second run changes nothing and that a dry run writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import apply_changes, row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.importers import FORMATS, detect, run_import
from threadkeep.importers.run import ImportReport
from threadkeep.sync.shapes import Shape, change_messages, snapshot_messages

DATA = Path(__file__).parent / "data"


def run(tk: Threadkeep, actor: Actor, fmt: str, path: Path, **kw: bool) -> ImportReport:
    return run_import(
        tk, actor, FORMATS[fmt].read(path, actor.user_id), format=fmt, path=str(path), **kw
    )


def roots(tk: Threadkeep, actor: Actor) -> list:  # type: ignore[type-arg]
    items = tk.list_sessions(actor, limit=1000).items
    return sorted((s for s in items if s.parent_session_id is None), key=lambda s: s.created_at)


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("claude-project", "claude-code"),
        ("chatgpt", "chatgpt"),
        ("chatgpt/conversations.json", "chatgpt"),
        ("open-webui/chat-export-1718000000000.json", "open-webui"),
        ("legacy", "legacy-json"),
        ("localstorage.json", "localstorage"),
    ],
)
def test_each_fixture_is_detected_as_its_format(path: str, fmt: str) -> None:
    assert detect(DATA / path) == fmt


def test_claude_code_maps_tree_tools_sidechain_and_reports_the_rest(
    tk: Threadkeep, actor: Actor
) -> None:
    report = run(tk, actor, "claude-code", DATA / "claude-project", verify=True)
    assert report.failed == []
    assert report.verified is True
    main, agent = sorted(roots(tk, actor), key=lambda s: s.metadata.get("sidechain", False))
    assert main.title == "Rename load_cfg"
    assert main.metadata["cwd"] == "/home/ada/proj" and main.metadata["git_branch"] == "main"
    history = tk.get_history(actor, main.id)
    # u1 a1 a2 r1 r2 a3 r3 a4 r4 a5, then the newest prompt's path across /compact.
    assert [m.content for m in history][-5:] == [
        "Actually, revert it and keep load_cfg as an alias.",
        "Kept load_cfg = load_config.",
        "This session is being continued from a previous conversation that ran out of context.",
        "Thanks, ship it.",
        "Shipped.",
    ]
    assert len(history) == 15 and history[0].content.endswith("café ☕")
    assert [m.role.value for m in history[3:5]] == ["tool", "tool"]
    # The split response counts its usage once.
    assert (history[1].output_tokens, history[2].output_tokens) == (50, None)
    (branch,) = tk.list_branches(actor, main.id)
    assert branch.fork_seq == 10
    assert [m.content for m in tk.get_history(actor, branch.id)][10:] == [
        "Fix the failing test too.",
        "Fixed the test.",
    ]
    tools = {t.name: t for t in tk.list_tool_events(actor, main.id)}
    assert set(tools) == {"Grep", "TodoWrite", "Bash", "Task"}
    assert tools["Grep"].message_id == history[2].id  # the assistant line holding the call
    assert tools["Grep"].output["result"]["filenames"] == ["src/cfg.py", "src/app.py"]
    assert tools["Bash"].status.value == "failed" and "1 failed" in (tools["Bash"].error or "")
    events = {e.kind: e for e in tk.list_timeline_events(actor, main.id)}
    assert set(events) == {
        "claude.file-history-snapshot",  # before any message: a session-level event
        "claude.attachment",
        "claude.system.turn_duration",
        "claude.ai-title",
        "claude.system.compact_boundary",
        "claude.queue-operation",
    }
    assert events["claude.file-history-snapshot"].message_id is None
    assert events["claude.attachment"].message_id == history[4].id  # its parent, r2
    assert agent.metadata["sidechain"] is True
    assert agent.metadata["parent_session_id"] == main.id
    assert agent.metadata["tool_use_id"] == "toolu_task"
    reasons = " | ".join(f"{w}: {r}" for w, r in report.skipped)
    assert "line 25: uuid a10 already read at line 24" in reasons
    assert "line 26: last line unreadable" in reasons
    assert "not stored" not in reasons
    # The session record: the last TodoWrite list, the cwd / branch, the summary.
    todos = tk.list_todos(actor, main.id)
    assert [(t.content, t.status.value, t.active_form) for t in todos] == [
        ("Rename", "in_progress", "Renaming"),
        ("Run tests", "pending", "Running tests"),
    ]
    binding = tk.get_active_repo_binding(actor, main.id)
    assert binding is not None
    assert (binding.path, binding.branch, binding.bound_at) == (
        "/home/ada/proj",
        "main",
        main.created_at,
    )
    assert tk.get_summary(actor, main.id).summary == "Rename the config loader"


def test_chatgpt_current_node_is_the_main_line_and_the_tool_call_is_linked(
    tk: Threadkeep, actor: Actor
) -> None:
    report = run(tk, actor, "chatgpt", DATA / "chatgpt")
    assert report.failed == [
        (
            "conversations.json conversation conv-broken",
            "no message tree (mapping): a corrupted entry, not imported",
        )
    ]
    (s,) = roots(tk, actor)
    assert (s.title, s.model, s.provider) == ("Mortgage maths", "gpt-4o", "openai")
    history = tk.get_history(actor, s.id)
    assert [m.role.value for m in history] == ["system", "user", "assistant", "tool", "assistant"]
    assert history[0].metadata["hidden"] is True
    assert history[0].created_at == s.created_at  # no create_time: the conversation's
    assert history[-1].content.startswith("Exactly 1,073.64")
    (tool,) = tk.list_tool_events(actor, s.id)
    assert (tool.name, tool.message_id) == ("python", history[2].id)
    assert tool.output["text"] == "1073.64"
    (branch,) = tk.list_branches(actor, s.id)
    assert branch.fork_seq == 2
    assert tk.get_history(actor, branch.id)[-1].content == "Roughly 1,050 € a month."


def test_open_webui_branches_tools_and_converted_chat(tk: Threadkeep, actor: Actor) -> None:
    report = run(tk, actor, "open-webui", DATA / "open-webui" / "chat-export-1718000000000.json")
    assert report.failed == []
    by_title = {s.title: s for s in roots(tk, actor)}
    s = by_title["Index advice"]
    assert s.pinned and s.tags == ["postgres"]
    history = tk.get_history(actor, s.id)
    assert [m.id for m in history] == [m.id for m in history]  # ids are stable strings
    assert history[-1].status.value == "incomplete"
    assert history[-1].metadata["error"] == {"content": "connection reset"}
    tools = sorted(tk.list_tool_events(actor, s.id), key=lambda t: t.call_id or "")
    assert [(t.call_id, t.input) for t in tools] == [
        ("call_1", {"sql": "EXPLAIN SELECT 1"}),
        ("call_2", {"sql": "SELECT 2"}),
    ]
    (parallel,) = tk.list_branches(actor, s.id)
    assert parallel.fork_seq == 1
    assert tk.get_history(actor, parallel.id)[-1].model == "llama3.1:8b"
    converted = by_title["Converted"]
    assert converted.archived
    # k3 is claimed only by k1's childrenIds, so it is k1's child, not k2's.
    assert [m.content for m in tk.get_history(actor, converted.id)] == [
        "Haiku about WAL?",
        "Quiet \ufffddurable",
        "In Japanese?",
    ]
    assert any("U+FFFD" in r for _, r in report.skipped)
    assert "upload" in " ".join(r for _, r in report.skipped)


def test_legacy_json_accepts_aliases_and_fails_only_the_bad_chat(
    tk: Threadkeep, actor: Actor
) -> None:
    report = run(tk, actor, "legacy-json", DATA / "legacy")
    assert [w for w, _ in report.failed] == ["chat-43.json[1] messages[1]"]
    assert "unknown role 'wizard'" in report.failed[0][1]
    by_title = {s.title: s for s in roots(tk, actor)}
    assert set(by_title) == {"Trip plans", "Good"}
    trip = by_title["Trip plans"]
    assert trip.starred and trip.tags == ["travel"]
    assert trip.metadata["legacy"] == {"color": "blue"}
    a, b = tk.get_history(actor, trip.id)
    assert (a.role.value, b.role.value, b.content) == (
        "user",
        "assistant",
        "Lisbon is lovely in May.",
    )
    assert b.created_at.isoformat() == "2024-04-01T09:00:04+00:00"
    assert b.metadata["legacy"] == {"rating": 5}
    (t,) = tk.list_tool_events(actor, trip.id)
    assert (t.name, t.message_id, t.duration_ms) == ("weather", b.id, 1000)
    assert not any("not stored" in r for _, r in report.skipped)
    (todo,) = tk.list_todos(actor, trip.id)
    assert (todo.content, todo.status.value, todo.active_form) == (
        "Book flights",
        "pending",
        "Booking flights",
    )
    assert tk.get_summary(actor, trip.id).summary == "Lisbon in May"


def test_local_storage_imports_domain_keys_and_skips_preferences(
    tk: Threadkeep, actor: Actor
) -> None:
    report = run(tk, actor, "localstorage", DATA / "localstorage.json")
    assert report.failed == []
    titles = sorted(s.title or "" for s in roots(tk, actor))
    assert titles == ["Groceries", "Only meta"]
    skipped = {w.split("key ")[1]: r for w, r in report.skipped if "key " in w}
    assert set(skipped) == {
        "'theme'",
        "'sidebarWidth'",
        "'recentSearches'",
        "'myapp:session-token'",
    }
    assert all("not imported" in r for r in skipped.values())
    only_meta = next(s for s in roots(tk, actor) if s.title == "Only meta")
    assert [m.content for m in tk.get_history(actor, only_meta.id)] == ["second chat"]


FIXTURES = [
    ("claude-code", "claude-project"),
    ("chatgpt", "chatgpt"),
    ("open-webui", "open-webui/chat-export-1718000000000.json"),
    ("legacy-json", "legacy"),
    ("localstorage", "localstorage.json"),
]


@pytest.mark.parametrize(("fmt", "path"), FIXTURES)
def test_dry_run_writes_nothing_and_a_second_import_changes_nothing(
    tk: Threadkeep, actor: Actor, fmt: str, path: str
) -> None:
    before = row_counts(tk)
    dry = run(tk, actor, fmt, DATA / path, dry_run=True)
    assert row_counts(tk) == before
    first = run(tk, actor, fmt, DATA / path)
    assert dry.totals("would_create") == first.totals("created")
    assert first.count("created") >= 1
    after_first = row_counts(tk)
    second = run(tk, actor, fmt, DATA / path)
    assert row_counts(tk) == after_first
    assert second.count("created") == 0
    assert second.count("unchanged") == first.count("created")


@pytest.mark.parametrize(("fmt", "path"), FIXTURES)
def test_a_sync_client_following_the_import_holds_what_was_imported(
    tk: Threadkeep, actor: Actor, fmt: str, path: str
) -> None:
    """An import inserts each session and then sets its counters: that update
    must log only what it changed. With the whole row, its ``deleted_at`` told
    sync the session had just left the trash, and a client following the
    sessions shape got a second insert of a key it held."""
    shape = Shape("sessions", actor.user_id)
    start = tk.shape_snapshot(actor, "sessions")
    run(tk, actor, fmt, DATA / path)
    state: dict[str, dict[str, Any]] = {}
    apply_changes(state, list(snapshot_messages(shape, start.rows)))
    got = tk.shape_changes(actor, "sessions", start.offset, limit=1000)
    apply_changes(state, change_messages(shape, got.changes))  # fails on a second insert
    rows = tk.shape_snapshot(actor, "sessions").rows
    assert rows and state == {m["key"]: m["value"] for m in snapshot_messages(shape, rows)}


def test_the_same_source_for_two_users_gives_each_their_own_sessions(
    tk: Threadkeep, actor: Actor, other_actor: Actor
) -> None:
    run(tk, actor, "chatgpt", DATA / "chatgpt")
    report = run(tk, other_actor, "chatgpt", DATA / "chatgpt")
    assert report.count("created") == 1
    mine, theirs = roots(tk, actor), roots(tk, other_actor)
    assert len(mine) == len(theirs) == 1 and mine[0].id != theirs[0].id


def test_open_webui_very_old_chat_with_only_a_flat_message_list(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    rows = [
        {
            "id": "old",
            "title": "Old",
            "chat": {
                "messages": [
                    {"id": "1", "role": "user", "content": "a", "timestamp": 1700000000},
                    {"id": "2", "role": "assistant", "content": "b", "timestamp": 1700000005},
                ]
            },
        }
    ]
    path = tmp_path / "chat-export-1.json"
    path.write_text(json.dumps(rows))
    report = run(tk, actor, "open-webui", path)
    assert report.failed == []
    (s,) = roots(tk, actor)
    assert [m.content for m in tk.get_history(actor, s.id)] == ["a", "b"]


def test_chatgpt_cycle_fails_that_conversation_only(
    tk: Threadkeep, actor: Actor, tmp_path: Path
) -> None:
    def node(i: str, parent: str | None) -> dict[str, Any]:
        msg = {
            "id": i,
            "author": {"role": "user"},
            "content": {"content_type": "text", "parts": [i]},
        }
        return {"id": i, "parent": parent, "children": [], "message": msg}

    convs = [
        {"id": "loop", "mapping": {"r": node("r", None), "a": node("a", "b"), "b": node("b", "a")}},
        {"id": "fine", "mapping": {"r": node("r", None)}, "current_node": "r"},
    ]
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(convs))
    before = row_counts(tk)
    report = run(tk, actor, "chatgpt", path)
    assert report.failed == [
        ("conversations.json conversation loop node a", "cycle in the parent chain")
    ]
    assert report.count("created") == 1
    assert row_counts(tk)["sessions"] == before["sessions"] + 1


# ../shared beside the repository (CI), or two levels up (a git worktree).
_ROOT = Path(__file__).resolve().parents[2]
SHARED = (
    next(
        (p for p in (_ROOT.parent / "shared", _ROOT.parent.parent / "shared") if p.exists()),
        _ROOT.parent / "shared",
    )
    / "formats"
    / "samples"
)


@pytest.mark.skipif(not SHARED.exists(), reason="the shared format samples are not beside the repo")
@pytest.mark.parametrize(
    ("fmt", "sub", "sessions", "failed"),
    [
        ("claude-code", "claude-code", 2, 0),
        ("chatgpt", "chatgpt", 2, 1),
        ("open-webui", "open-webui/chat-export-1718200000000.json", 2, 0),
    ],
)
def test_the_shared_samples_import_and_verify(
    tk: Threadkeep, actor: Actor, fmt: str, sub: str, sessions: int, failed: int
) -> None:
    report = run(tk, actor, fmt, SHARED / sub, verify=True)
    assert report.count("created") == sessions and len(report.failed) == failed
    assert all(s.source_counts == s.stored_counts for s in report.sessions if s.source_counts)

"""Checks that the change log and the other views agree with the tables:
what a sync client following the log holds, and what search finds. Shared by
the properties that run random writes (contract/test_log_replay.py,
guarantees/test_crash.py, test_backup.py)."""

from __future__ import annotations

from typing import Any
from unittest import mock

from conftest import apply_changes
from random_writes import WORD
from threadkeep import Actor, Session, Threadkeep
from threadkeep.model.sync import ShapeSnapshot
from threadkeep.store import sessions as session_q
from threadkeep.sync.shapes import Shape, change_messages, snapshot_messages


def state_of(shape: Shape, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A shape's rows as a client holds them after taking them as a snapshot."""
    state: dict[str, dict[str, Any]] = {}
    apply_changes(state, list(snapshot_messages(shape, rows)))
    return state


def followed(tk: Threadkeep, actor: Actor, shape: Shape, start: ShapeSnapshot) -> dict[str, Any]:
    """The start snapshot plus every change after it, page by page."""
    state = state_of(shape, start.rows)
    after = start.offset
    while True:
        got = tk.shape_changes(actor, shape.table, after, session_id=shape.session_id, limit=7)
        apply_changes(state, change_messages(shape, got.changes))
        if got.complete:
            return state
        after = got.changes[-1].offset


def differences(followed: dict[str, Any], table: dict[str, Any]) -> list[tuple[str, ...]]:
    """(key, column, the follower's value, the table's value) wherever they differ."""
    out: list[tuple[str, ...]] = []
    for key in sorted(set(followed) | set(table)):
        a, b = followed.get(key), table.get(key)
        if a is None or b is None:
            out.append((key, "<row>", repr(a is not None), repr(b is not None)))
        elif a != b:
            out += [
                (key, c, repr(a.get(c)), repr(b.get(c)))
                for c in sorted(set(a) | set(b))
                if a.get(c) != b.get(c)
            ]
    return out


def _search_ids(tk: Threadkeep, actor: Actor, word: str) -> set[str]:
    """The ids of every message search finds for ``word``, trash included."""
    found: set[str] = set()
    offset: int | None = 0
    while offset is not None:
        page = tk.search(
            actor, word, kinds=["messages"], include_trashed=True, limit=100, offset=offset
        )
        found |= {hit.id for hit in page.items}
        offset = page.next_offset
    return found


def assert_log_rebuilds(
    tk: Threadkeep, actor: Actor, start: dict[Shape, ShapeSnapshot], context: object = None
) -> None:
    """For each of the actor's shapes: its start snapshot plus every change
    logged since equals the table now."""
    for shape, snapshot in start.items():
        want = state_of(shape, tk.shape_snapshot(actor, shape.table).rows)
        assert differences(followed(tk, actor, shape, snapshot), want) == [], (shape, context)


def assert_views_agree(tk: Threadkeep, actor: Actor, context: object = None) -> None:
    """The other views of the actor's messages agree with the rows: search
    finds every message written with WORD (none of them streams), the SQLite
    index matches its tables, each session's history is seq 1..head, and
    each tag's view of the session list (session_tags) is the list's
    sessions that carry the tag, in the list's order, and so is a title
    text's view for a few texts taken from the titles: as the list reads it,
    and with no walk at all, through the engine's trigram index alone
    (SQLite's search_titles, PostgreSQL's search_title_grams)."""
    listed = all_pages(tk, actor, {})
    for tag in {t for s in listed for t in s.tags}:
        want = [s.id for s in listed if tag in s.tags]
        assert [s.id for s in all_pages(tk, actor, {"tag": tag})] == want, (tag, context)
    for text in sorted({s.title[-4:] for s in listed if s.title and len(s.title) >= 4})[:5]:
        want = [s.id for s in listed if text.casefold() in (s.title or "").casefold()]
        got = [s.id for s in all_pages(tk, actor, {"title_contains": text})]
        assert got == want, (text, context)
        with mock.patch.object(session_q, "WALK_WINDOW", 0):
            indexed = [s.id for s in all_pages(tk, actor, {"title_contains": text})]
        assert indexed == want, (text, "through the index", context)
    messages = tk.shape_snapshot(actor, "messages").rows
    wrote = {r["id"] for r in messages if WORD in (r["content"] or "")}
    assert _search_ids(tk, actor, WORD) == wrote, context
    checks = tk.check_search_index()
    assert all(c.ok for c in checks), (checks, context)
    for sid in {r["session_id"] for r in messages}:
        history = tk.get_history(actor, sid)
        seqs = [m.seq for m in history]
        if seqs != list(range(1, len(history) + 1)):
            s = tk.get_session(actor, sid)
            where = [(m.session_id, m.seq, m.role, m.status, m.content[:40]) for m in history]
            raise AssertionError(
                f"history of {sid} is not 1..head ({context}): parent "
                f"{s.parent_session_id} at {s.fork_seq}, head {s.head_seq}: {where}"
            )


def all_pages(tk: Threadkeep, actor: Actor, flt: dict[str, Any], limit: int = 100) -> list[Session]:
    """Every session of the list with filter ``flt``, page by page with the
    cursor, in the order the pages gave them."""
    found: list[Session] = []
    cursor = None
    while True:
        page = tk.list_sessions(actor, flt, limit=limit, cursor=cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor

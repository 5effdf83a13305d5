"""Full-text search: ranked hits with marked snippets over message text, tool
output and session titles, filtered, scoped to the actor, and current with every
write (the index is kept inside the writing transaction)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from contract_helpers import new_session, writes_nothing

from conftest import row_counts, write_past_the_index
from threadkeep import Actor, Threadkeep
from threadkeep.errors import InvalidInput, InvalidText, StoreError
from threadkeep.model.imports import ImportedMessage, ImportedSession
from threadkeep.model.search import SearchKind
from threadkeep.store import search as search_q
from threadkeep.store import tables


def hits(tk: Threadkeep, actor: Actor, query: str, **kw: Any) -> list[tuple[str, str]]:
    return [(h.kind.value, h.id) for h in tk.search(actor, query, **kw).items]


def ids(tk: Threadkeep, actor: Actor, query: str, **kw: Any) -> set[str]:
    return {h.id for h in tk.search(actor, query, **kw).items}


def say(tk: Threadkeep, actor: Actor, sid: str, content: str, role: str = "user") -> str:
    return tk.append_message(actor, sid, {"role": role, "content": content}).value.id


def test_finds_message_text_tool_output_and_titles_with_marked_snippets(
    tk: Threadkeep, actor: Actor
) -> None:
    s = new_session(tk, actor, title="Kubernetes rollout plans")
    mid = say(tk, actor, s.id, "How should the kubernetes rollout be staged?")
    ev = tk.start_tool_event(actor, s.id, {"name": "kubectl", "message_id": mid}).value
    tk.finish_tool_event(actor, ev.id, output={"stdout": "rollout of kubernetes complete", "n": 1})
    say(tk, actor, s.id, "unrelated words only")

    found = tk.search(actor, "kubernetes rollout")
    assert {(h.kind, h.id) for h in found.items} == {
        (SearchKind.SESSIONS, s.id),
        (SearchKind.MESSAGES, mid),
        (SearchKind.TOOL_EVENTS, ev.id),
    }
    assert found.next_offset is None
    by_kind = {h.kind: h for h in found.items}
    msg = by_kind[SearchKind.MESSAGES]
    assert (msg.session_id, msg.seq, msg.role, msg.session_title) == (
        s.id,
        1,
        "user",
        "Kubernetes rollout plans",
    )
    assert "<mark>kubernetes</mark> <mark>rollout</mark>" in msg.snippet
    tool = by_kind[SearchKind.TOOL_EVENTS]
    assert (tool.name, tool.message_id, tool.session_id) == ("kubectl", mid, s.id)
    assert "<mark>rollout</mark>" in tool.snippet and "<mark>kubernetes</mark>" in tool.snippet
    title = by_kind[SearchKind.SESSIONS]
    assert title.snippet == "<mark>Kubernetes</mark> <mark>rollout</mark> plans"
    assert all(isinstance(h.score, float) and h.score > 0 for h in found.items)


def test_words_are_stemmed_and_case_does_not_matter(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor)
    mid = say(tk, actor, s.id, "The migrations were Deployed to the café")
    assert ids(tk, actor, "migration deploying") == {mid}
    assert ids(tk, actor, "MIGRATIONS") == {mid}
    assert ids(tk, actor, "café") == {mid}
    # SQLite folds accents; PostgreSQL's 'english' configuration keeps them.
    assert ids(tk, actor, "cafe") == ({mid} if tk.dialect == "sqlite" else set())


def test_every_word_must_appear_and_the_better_match_ranks_first(
    tk: Threadkeep, actor: Actor
) -> None:
    s = new_session(tk, actor)
    filler = " ".join(f"word{i}" for i in range(120))
    weak = say(tk, actor, s.id, f"{filler} postgres {filler} vacuum {filler}")
    strong = say(tk, actor, s.id, "postgres vacuum: how postgres vacuum works")
    only_one = say(tk, actor, s.id, "postgres replication without the other word")
    ranked = [h.id for h in tk.search(actor, "postgres vacuum").items]
    assert ranked == [strong, weak]
    assert only_one not in ranked
    assert only_one in ids(tk, actor, "postgres")


def test_every_hit_of_a_page_gets_its_own_snippet(tk: Threadkeep, actor: Actor) -> None:
    # Snippets are read for a whole page at once, per kind of hit: each must
    # still land on its own hit, on both engines, whatever the kinds.
    s = new_session(tk, actor, title="needle session title")
    own = {say(tk, actor, s.id, f"needle word{i} here"): f"word{i}" for i in range(12)}
    tool = tk.start_tool_event(actor, s.id, {"name": "t", "input": {}}).value.id
    tk.finish_tool_event(actor, tool, output="needle tooloutput")
    own[tool] = "tooloutput"
    own[s.id] = "session"
    page = tk.search(actor, "needle", limit=50).items
    assert {h.id for h in page} == set(own)
    for h in page:
        assert own[h.id] in h.snippet and "<mark>needle</mark>" in h.snippet


def test_snippets_escape_everything_but_the_marks(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor, title="<img src=x onerror=alert(1)> exploit title")
    mid = say(tk, actor, s.id, "Try <b onclick=\"x()\">exploit</b> & 'quotes' here")
    found = {h.id: h.snippet for h in tk.search(actor, "exploit").items}
    snippet = found[mid]
    assert "<b" not in snippet and "&amp;" in snippet
    title_snippet = found[s.id]
    assert "<img" not in title_snippet
    for text in found.values():
        # After removing the marks, nothing that a browser would read as markup is left.
        rest = text.replace("<mark>", "").replace("</mark>", "")
        assert "<" not in rest and ">" not in rest and '"' not in rest
        assert "<mark>exploit</mark>" in text


def test_each_filter(tk: Threadkeep, actor: Actor) -> None:
    a = new_session(tk, actor, title="alpha", starred=True)
    b = new_session(tk, actor, title="beta")
    in_a = say(tk, actor, a.id, "needle from the user")
    reply_a = say(tk, actor, a.id, "needle in the reply", role="assistant")
    in_b = say(tk, actor, b.id, "needle over here")
    ev = tk.start_tool_event(actor, b.id, {"name": "grep", "output": "needle found"}).value
    everything = {in_a, reply_a, in_b, ev.id}
    assert ids(tk, actor, "needle") == everything

    assert ids(tk, actor, "needle", session_id=a.id) == {in_a, reply_a}
    assert ids(tk, actor, "needle", session_id=b.id) == {in_b, ev.id}
    # A role is a message's: tool events and titles have none.
    assert ids(tk, actor, "needle", role="assistant") == {reply_a}
    assert ids(tk, actor, "needle", starred=True) == {in_a, reply_a}
    assert ids(tk, actor, "needle", starred=False) == {in_b, ev.id}
    assert ids(tk, actor, "needle", kinds=["tool_events"]) == {ev.id}
    assert ids(tk, actor, "needle", kinds=[SearchKind.MESSAGES]) == {in_a, reply_a, in_b}
    assert ids(tk, actor, "alpha", kinds=["sessions"]) == {a.id}

    now = datetime.now(UTC)
    assert ids(tk, actor, "needle", since=now - timedelta(minutes=5)) == everything
    assert ids(tk, actor, "needle", since=now + timedelta(minutes=5)) == set()
    assert ids(tk, actor, "needle", until=now - timedelta(minutes=5)) == set()
    assert ids(tk, actor, "needle", until=now + timedelta(minutes=5)) == everything
    # A message written between two instants is inside [since, until).
    t0 = datetime.now(UTC)
    later = say(tk, actor, a.id, "needle written later")
    assert ids(tk, actor, "needle", since=t0) == {later}
    assert ids(tk, actor, "needle", until=t0) == everything


def test_pages_with_offset(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor)
    tk.append_messages(actor, s.id, [{"role": "user", "content": f"paged {i}"} for i in range(7)])
    first = tk.search(actor, "paged", limit=3)
    second = tk.search(actor, "paged", limit=3, offset=first.next_offset or 0)
    third = tk.search(actor, "paged", limit=3, offset=second.next_offset or 0)
    assert (first.next_offset, second.next_offset, third.next_offset) == (3, 6, None)
    seen = [h.id for page in (first, second, third) for h in page.items]
    assert len(seen) == len(set(seen)) == 7


def test_another_users_rows_never_appear(tk: Threadkeep, actor: Actor, other_actor: Actor) -> None:
    mine = new_session(tk, actor, title="secret plans")
    theirs = new_session(tk, other_actor, title="secret plans")
    my_msg = say(tk, actor, mine.id, "the secret launch code")
    say(tk, other_actor, theirs.id, "the secret launch code")
    ev = tk.start_tool_event(other_actor, theirs.id, {"name": "x", "output": "secret"}).value
    assert ids(tk, actor, "secret") == {mine.id, my_msg}
    assert ev.id not in ids(tk, actor, "secret")
    # Naming their session changes nothing: it is not the actor's.
    assert ids(tk, actor, "secret", session_id=theirs.id) == set()
    assert ids(tk, other_actor, "secret", session_id=mine.id) == set()
    assert my_msg not in ids(tk, other_actor, "secret launch code")


def test_trashed_sessions_are_left_out_unless_asked_for(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor, title="trashable")
    mid = say(tk, actor, s.id, "trashable content")
    tk.delete_session(actor, s.id)
    assert ids(tk, actor, "trashable") == set()
    assert ids(tk, actor, "trashable", include_trashed=True) == {s.id, mid}
    tk.restore_session(actor, s.id)
    assert ids(tk, actor, "trashable") == {s.id, mid}


def test_a_purged_session_leaves_nothing_in_the_index(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor, title="ephemeral")
    say(tk, actor, s.id, "ephemeral message")
    tk.start_tool_event(actor, s.id, {"name": "t", "output": {"text": "ephemeral output"}})
    tk.delete_session(actor, s.id)
    tk.purge_session(actor, s.id)
    assert ids(tk, actor, "ephemeral", include_trashed=True) == set()
    assert _index_entries(tk) == 0


def _index_entries(tk: Threadkeep) -> int:
    """Rows the index holds for anything (SQLite: the FTS tables' own counts)."""
    with tk.engine.sa_engine.connect() as conn:
        if tk.dialect == "postgresql":
            return sum(
                conn.execute(
                    sa.text(f"SELECT count(*) FROM {t} WHERE search_vector IS NOT NULL")
                ).scalar_one()
                for t in ("messages", "tool_events", "sessions")
            )
        total = 0
        for t in ("search_messages", "search_sessions"):
            # External content: the index's own document-size rows.
            total += conn.execute(sa.text(f"SELECT count(*) FROM {t}_docsize")).scalar_one()
        total += conn.execute(sa.text("SELECT count(*) FROM search_tool_events")).scalar_one()
        return int(total)


def test_updates_replace_what_is_indexed(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor, title="original heading")
    ev = tk.start_tool_event(actor, s.id, {"name": "build", "output": "compiling sources"}).value
    tk.update_session(actor, s.id, {"title": "renamed heading"})
    tk.update_tool_event(actor, ev.id, {"output": {"log": ["linking binaries"]}})
    assert ids(tk, actor, "original") == set()
    assert ids(tk, actor, "renamed heading") == {s.id}
    assert ids(tk, actor, "compiling") == set()
    assert ids(tk, actor, "linking binaries") == {ev.id}
    tk.update_session(actor, s.id, {"title": None})
    assert ids(tk, actor, "heading") == set()
    tk.finish_tool_event(actor, ev.id, error="segmentation fault")
    assert ids(tk, actor, "segmentation") == {ev.id}


def test_a_streaming_message_is_found_once_it_is_finished(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor)
    m = tk.start_message(actor, s.id, {"role": "assistant", "content": "streaming "}).value
    tk.extend_message(actor, m.id, "photosynthesis explained")
    assert ids(tk, actor, "photosynthesis") == set()
    tk.finish_message(actor, m.id)
    assert ids(tk, actor, "photosynthesis explained") == {m.id}


def test_rewind_and_fork_keep_every_message_findable(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor, title="branching")
    first = say(tk, actor, s.id, "first orchid")
    second = say(tk, actor, s.id, "second orchid")
    rewound = tk.rewind_session(actor, s.id, to_seq=1).value
    assert rewound.branch is not None
    found = {h.id: h.session_id for h in tk.search(actor, "orchid").items}
    assert found == {first: s.id, second: rewound.branch.id}
    fork = tk.fork_session(actor, s.id, at_seq=1, title="forked orchid").value
    assert ids(tk, actor, "orchid") == {first, second, fork.id}
    assert ids(tk, actor, "branching", kinds=["sessions"]) == {s.id, rewound.branch.id}


def test_the_index_is_written_in_the_same_transaction(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor)
    seen_inside: list[int] = []

    def boom(tx: Any) -> None:
        tx.conn.execute(
            tables.sessions.update()
            .where(tables.sessions.c.id == s.id)
            .values(title="zeppelin manifest")
        )
        f = search_q.Filters(owner_id=actor.user_id)
        inside, _ = search_q.search(tx.conn, "zeppelin", f, list(SearchKind), 10, 0)
        seen_inside.append(len(inside))
        raise RuntimeError("roll back")

    with pytest.raises((RuntimeError, StoreError)):
        tk.engine.write(boom)
    assert seen_inside == [1]  # visible to the writing transaction itself
    assert ids(tk, actor, "zeppelin", include_trashed=True) == set()
    assert tk.get_session(actor, s.id).title is None
    # A write that commits is found by the very next search.
    mid = say(tk, actor, s.id, "zeppelin")
    assert ids(tk, actor, "zeppelin") == {mid}


def _word(kind: str, i: int) -> str:
    """A word of its own for message ``i`` of one write path ("k12kiwi")."""
    return f"{kind}{i}kiwi"


def test_every_way_a_message_is_written_indexes_it_exactly_once(
    tk: Threadkeep, actor: Actor
) -> None:
    """A batch, an import long enough to write in chunks, writers committing
    together, and a stream that finishes: each message is in the index once,
    a streaming one not until it finishes. (On SQLite new messages are
    indexed by the store, not by a trigger: revision 0007.)"""
    batch = new_session(tk, actor)
    tk.append_messages(
        actor, batch.id, [{"role": "user", "content": _word("b", i)} for i in range(120)]
    )
    imported = tk.import_session(
        actor,
        ImportedSession(
            id="imported-kiwi",
            source="test",
            messages=[
                ImportedMessage(id=f"imp-{i}", role="user", content=_word("i", i))
                for i in range(1_100)  # more than one chunk of the import's writes
            ],
        ),
    )
    assert imported.status == "created"
    together = new_session(tk, actor)
    threads = [
        threading.Thread(
            target=lambda w=w: [
                tk.append_message(
                    actor, together.id, {"role": "user", "content": _word(f"t{w}x", i)}
                )
                for i in range(10)
            ]
        )
        for w in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stream = tk.start_message(actor, batch.id, {"role": "assistant", "content": "s0kiwi"}).value
    assert ids(tk, actor, "s0kiwi") == set()
    assert _indexed_messages(tk) == 120 + 1_100 + 80
    tk.finish_message(actor, stream.id)
    assert _indexed_messages(tk) == 120 + 1_100 + 80 + 1

    for word in (_word("b", 0), _word("b", 119), _word("i", 0), _word("i", 1_099)):
        assert len(ids(tk, actor, word)) == 1, word
    assert len(ids(tk, actor, _word("t7x", 9))) == 1
    assert ids(tk, actor, "s0kiwi") == {stream.id}
    _check_index_matches_the_tables(tk)


def _indexed_messages(tk: Threadkeep) -> int:
    with tk.engine.sa_engine.connect() as conn:
        if tk.dialect == "postgresql":
            sql = "SELECT count(*) FROM messages WHERE search_vector IS NOT NULL"
        else:
            sql = "SELECT count(*) FROM search_messages_docsize"
        return int(conn.exec_driver_sql(sql).scalar_one())


def _check_index_matches_the_tables(tk: Threadkeep) -> None:
    """SQLite: FTS5's integrity check with rank 1 also compares the index with
    its external content, so a message indexed twice, or not at all, fails it.
    (It expects every content row indexed: call it when no message is
    streaming. Sessions without a title are not indexed, so it does not
    apply to search_sessions.)"""
    if tk.dialect != "sqlite":
        return
    with tk.engine.sa_engine.connect() as conn:
        conn.exec_driver_sql(
            "INSERT INTO search_messages (search_messages, rank) VALUES ('integrity-check', 1)"
        )


HOSTILE = [
    '"',
    '"unbalanced',
    "'",
    "*",
    "a*",
    "NEAR",
    "NEAR(a b, 3)",
    "a NEAR b",
    "AND",
    "OR OR OR",
    "NOT a",
    "a AND NOT",
    "col:word",
    ":",
    "&",
    "a & b",
    "!",
    "!a",
    "a | b",
    "a <-> b",
    "a:*",
    "(",
    ")",
    "((a)",
    "^a",
    "+a -b",
    "{a b}",
    "-",
    "\\",
    "%_%",
    "'; DROP TABLE messages; --",
    "\ufdd0mark\ufdd1",
    "🙂 emoji",
    "x" * 1000,
    " ".join(["word"] * 200),
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_are_words_never_errors(tk: Threadkeep, actor: Actor, query: str) -> None:
    s = new_session(tk, actor, title="NEAR AND OR NOT")
    mid = say(tk, actor, s.id, "a b word col NEAR AND OR NOT mark emoji")
    found = tk.search(actor, query)
    assert all(h.id in {s.id, mid} for h in found.items)


def test_operator_words_are_searched_as_words(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor)
    mid = say(tk, actor, s.id, "take the col word near the door")
    other = say(tk, actor, s.id, "a wooden door")
    assert ids(tk, actor, "col:word") == {mid}
    assert ids(tk, actor, "NEAR door") == {mid}
    assert ids(tk, actor, "(door) | !wooden") == {other}  # both words, no operators


BAD: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"query": ""}, InvalidInput),
    ({"query": "   \n\t"}, InvalidInput),
    ({"query": "\u2028\u3000"}, InvalidInput),
    ({"query": None}, InvalidInput),
    ({"query": 42}, InvalidInput),
    ({"query": "x" * 1001}, InvalidInput),
    ({"query": "a\x00b"}, InvalidText),
    ({"query": "\udcff"}, InvalidText),
    ({"role": "wizard"}, InvalidInput),
    ({"kinds": ["messages", "secrets"]}, InvalidInput),
    ({"kinds": []}, InvalidInput),
    ({"since": datetime(2026, 1, 1)}, InvalidInput),
    ({"until": "yesterday"}, InvalidInput),
    ({"starred": "yes"}, InvalidInput),
    ({"include_trashed": None}, InvalidInput),
    ({"limit": 0}, InvalidInput),
    ({"limit": 1_000_000}, InvalidInput),
    ({"offset": -1}, InvalidInput),
    ({"offset": 10_001}, InvalidInput),
    ({"session_id": ""}, InvalidInput),
    ({"session_id": "a\x00"}, InvalidText),
]


@pytest.mark.parametrize(("kw", "error"), BAD, ids=range(len(BAD)))
def test_bad_arguments_raise_typed_errors_and_write_nothing(
    tk: Threadkeep, actor: Actor, kw: dict[str, Any], error: type[Exception]
) -> None:
    call = {"query": "fine", **kw}
    query = call.pop("query")
    with writes_nothing(tk), pytest.raises(error):
        tk.search(actor, query, **call)


def test_a_query_without_words_finds_nothing(tk: Threadkeep, actor: Actor) -> None:
    s = new_session(tk, actor, title="punctuation")
    say(tk, actor, s.id, "!!! ??? ...")
    assert tk.search(actor, "!!! ???").items == []


def test_the_index_survives_close_and_reopen(db_url: str) -> None:
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, title="durable").value
        mid = tk.append_message(me, s.id, {"role": "user", "content": "persisted words"}).value.id
    with Threadkeep.open(db_url) as tk:
        assert ids(tk, me, "persisted words") == {mid}
        assert ids(tk, me, "durable") == {s.id}


def test_sqlite_rebuild_restores_the_same_index(tk: Threadkeep, actor: Actor) -> None:
    if tk.dialect != "sqlite":
        pytest.skip("PostgreSQL's index is a generated column: nothing to rebuild")
    s = new_session(tk, actor, title="rebuilt")
    mid = say(tk, actor, s.id, "rebuilt message")
    ev = tk.start_tool_event(actor, s.id, {"name": "rebuilt"}).value
    before = _index_entries(tk)
    with tk.engine.sa_engine.begin() as conn:
        search_q.rebuild(conn)
    assert _index_entries(tk) == before
    tk.purge_session(actor, new_session(tk, actor, title="rebuilt and gone").id)
    with tk.engine.sa_engine.begin() as conn:
        search_q.optimize(conn)
        # After optimize, the purged title's terms are gone from the index itself.
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, search_sessions, row)"
        )
        terms = {r[0] for r in conn.exec_driver_sql("SELECT term FROM temp.v")}
        conn.exec_driver_sql("DROP TABLE temp.v")
    assert "gone" not in terms and "rebuilt" in terms
    assert ids(tk, actor, "rebuilt") == {s.id, mid, ev.id}
    with tk.engine.sa_engine.connect() as conn:
        # FTS5 checks its index against the content it was built from.
        for t in ("search_messages", "search_sessions", "search_tool_events", "search_titles"):
            conn.exec_driver_sql(f"INSERT INTO {t} ({t}) VALUES ('integrity-check')")


def test_the_index_check_finds_what_was_written_past_it_and_a_rebuild_repairs_it(
    tk: Threadkeep, actor: Actor
) -> None:
    """The repair for an older threadkeep that kept writing after another
    process migrated the file to revision 0007 (docs/rollback.md): its message
    is in the table, not in the index, so search misses it and a purge of its
    session fails, until ``rebuild_search_index``."""
    s = new_session(tk, actor, title="orchard notes")
    say(tk, actor, s.id, "apple harvest")
    tk.start_tool_event(actor, s.id, {"name": "picker"})
    tk.start_message(actor, s.id, {"role": "assistant", "content": "ripening"})  # not indexed yet
    if tk.dialect != "sqlite":
        # The search index is a generated column of each row: it cannot
        # drift. The title trigrams (revision 0013) are a table of their own.
        healthy = {c.index: (c.expected, c.missing, c.stale) for c in tk.check_search_index()}
        assert healthy == {"search_title_grams": (1, 0, 0)}
        untitled = new_session(tk, actor)
        with tk.engine.sa_engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE search_title_grams SET grams = '{}' WHERE session_id = %s", (s.id,)
            )
            conn.exec_driver_sql(
                "INSERT INTO search_title_grams VALUES (%s, '{phantom}')", (untitled.id,)
            )
        drifted = {c.index: (c.expected, c.missing, c.stale) for c in tk.check_search_index()}
        assert drifted == {"search_title_grams": (1, 1, 1)}
        # A page the walk did not fill is read through the index: it decides.
        assert tk.list_sessions(actor, title_contains="orchard").items == []
        before = row_counts(tk)
        rebuilt = tk.rebuild_search_index()
        assert [(c.index, c.expected, c.ok) for c in rebuilt] == [("search_title_grams", 1, True)]
        assert row_counts(tk) == before  # the index is not synced data: nothing logged
        assert [x.id for x in tk.list_sessions(actor, title_contains="CHARD N").items] == [s.id]
        return
    healthy = {c.index: (c.expected, c.missing, c.stale) for c in tk.check_search_index()}
    assert healthy == {
        "search_messages": (1, 0, 0),
        "search_sessions": (1, 0, 0),
        "search_titles": (1, 0, 0),
        "search_tool_events": (1, 0, 0),
    }
    assert {c.index: c.kind for c in tk.check_search_index()}["search_titles"] == (
        SearchKind.SESSIONS
    )

    lost = write_past_the_index(tk, actor, s.id, "pear blossom")
    untitled = new_session(tk, actor)
    with tk.engine.sa_engine.begin() as conn:  # entries with no row to match
        rid = conn.execute(
            sa.select(sa.literal_column("rowid")).where(tables.sessions.c.id == untitled.id)
        ).scalar_one()
        conn.exec_driver_sql(
            "INSERT INTO search_sessions (rowid, title) VALUES (?, 'phantom')", (rid,)
        )
        conn.exec_driver_sql(
            "INSERT INTO search_tool_events (rowid, body, owner_id) VALUES (999999, 'ghost', ?)",
            (actor.user_id,),
        )
        conn.exec_driver_sql(
            "INSERT INTO search_titles (rowid, folded) VALUES (?, 'phantom')", (rid,)
        )
        conn.exec_driver_sql("DELETE FROM search_titles WHERE folded = 'orchard notes'")
    drifted = {c.index: (c.expected, c.missing, c.stale) for c in tk.check_search_index()}
    assert drifted == {
        "search_messages": (2, 1, 0),
        "search_sessions": (1, 0, 1),
        "search_titles": (1, 1, 1),
        "search_tool_events": (1, 0, 1),
    }
    assert tk.list_sessions(actor, title_contains="orchard").items == []  # the index decides
    assert ids(tk, actor, "pear") == set()
    tk.delete_session(actor, s.id)
    before = row_counts(tk)
    with pytest.raises(StoreError, match="malformed"):
        tk.purge_session(actor, s.id)
    assert row_counts(tk) == before

    rebuilt = tk.rebuild_search_index()

    assert all(c.ok for c in rebuilt), rebuilt
    assert [c.expected for c in rebuilt] == [2, 1, 1, 1]
    assert row_counts(tk) == before  # the index is not synced data: nothing logged
    assert ids(tk, actor, "pear", include_trashed=True) == {lost}
    assert ids(tk, actor, "phantom") == ids(tk, actor, "ghost") == set()
    assert [
        x.id for x in tk.list_sessions(actor, title_contains="CHARD N", trashed=True).items
    ] == [s.id]
    tk.purge_session(actor, s.id)
    assert all(c.ok for c in tk.check_search_index())
    with tk.engine.sa_engine.connect() as conn:
        for t in ("search_messages", "search_sessions", "search_tool_events", "search_titles"):
            conn.exec_driver_sql(f"INSERT INTO {t} ({t}) VALUES ('integrity-check')")


def test_sqlite_vacuum_keeps_the_index_in_step(tk: Threadkeep, actor: Actor) -> None:
    """The SQLite index is keyed by rowid: VACUUM must not renumber (it keeps
    rowids; FTS5's integrity check compares the index with the tables)."""
    if tk.dialect != "sqlite":
        pytest.skip("SQLite only")
    kept = new_session(tk, actor, title="kept apple")
    mids = [say(tk, actor, kept.id, f"banana {i}") for i in range(3)]
    gone = new_session(tk, actor, title="gone apple")
    say(tk, actor, gone.id, "banana gone")
    tk.purge_session(actor, gone.id)  # a hole in the rowids before the kept rows
    later = say(tk, actor, kept.id, "banana after the hole")
    with tk.engine.sa_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")
        for t in ("search_messages", "search_sessions", "search_tool_events", "search_titles"):
            conn.exec_driver_sql(f"INSERT INTO {t} ({t}) VALUES ('integrity-check')")
    assert ids(tk, actor, "banana") == {*mids, later}
    assert ids(tk, actor, "apple") == {kept.id}

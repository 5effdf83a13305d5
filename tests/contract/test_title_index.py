"""The trigram indexes behind the list's title filter: SQLite's
search_titles (revision 0012, FTS5) and PostgreSQL's search_title_grams
(revision 0013, a GIN index of arrays), and the ways the list reads a title
filter.

The database keeps each index from ``sessions.title`` by triggers, folding
each title the way the engine's filter folds it, so these tests drive the
writes a user can make and compare the index with the titles. The list
finds a text's sessions through the index when few titles hold it and walks
the list otherwise (PostgreSQL: walks first, and reads through the index
what the walk's window did not fill); every way must give the same pages,
on both engines.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from contract_helpers import backdate, list_plan, new_session, query_plan

from replay_checks import all_pages
from threadkeep import Actor, Threadkeep
from threadkeep.model.imports import ImportedMessage, ImportedSession
from threadkeep.model.sessions import SessionFilter
from threadkeep.store import sessions as session_q
from threadkeep.store import tables


def trigrams(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(len(text) - 2)}


def pg_grams(text: str) -> set[str]:
    """PostgreSQL's elements of a folded title (revisions 0013 and 0014): its
    trigrams, its bigrams as ``b:`` and its characters as ``u::``."""
    bigrams = {"b:" + text[i : i + 2] for i in range(len(text) - 1)}
    return trigrams(text) | bigrams | {"u::" + c for c in text}


def entry(tk: Threadkeep, owner: Actor, title: str) -> Any:
    """What the engine's index should hold for a session titled ``title``:
    SQLite's search_titles the title folded by ``str.casefold``; PostgreSQL's
    search_title_grams the trigrams, bigrams and characters of its
    ``lower()`` (final sigma as medial) and the owner's own element."""
    if tk.dialect == "sqlite":
        return title.casefold()
    return frozenset({f"o:{owner.user_id}"} | pg_grams(title.lower().replace("\u03c2", "\u03c3")))


def follows(tk: Threadkeep) -> dict[str, Any]:
    """What the engine's title index holds, by session id, after checking
    that it holds an entry for every titled session, as its title gives it
    now, and nothing else."""
    c = tables.sessions.c
    with tk.engine.sa_engine.connect() as conn:
        if tk.dialect == "sqlite":
            held = dict(
                conn.exec_driver_sql(
                    "SELECT s.id, t.folded FROM search_titles AS t "
                    "JOIN sessions AS s ON s.rowid = t.rowid"
                ).all()
            )
            count = conn.exec_driver_sql("SELECT count(*) FROM search_titles").scalar_one()
            assert count == len(held), "entries with no session"
            titles = conn.execute(sa.select(c.id, c.title).where(c.title.is_not(None))).all()
            assert held == {sid: title.casefold() for sid, title in titles}
        else:
            rows = conn.exec_driver_sql("SELECT session_id, grams FROM search_title_grams").all()
            held = {sid: frozenset(grams) for sid, grams in rows}
            fresh = conn.exec_driver_sql(
                "SELECT id, tk_title_grams(owner_id, title) FROM sessions WHERE title IS NOT NULL"
            ).all()
            assert held == {sid: frozenset(grams) for sid, grams in fresh}
    assert all(c.ok for c in tk.check_search_index())
    return held


def test_the_index_follows_every_write_to_a_title(
    tk: Threadkeep, actor: Actor, other_actor: Actor
) -> None:
    a = new_session(tk, actor, title="Straße nach Köln")
    untitled = new_session(tk, actor)
    theirs = new_session(tk, other_actor, title="THEIR plans")
    assert follows(tk) == {
        a.id: entry(tk, actor, "Straße nach Köln"),
        theirs.id: entry(tk, other_actor, "THEIR plans"),
    }
    tk.update_session(actor, a.id, {"title": "Renamed ΣΊΣΥΦΟΣ"})
    assert follows(tk)[a.id] == entry(tk, actor, "renamed σίσυφοσ")
    tk.update_session(actor, untitled.id, {"title": "ab"})  # too short for a trigram
    assert follows(tk)[untitled.id] == entry(tk, actor, "ab")
    tk.update_session(actor, untitled.id, {"title": "ς"})  # one character, final sigma
    assert follows(tk)[untitled.id] == entry(tk, actor, "ς")
    tk.update_session(actor, a.id, {"title": None})
    assert a.id not in follows(tk)
    tk.update_session(actor, a.id, {"title": "back again", "tags": ["x"]})
    tk.append_message(actor, a.id, {"role": "user", "content": "more"})
    branch = tk.fork_session(actor, a.id, at_seq=1).value  # a branch inherits the title
    assert follows(tk)[branch.id] == entry(tk, actor, "back again")
    tk.rewind_session(actor, a.id, to_seq=0)
    follows(tk)
    tk.delete_session(actor, branch.id)  # the trash keeps it: its view filters by title
    assert branch.id in follows(tk)
    tk.restore_session(actor, branch.id)
    tk.delete_session(actor, branch.id)
    tk.purge_session(actor, branch.id)
    assert branch.id not in follows(tk)
    tk.import_session(
        actor,
        ImportedSession(
            id="imp-1",
            source="test",
            title="Imported \ufb01le notes",
            messages=[ImportedMessage(id="imp-1-m1", role="user", content="hi")],
        ),
    )
    assert follows(tk)["imp-1"] == entry(tk, actor, "Imported \ufb01le notes")
    tk.erase_user(actor.user_id)
    assert follows(tk) == {theirs.id: entry(tk, other_actor, "THEIR plans")}


def test_appends_and_other_edits_leave_the_index_alone(tk: Threadkeep, actor: Actor) -> None:
    """What keeps an append's cost unchanged: the triggers run only when a
    write changes the title (or creates or deletes the session). On SQLite a
    trigger that ran would leave FTS5 a new segment (its shadow table counts
    them); on PostgreSQL a row it rewrote would have a new xmin."""

    def state() -> Any:
        with tk.engine.sa_engine.connect() as conn:
            if tk.dialect == "sqlite":
                rows = conn.exec_driver_sql("SELECT rowid, folded FROM search_titles").all()
                segments = conn.exec_driver_sql(
                    "SELECT count(*), max(id) FROM search_titles_data"
                ).one()
                return [tuple(r) for r in rows], tuple(segments)
            rows = conn.exec_driver_sql(
                "SELECT session_id, xmin::text, grams FROM search_title_grams"
            ).all()
            return [tuple(r) for r in rows]

    s = new_session(tk, actor, title="Quiet title")
    before = state()
    tk.append_message(actor, s.id, {"role": "user", "content": "one"})
    tk.append_messages(actor, s.id, [{"role": "assistant", "content": "two"}] * 3)
    tk.update_session(actor, s.id, {"tags": ["t"], "pinned": True, "metadata": {"k": 1}})
    tk.update_session(actor, s.id, {"title": "Quiet title"})  # the same title
    tk.delete_session(actor, s.id)
    tk.restore_session(actor, s.id)
    assert state() == before
    tk.update_session(actor, s.id, {"title": "quiet title"})  # a change, if only of case
    assert state() != before


def test_a_build_that_distrusts_the_schema_still_writes_titles(tmp_path: Any) -> None:
    """Some SQLite builds turn ``trusted_schema`` off by default. There a
    trigger may not write an FTS5 table nor call a function Python
    registered (neither is marked innocuous), so every title write failed
    (and since revision 0006 every new session and every message edit),
    until add_functions turned the setting on for its connection."""
    import sqlite3

    from threadkeep.store.sqlite_functions import add_functions, fold

    path = tmp_path / "t.db"
    with Threadkeep.open(f"sqlite:///{path}") as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = new_session(tk, me, title="old")
    rename = "UPDATE sessions SET title = 'New Title' WHERE id = ?"
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.create_function("tk_fold", 1, fold, deterministic=True)
        with pytest.raises(sqlite3.OperationalError, match="unsafe use of"):
            conn.execute(rename, (s.id,))
        conn.rollback()
        add_functions(conn)
        conn.execute(rename, (s.id,))
        conn.commit()
    finally:
        conn.close()
    with Threadkeep.open(f"sqlite:///{path}") as tk:
        assert follows(tk) == {s.id: entry(tk, me, "New Title")}


@pytest.fixture
def title_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of reading a title filter, forced: "few" finds the sessions
    through the index, "common" walks the list, "short walk" walks so few
    that it must often fall back to the first way. PostgreSQL always walks
    first: there "few" is a walk of no session at all, so every page comes
    through the index."""
    monkeypatch.setattr(session_q, "FEW_TITLED", 10**9 if request.param == "few" else 0)
    if request.param == "short walk":
        monkeypatch.setattr(session_q, "WALK_WINDOW", 3)
    if request.param == "few":
        monkeypatch.setattr(session_q, "WALK_WINDOW", 0)
    return str(request.param)


TITLES = [
    "Trip to the Straße",
    "STRASSE cleaning",
    "weekly report",
    "Report: weekly",
    "100% done_now",
    'say "hi" again',
    "Σίσυφος notes",
    "ﬁnal draft",
    "draft",
    "a\\b path",
]
TEXTS = [
    "strasse",
    "straße",
    "STRASSE",
    "report",
    "weekly",
    "% d",
    "_now",
    '"hi"',
    "σίσυφος",
    "ΣΊΣΥΦΟΣ",
    "final",
    "draft",
    "dr",
    "a\\b",
    "absent text",
    "t",
    "ß",
    "ς",
    "%",
    "_n",
    "9z",
    "ﬁ",
]


def folding(tk: Threadkeep) -> Any:
    """How the engine folds a title and the text looked for (StoreEngine.fold):
    SQLite as ``str.casefold``; PostgreSQL ``lower()`` with final sigma
    folded, which leaves sharp s and ligatures alone (Python's ``lower``
    writes a final sigma where PostgreSQL's writes the medial one; the
    translation makes them agree)."""
    if tk.dialect == "sqlite":
        return str.casefold
    return lambda text: text.lower().replace("\u03c2", "\u03c3")


@pytest.mark.parametrize("title_way", ["few", "common", "short walk"], indirect=True)
def test_every_way_gives_the_true_pages(tk: Threadkeep, actor: Actor, title_way: str) -> None:
    """Titles with letters whose folding changes their length (ß, ﬁ), Greek
    final sigma, LIKE's own characters and FTS5's quote; flags, trash and
    activity times (some equal, so the id breaks the tie); every text,
    walked page by page with the cursor, against what Python finds."""
    rng = random.Random(2027)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for i in range(60):
        s = new_session(
            tk, actor, id=f"s{i:03d}", title=TITLES[i % len(TITLES)], starred=rng.random() < 0.3
        )
        made.append(s.id)
    new_session(tk, actor, id="untitled")
    noise = new_session(tk, Actor(tk.create_user("eve").value.id), title=" ".join(TITLES))
    times = {sid: base + timedelta(minutes=rng.randrange(20)) for sid in [*made, "untitled"]}
    backdate(tk, times)
    trashed = set(rng.sample(made, 8))
    for sid in trashed:
        tk.delete_session(actor, sid)
    stored = {s: tk.get_session(actor, s) for s in made}
    fold = folding(tk)

    for text in TEXTS:
        for extra in ({}, {"starred": True}, {"trashed": True}, {"tag": "none"}):
            flt = {"title_contains": text, **extra}

            def holds(sid: str, flt: dict[str, Any] = flt, text: str = text) -> bool:
                s = stored[sid]
                return (
                    fold(text) in fold(s.title or "")
                    and (sid in trashed) == bool(flt.get("trashed"))
                    and ("starred" not in flt or s.starred == flt["starred"])
                    and "tag" not in flt
                )

            truth = sorted((s for s in made if holds(s)), key=lambda s: (times[s], s), reverse=True)
            got = [s.id for s in all_pages(tk, actor, flt, limit=4)]
            assert got == truth, (title_way, flt)
            assert noise.id not in got


@pytest.mark.parametrize("title_way", ["few", "common"], indirect=True)
def test_each_way_reads_the_index_as_planned(tk: Threadkeep, actor: Actor, title_way: str) -> None:
    """SQLite, "few": the trigram index, then each session by rowid, sorted
    (never a walk of the list); "common": the list's own index, newest first,
    above the window's activity time, never sorted. A text of fewer than
    three characters, and PostgreSQL, always walk."""
    for i in range(12):
        new_session(tk, actor, title="needle in hay" if i % 3 == 0 else "hay")
    assert len(tk.list_sessions(actor, title_contains="NEEDLE").items) == 4
    plan = list_plan(tk, actor, title_contains="needle")
    if tk.dialect != "sqlite":
        # The walk first, always; a page it did not fill, through the GIN
        # index, then each session by key (never a walk of the list).
        assert "ix_sessions_live_activity" in plan and "search_title" not in plan, plan
        with tk.engine.sa_engine.connect() as conn:
            shape, values = session_q.list_query(
                conn, actor.user_id, SessionFilter(title_contains="needle"), 50, None
            )
            assert shape.title == "common"
            del values["window"]
            stmt = session_q.list_statement(conn, tk.engine, replace(shape, title="few"))
            few = query_plan(conn, stmt.sql, stmt.params(values))
        assert "Bitmap Index Scan on search_title_grams_gin" in few, few
        assert "Index Cond: ((id)::text = (search_title_grams.session_id)::text)" in few, few
        assert "ix_sessions_live_activity" not in few and "Seq Scan" not in few, few
        # Texts of two characters and of one (revision 0014): the same ways.
        for text in ("ne", "n"):
            assert len(tk.list_sessions(actor, title_contains=text.upper()).items) == 4
            short = list_plan(tk, actor, title_contains=text)
            assert "ix_sessions_live_activity" in short and "search_title" not in short, short
            with tk.engine.sa_engine.connect() as conn:
                shape, values = session_q.list_query(
                    conn, actor.user_id, SessionFilter(title_contains=text), 50, None
                )
                assert shape.title == "common"
                del values["window"]
                stmt = session_q.list_statement(conn, tk.engine, replace(shape, title="few"))
                few = query_plan(conn, stmt.sql, stmt.params(values))
            assert "Bitmap Index Scan on search_title_grams_gin" in few, few
            assert "ix_sessions_live_activity" not in few and "Seq Scan" not in few, few
        return
    if title_way == "few":
        assert "search_titles VIRTUAL TABLE" in plan, plan
        assert "ix_sessions_live_activity" not in plan, plan
    else:
        assert "ix_sessions_live_activity" in plan and "search_titles" not in plan, plan
        assert "(owner_id=? AND last_activity_at>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    short = list_plan(tk, actor, title_contains="ne")
    assert "search_titles" not in short and "ix_sessions_live_activity" in short, short
    # A short text's page that the walk did not fill: the folded titles, one
    # by one (no trigram to look up), then each session by rowid.
    with tk.engine.sa_engine.connect() as conn:
        shape, values = session_q.list_query(
            conn, actor.user_id, SessionFilter(title_contains="ne"), 50, None
        )
        assert shape.title == "common" and not shape.trigrams
        del values["window"]
        stmt = session_q.list_statement(conn, tk.engine, replace(shape, title="few"))
        plan = query_plan(conn, stmt.sql, tuple(stmt.params(values)))
    assert "SCAN search_titles VIRTUAL TABLE" in plan, plan
    assert "ix_sessions_live_activity" not in plan, plan


# Each title, with texts that must find it on both engines, and on SQLite
# (where folding is Python's casefold) more.
OWN_TEXT = {
    "Straße nach Köln": (["Straße nach Köln", "straße", "STRAßE", "KÖLN"], ["STRASSE"]),
    "ΣΊΣΥΦΟΣ": (["σίσυφος", "Σίσυφος", "ΣΊΣΥΦΟΣ", "ΣΥΦ"], []),
    "Σίσυφος": (["σίσυφος", "Σίσυφος", "ΣΊΣΥΦΟΣ", "συφ"], []),
    "ﬁnal ĲSSEL": (["ﬁnal", "ĳssel", "ĲSSEL"], ["FINAL", "final"]),
    "İstanbul": (["İstanbul", "STANBUL", "stan"], ["i\u0307stanbul"]),
}


@pytest.mark.parametrize("title", list(OWN_TEXT))
def test_a_title_is_found_by_its_own_text_in_any_case(
    tk: Threadkeep, actor: Actor, title: str
) -> None:
    """Through every way of reading the filter. Before, PostgreSQL compared
    its lower() of the title with Python's casefold() of the text, so
    "Straße" and "Σίσυφος" did not find themselves there."""
    s = new_session(tk, actor, title=title)
    new_session(tk, actor, title="something else")
    both, sqlite = OWN_TEXT[title]
    for text in both + (sqlite if tk.dialect == "sqlite" else []):
        for few in (10**9, 0):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(session_q, "FEW_TITLED", few)
                got = [x.id for x in tk.list_sessions(actor, title_contains=text).items]
            assert got == [s.id], (text, few)

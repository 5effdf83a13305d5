"""session_tags, the index behind the list's tag filter (revision 0011).

The database keeps it from ``sessions.tags`` by triggers on every write, so
these tests drive the writes a user can make and compare the index with the
tags the sessions hold. The list reads it one of two ways, by how many
sessions carry the tag (``FEW_TAGGED``); both must give the same pages.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from contract_helpers import backdate, list_plan, new_session

from replay_checks import all_pages
from threadkeep import Actor, Threadkeep
from threadkeep.model.imports import ImportedMessage, ImportedSession
from threadkeep.store import sessions as session_q
from threadkeep.store import tables


def indexed(tk: Threadkeep) -> set[tuple[str, str, str]]:
    """What session_tags holds: (owner, tag, session)."""
    st = tables.session_tags.c
    with tk.engine.sa_engine.connect() as conn:
        rows = conn.execute(sa.select(st.owner_id, st.tag, st.session_id)).all()
    return {tuple(r) for r in rows}  # type: ignore[misc]


def carried(tk: Threadkeep) -> set[tuple[str, str, str]]:
    """What the sessions' own tags say session_tags should hold."""
    c = tables.sessions.c
    with tk.engine.sa_engine.connect() as conn:
        rows = conn.execute(sa.select(c.owner_id, c.id, c.tags)).all()
    return {(owner, tag, sid) for owner, sid, tags in rows for tag in tags}


def follows(tk: Threadkeep) -> set[tuple[str, str, str]]:
    held = indexed(tk)
    assert held == carried(tk)
    return held


def test_the_index_follows_every_write_to_a_sessions_tags(
    tk: Threadkeep, actor: Actor, other_actor: Actor
) -> None:
    a = new_session(tk, actor, tags=["work", "draft"])
    new_session(tk, actor)  # no tags: nothing indexed
    theirs = new_session(tk, other_actor, tags=["work"])
    assert follows(tk) == {
        (actor.user_id, "work", a.id),
        (actor.user_id, "draft", a.id),
        (other_actor.user_id, "work", theirs.id),
    }
    tk.update_session(actor, a.id, {"tags": ["work", "urgent"]})
    assert (actor.user_id, "urgent", a.id) in follows(tk)
    tk.update_session(actor, a.id, {"title": "renamed", "starred": True})
    tk.append_message(actor, a.id, {"role": "user", "content": "more"})
    branch = tk.fork_session(actor, a.id, at_seq=1).value  # a branch inherits the tags
    assert (actor.user_id, "urgent", branch.id) in follows(tk)
    tk.rewind_session(actor, a.id, to_seq=0)
    follows(tk)
    tk.delete_session(actor, branch.id)  # the trash keeps them: its view filters by tag
    assert (actor.user_id, "urgent", branch.id) in follows(tk)
    tk.restore_session(actor, branch.id)
    tk.delete_session(actor, branch.id)
    tk.purge_session(actor, branch.id)
    assert (actor.user_id, "urgent", branch.id) not in follows(tk)
    tk.update_session(actor, a.id, {"tags": []})
    assert not [t for t in follows(tk) if t[2] == a.id]
    tk.import_session(
        actor,
        ImportedSession(
            id="imp-1",
            source="test",
            tags=["imported", "work"],
            messages=[ImportedMessage(id="imp-1-m1", role="user", content="hi")],
        ),
    )
    assert (actor.user_id, "imported", "imp-1") in follows(tk)
    tk.erase_user(actor.user_id)
    assert follows(tk) == {(other_actor.user_id, "work", theirs.id)}


def _rowids(tk: Threadkeep) -> list[tuple[Any, ...]]:
    """Each entry with its physical identity: SQLite's rowid, PostgreSQL's
    ctid and xmin. An entry deleted and inserted again (a trigger that ran)
    comes back with a new one, even with the same values."""
    st = tables.session_tags
    with tk.engine.sa_engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            cols = [sa.literal_column("rowid")]
        else:
            cols = [sa.literal_column("ctid::text"), sa.literal_column("xmin::text")]
        q = sa.select(*cols, *st.c).order_by(*st.primary_key.columns)
        return [tuple(r) for r in conn.execute(q)]


def test_appends_and_other_edits_leave_the_index_alone(tk: Threadkeep, actor: Actor) -> None:
    """What keeps an append's cost unchanged: the triggers run only when a
    write changes the tags (or creates or deletes the session)."""
    s = new_session(tk, actor, tags=["a", "b", "c"])
    before = _rowids(tk)
    assert len(before) == 3
    tk.append_message(actor, s.id, {"role": "user", "content": "one"})
    tk.append_messages(actor, s.id, [{"role": "assistant", "content": "two"}] * 3)
    tk.update_session(actor, s.id, {"title": "t", "pinned": True, "metadata": {"k": 1}})
    tk.update_session(actor, s.id, {"tags": ["a", "b", "c"]})  # the same tags
    tk.delete_session(actor, s.id)
    tk.restore_session(actor, s.id)
    assert _rowids(tk) == before
    tk.update_session(actor, s.id, {"tags": ["c", "b", "a"]})  # a change, if only of order
    assert _rowids(tk) != before and len(_rowids(tk)) == 3


@pytest.fixture
def few_tagged(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of reading the index, forced: "few" reads the tagged sessions
    through it, "common" walks the list and looks each one up, "short walk"
    walks so few that it must often fall back to the first way."""
    monkeypatch.setattr(session_q, "FEW_TAGGED", 10**9 if request.param == "few" else 0)
    if request.param == "short walk":  # most pages fall back to the first way
        monkeypatch.setattr(session_q, "WALK_WINDOW", 3)
    return str(request.param)


@pytest.mark.parametrize("few_tagged", ["few", "common", "short walk"], indirect=True)
def test_both_ways_give_the_true_pages(tk: Threadkeep, actor: Actor, few_tagged: str) -> None:
    """Random tags, flags, trash and activity times (some equal, so the id
    breaks the tie); every filter with a tag, walked page by page with the
    cursor, against the order computed here."""
    rng = random.Random(2026)
    tags = ["red", "green", "blue", "rare"]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for i in range(60):
        held = [t for t in tags[:3] if rng.random() < 0.4] + (["rare"] if i % 29 == 0 else [])
        s = new_session(tk, actor, id=f"s{i:03d}", tags=held, starred=rng.random() < 0.3)
        made.append(s.id)
    noise = new_session(tk, Actor(tk.create_user("eve").value.id), tags=tags)
    times = {sid: base + timedelta(minutes=rng.randrange(20)) for sid in made}
    backdate(tk, times)
    trashed = set(rng.sample(made, 8))
    for sid in trashed:
        tk.delete_session(actor, sid)
    stored = {s: tk.get_session(actor, s) for s in made}

    for tag in [*tags, "absent"]:
        for extra in ({}, {"starred": True}, {"starred": False}, {"trashed": True}):
            flt = {"tag": tag, **extra}

            def holds(sid: str, flt: dict[str, Any] = flt, tag: str = tag) -> bool:
                s = stored[sid]
                return (
                    tag in s.tags
                    and (sid in trashed) == bool(flt.get("trashed"))
                    and ("starred" not in flt or s.starred == flt["starred"])
                )

            truth = sorted((s for s in made if holds(s)), key=lambda s: (times[s], s), reverse=True)
            got = [s.id for s in all_pages(tk, actor, flt, limit=4)]
            assert got == truth, (few_tagged, flt)
            assert noise.id not in got


@pytest.mark.parametrize("few_tagged", ["few", "common"], indirect=True)
def test_each_way_reads_the_index_as_planned(tk: Threadkeep, actor: Actor, few_tagged: str) -> None:
    """ "few": the tag's entries of session_tags' key, then each session by
    its key (on PostgreSQL a nested loop, never a hash join over every
    session); "common": the list's own index, newest first, testing each
    session as it passes (SQLite: a key lookup in session_tags, above the
    window's activity time; PostgreSQL: the row's jsonb, over a window it
    does not sort again). PostgreSQL's plan is the generic one: a value
    cannot steer it."""
    for i in range(12):
        new_session(tk, actor, tags=["t"] if i % 3 == 0 else [])
    assert len(tk.list_sessions(actor, tag="t").items) == 4
    plan = list_plan(tk, actor, tag="t")
    sqlite = tk.dialect == "sqlite"
    if few_tagged == "few":
        assert "session_tags" in plan and "ix_sessions_live_activity" not in plan, plan
        assert sqlite or ("Nested Loop" in plan and "Hash" not in plan), plan
    elif sqlite:
        assert "ix_sessions_live_activity" in plan and "session_tags" in plan, plan
        # bounded by the window's activity time, and never sorted
        assert "(owner_id=? AND last_activity_at>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "ix_sessions_live_activity" in plan and "Sort" not in plan, plan
        assert "recent.tags @> jsonb_build_array" in plan, plan

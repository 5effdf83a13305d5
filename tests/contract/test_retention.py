"""Retention (``apply_retention``) on both engines: what has expired goes, in
batches with its change-log deletes; starred snapshots, young rows and live
sessions stay; a dry run writes nothing and names exactly what a run deletes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from contract_helpers import query_plan

from conftest import row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.config import BlobSettings, RetentionSettings, load_settings
from threadkeep.errors import InvalidInput, InvalidState
from threadkeep.model.common import utcnow
from threadkeep.store import retention as retention_q
from threadkeep.store import tables


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Threadkeep]:
    """A store whose blob collection has no grace period, so that the blobs of
    purged uploads go in the same run (fs blobs on SQLite, postgres on PostgreSQL)."""
    blobs = BlobSettings(gc_grace_seconds=0, path=str(tmp_path / "blobs"))
    tk = Threadkeep.open(db_url, settings=load_settings(blobs=blobs))
    try:
        yield tk
    finally:
        tk.close()


def age(tk: Threadkeep, table: str, ids: list[str], days: float, *columns: str) -> None:
    """Make rows look ``days`` old (behind the library's back, as time would)."""
    t = tables.metadata.tables[table]
    when = utcnow() - timedelta(days=days)
    cols = columns or ("created_at", "updated_at")
    with tk.engine.sa_engine.begin() as conn:
        conn.execute(t.update().where(t.c.id.in_(ids)).values(dict.fromkeys(cols, when)))


def snapshot(tk: Threadkeep, me: Actor, sid: str, **fields: object) -> str:
    return tk.create_snapshot(me, sid, {"state": {"n": 1}, **fields}).value.id


def analytics(tk: Threadkeep, me: Actor, sid: str) -> str:
    return tk.record_analytics_event(me, sid, {"event_type": "tokens"}).value.id


def trashed(tk: Threadkeep, me: Actor, days: float, **fields: object) -> str:
    """A session in the trash for ``days`` days."""
    s = tk.create_session(me, **fields).value
    tk.delete_session(me, s.id)
    age(tk, "sessions", [s.id], days, "deleted_at")
    return s.id


def test_expired_rows_go_and_starred_young_and_recently_changed_ones_stay(
    store: Threadkeep,
) -> None:
    me = Actor(store.create_user("ada").value.id)
    sid = store.create_session(me).value.id
    old = [snapshot(store, me, sid) for _ in range(3)]
    starred = snapshot(store, me, sid, starred=True)
    unstarred_lately = snapshot(store, me, sid)
    young = snapshot(store, me, sid)
    age(store, "snapshots", [*old, starred], 31)
    age(store, "snapshots", [unstarred_lately], 31, "created_at")  # changed today
    age(store, "snapshots", [young], 29)
    old_events = [analytics(store, me, sid) for _ in range(2)]
    young_event = analytics(store, me, sid)
    age(store, "analytics_events", old_events, 91)
    age(store, "analytics_events", [young_event], 89)

    done = store.apply_retention()

    assert sorted(done.snapshots) == sorted(old)
    assert done.analytics_events == sorted(old_events)
    assert done.counts()["snapshots"] == 3 and not done.dry_run
    left = {s.id for s in store.list_snapshots(me, sid)}
    assert left == {starred, unstarred_lately, young}
    assert [e.id for e in store.list_analytics_events(me, sid)] == [young_event]
    # Nothing else expired: a second run finds nothing.
    assert store.apply_retention().total == 0


def test_deletes_reach_sync_clients_through_the_change_log(store: Threadkeep) -> None:
    me = Actor(store.create_user("ada").value.id)
    live = store.create_session(me).value.id
    snap = snapshot(store, me, live)
    event = analytics(store, me, live)
    age(store, "snapshots", [snap], 40)
    age(store, "analytics_events", [event], 100)
    gone = store.create_session(me).value.id
    msgs = store.append_messages(me, gone, [{"role": "user", "content": "hi"}])
    store.delete_session(me, gone)
    age(store, "sessions", [gone], 31, "deleted_at")
    before = store.sync_state().last_offset

    done = store.apply_retention()

    deletes = {
        (c.table, c.key)
        for c in store.read_changes(me, before)
        if c.op.value == "delete" and c.row is None
    }
    message_id = msgs.value[0].id
    assert {
        ("snapshots", snap),
        ("analytics_events", event),
        ("sessions", gone),
        ("messages", message_id),
    } <= deletes
    shaped = store.shape_changes(me, "snapshots", before)
    assert [(c.key, c.op.value) for c in shaped.changes] == [(snap, "delete")]
    assert done.transactions == len(done.txids) == 3
    # Each batch's txid is the txid of its change rows: what a client waits on.
    txids = {c.txid for c in store.read_changes(me, before)}
    assert txids == set(done.txids)


def test_trash_is_purged_whole_with_branches_first_and_live_sessions_never(
    store: Threadkeep,
) -> None:
    me = Actor(store.create_user("ada").value.id)
    # An old trashed session with content of every kind, and an upload.
    full = store.create_session(me).value.id
    store.append_messages(me, full, [{"role": "user", "content": "a"}] * 3)
    store.replace_todos(me, full, [{"content": "t"}])
    up = store.upload(me, full, [b"only here"], filename="a.txt").value
    shared = store.upload(me, full, [b"also live"], filename="b.txt").value
    store.delete_session(me, full)
    age(store, "sessions", [full], 45, "deleted_at")
    # A live session, idle for a year, holding the same bytes as `shared`.
    idle = store.create_session(me).value.id
    store.upload(me, idle, [b"also live"], filename="b.txt")
    age(store, "sessions", [idle], 365, "created_at", "updated_at", "last_activity_at")
    recent = trashed(store, me, 5)
    # A parent whose old trashed branch goes first, then the parent.
    parent = store.create_session(me).value.id
    store.append_messages(me, parent, [{"role": "user", "content": "p"}])
    branch = store.fork_session(me, parent, at_seq=1).value.id
    for s in (branch, parent):
        store.delete_session(me, s)
    age(store, "sessions", [branch, parent], 60, "deleted_at")
    # A parent kept because its branch is alive.
    held = store.create_session(me).value.id
    store.append_messages(me, held, [{"role": "user", "content": "h"}])
    alive = store.fork_session(me, held, at_seq=1).value.id
    store.delete_session(me, held)
    age(store, "sessions", [held], 60, "deleted_at")

    done = store.apply_retention()

    assert sorted(done.sessions) == sorted([full, branch, parent])
    assert done.sessions.index(branch) < done.sessions.index(parent)
    assert done.kept_with_branches == [held]
    assert done.session_rows == {"messages": 4, "todos": 1, "uploads": 2}
    assert done.blobs == [up.sha256]  # `shared` is still used by `idle`
    remaining = {s.id for s in store.list_sessions(me).items} | {
        s.id for s in store.list_sessions(me, trashed=True).items
    }
    assert remaining == {idle, recent, held, alive}
    assert not store.blobs.exists(up.sha256) and store.blobs.exists(shared.sha256)
    with store.engine.sa_engine.connect() as conn:
        for table in (tables.messages, tables.todos, tables.uploads):
            left = conn.execute(
                sa.select(sa.func.count()).where(table.c.session_id.in_([full, branch, parent]))
            ).scalar_one()
            assert left == 0, table.name


def test_a_dry_run_writes_nothing_and_names_exactly_what_a_run_deletes(
    store: Threadkeep,
) -> None:
    me = Actor(store.create_user("ada").value.id)
    sid = store.create_session(me).value.id
    snaps = [snapshot(store, me, sid) for _ in range(3)]
    age(store, "snapshots", snaps[:2], 31)
    age(store, "analytics_events", [analytics(store, me, sid)], 91)
    gone = store.create_session(me).value.id
    store.append_messages(me, gone, [{"role": "user", "content": "x"}])
    store.upload(me, gone, [b"bytes of a purged session"], filename="x")
    store.delete_session(me, gone)
    age(store, "sessions", [gone], 31, "deleted_at")
    store.sync_state()  # PostgreSQL numbers the log on reads: do it before counting
    before = row_counts(store)

    dry = store.apply_retention(dry_run=True)

    assert row_counts(store) == before
    assert dry.dry_run and dry.transactions == 0 and dry.txids == []
    real = store.apply_retention()
    for kind in ("snapshots", "analytics_events", "sessions", "session_rows", "blobs"):
        assert getattr(dry, kind) == getattr(real, kind), kind
    assert dry.counts() == {
        "streams": 0,
        "snapshots": 2,
        "analytics_events": 1,
        "sessions": 1,
        "session_rows": 2,
        "blobs": 1,
    }


def test_batches_are_bounded_and_rules_can_be_turned_off(store: Threadkeep) -> None:
    me = Actor(store.create_user("ada").value.id)
    sid = store.create_session(me).value.id
    snaps = [snapshot(store, me, sid) for _ in range(5)]
    age(store, "snapshots", snaps, 400)
    gone = trashed(store, me, 400)

    off = store.apply_retention(
        rules=RetentionSettings(snapshot_days=0, analytics_days=0, trash_days=0)
    )
    assert off.total == 0 and len(store.list_snapshots(me, sid)) == 5

    done = store.apply_retention(rules=RetentionSettings(batch_size=2, trash_days=0))
    assert sorted(done.snapshots) == sorted(snaps)
    assert done.transactions == 3 and len(set(done.txids)) == 3
    assert store.get_session(me, gone).deleted_at is not None  # trash rule was off
    with pytest.raises(InvalidInput):
        store.apply_retention(dry_run="yes")  # type: ignore[arg-type]


def test_retention_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADKEEP_RETENTION__SNAPSHOT_DAYS", "7")
    monkeypatch.setenv("THREADKEEP_RETENTION__RUN_EVERY_SECONDS", "0")
    rules = load_settings().retention
    assert rules.snapshot_days == 7 and rules.run_every_seconds == 0
    assert rules.analytics_days == 90 and rules.trash_days == 30


def test_a_row_that_stops_being_expired_between_the_look_and_the_delete_is_kept(
    store: Threadkeep,
) -> None:
    me = Actor(store.create_user("ada").value.id)
    sid = store.create_session(me).value.id
    snaps = [snapshot(store, me, sid) for _ in range(2)]
    age(store, "snapshots", snaps, 31)
    restored = trashed(store, me, 31)
    cutoff = utcnow() - timedelta(days=30)
    looked = store.engine.read(
        lambda c: retention_q.expired_ids(c, tables.snapshots, cutoff, 10, None)
    )
    assert sorted(looked) == sorted(snaps)
    assert store.engine.read(lambda c: retention_q.expired_trash(c, cutoff)) == [restored]
    # Meanwhile the user stars one snapshot and takes the session out of the trash.
    store.update_snapshot(me, sid, snaps[0], {"starred": True})
    store.restore_session(me, restored)

    gone = store.engine.write(
        lambda tx: retention_q.delete_expired(tx, tables.snapshots, looked, cutoff)
    ).value
    purged = store.engine.write(
        lambda tx: retention_q.purge_expired_session(tx, restored, cutoff)
    ).value

    assert gone == [snaps[1]] and purged is None
    assert [s.id for s in store.list_snapshots(me, sid)] == [snaps[0]]
    assert store.get_session(me, restored).deleted_at is None


def test_a_stream_left_open_is_finished_incomplete_with_its_text_and_a_live_one_is_not(
    store: Threadkeep,
) -> None:
    """A writer that died mid-stream never finishes its message: retention
    finishes it ``incomplete`` once it has streamed longer than
    ``stream_hours``, keeping the text, logging the update for sync clients
    and making the text searchable. Streams younger than that, and finished
    messages however old, are left alone; a dry run only names it."""
    me = Actor(store.create_user("ada").value.id)
    sid = store.create_session(me).value.id
    dead = store.start_message(me, sid, {"role": "assistant", "content": "orphaned"}).value.id
    store.extend_message(me, dead, " reply")
    live = store.start_message(me, sid, {"role": "assistant", "content": "still"}).value.id
    done = store.start_message(me, sid, {"role": "assistant"}).value.id
    store.finish_message(me, done, content="finished long ago")
    age(store, "messages", [dead, done], 2, "created_at")  # the rule: 24 hours
    start = store.last_offset()

    off = store.apply_retention(rules=RetentionSettings(stream_hours=0))
    assert off.streams == [] and store.get_message(me, dead).status == "streaming"
    dry = store.apply_retention(dry_run=True)
    assert dry.streams == [dead] and dry.counts()["streams"] == 1
    assert store.get_message(me, dead).status == "streaming"

    real = store.apply_retention()

    assert real.streams == [dead] and len(real.txids) == real.transactions == 1
    got = store.get_message(me, dead)
    assert (got.status, got.content) == ("incomplete", "orphaned reply")
    assert store.get_message(me, live).status == "streaming"
    assert store.get_message(me, done).status == "complete"
    logged = [c for c in store.read_changes(me, start) if c.key == dead]
    assert [(c.op, c.txid, c.row["status"]) for c in logged] == [  # type: ignore[index]
        ("update", real.txids[0], "incomplete")
    ]
    assert {h.id for h in store.search(me, "orphaned", kinds=["messages"]).items} == {dead}
    with pytest.raises(InvalidState):  # the writer, back after all, is told
        store.extend_message(me, dead, " more")
    assert store.apply_retention().streams == []  # once


def test_the_open_streams_are_found_by_their_index(store: Threadkeep) -> None:
    """Retention's query for open streams reads the partial index of open
    streams (revision 0008), not the messages table: a big store pays
    nothing for the rule when it finds none. The query is the store's own,
    captured as it runs. On PostgreSQL it is explained as a prepared
    statement under its generic plan, which knows no bound value: what a
    pooled connection runs once psycopg prepares it (a bound status fails
    here)."""
    me = Actor(store.create_user("ada").value.id)
    sid = store.create_session(me).value.id
    store.start_message(me, sid, {"role": "assistant"})
    ran: list[tuple[str, Any]] = []
    with store.engine.sa_engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", lambda *a: ran.append((a[2], a[3])))
        found = retention_q.abandoned_streams(conn, utcnow(), limit=10, after=None)
        assert len(found) == 1
        ((sql, params),) = ran[-1:]
        plan = query_plan(conn, sql, params)
    assert "ix_messages_streaming" in plan, plan

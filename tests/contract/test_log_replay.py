"""Following the change log rebuilds every synced table.

A sync client takes a shape's snapshot, then applies every change logged after
the snapshot's offset (store/changes.py; sync/shapes.py turns the log into the
protocol's messages). Whatever the writes in between, the state it holds must
equal a fresh snapshot: a write path that forgets a row, logs a stale value,
logs a partial update missing a column it changed, or logs a row it then
rolls back, makes a client's copy drift from the server for good.

So: random sequences of the library's writes, all on one user (sessions,
appends with retried client ids, streams, tool and timeline events, forks,
rewinds, trash, restore, purge, every kind of the session record, the todo
list, the summary, uploads, retention, imports of a growing transcript and of
other tools' exports; tests/random_writes.py), with another user writing
beside it. Then, for every synced table, the follower's state is
compared with the table's snapshot, for the whole user and for one session's
shape. Writes the sequence makes invalid on purpose (to a trashed session, a
purge blocked by branches, a stale version) must be refused and, the
comparison shows, leave nothing behind in the log. The same run checks the
other views of those rows: search finds every message written with its word,
every history is seq 1..head, and a session's token totals are its own
messages'.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given

from conftest import apply_changes, db_property
from random_writes import OPS, STEPS, AtOnce, World, make_world, random_steps
from replay_checks import assert_views_agree, differences, followed, state_of
from threadkeep import Threadkeep
from threadkeep.store.tables import SYNCED_TABLES
from threadkeep.sync.encoding import encode_row, value_text
from threadkeep.sync.shapes import Shape, change_messages


def _in_session(table: str, row: dict[str, Any], sid: str) -> bool:
    return (row["id"] if table == "sessions" else row["session_id"]) == sid


def test_every_step_writes_when_its_target_allows(tk: Threadkeep, tmp_path: Path) -> None:
    """The property below is only as strong as its steps: run once each, in
    order, every step writes, but the two refused on purpose (a stale version;
    the other user's write into our session)."""
    world = make_world(tk, tmp_path)
    numbers = {"purge": [3], "summary": [1]}  # the rewind's branch; set, not delete
    for op in OPS:
        world.run(op, numbers.get(op, [0]))
    assert world.refused == ["stale_update", "other_user"]


@db_property(max_examples=40)
@given(steps=STEPS)
# a trashed fork restored, trashed again and purged by retention, then written to
@example(
    steps=[
        ("fork", [0, 1]),
        ("trash", [1]),
        ("restore", [1]),
        ("trash", [1]),
        ("retention", [0]),
        ("append", [0, 1, 1]),
    ]
)
# a rewind to the start moves every message and their events to a branch, which
# is purged while the record left behind names them
@example(
    steps=[
        ("append_with_events", [0]),
        ("record", [2, 0]),
        ("rewind", [0, 0]),
        ("purge", [1]),
        ("summary", [0, 1]),
    ]
)
def test_following_the_change_log_rebuilds_every_synced_table(
    tk: Threadkeep, tmp_path: Path, steps: list[tuple[str, list[int]]]
) -> None:
    world = make_world(tk, tmp_path)
    tk, me, first = world.tk, world.me, world.sessions[0]
    shapes = [Shape(t, me.user_id) for t in SYNCED_TABLES]
    shapes += [Shape(t, me.user_id, first) for t in SYNCED_TABLES]
    start = {s: tk.shape_snapshot(me, s.table, session_id=s.session_id) for s in shapes}
    for op, numbers in steps:
        world.run(op, numbers)

    whole = {t: tk.shape_snapshot(me, t) for t in SYNCED_TABLES}
    for shape in shapes:
        want = [
            r
            for r in whole[shape.table].rows
            if shape.session_id is None or _in_session(shape.table, r, first)
        ]
        held = followed(tk, me, shape, start[shape])
        assert differences(held, state_of(shape, want)) == [], (shape, steps)
    for t in SYNCED_TABLES:  # the shape endpoint's read, encoded as it is read
        encoded = tk.shape_snapshot(me, t, encode=value_text(t)).rows
        assert encoded == [encode_row(t, r) for r in whole[t].rows], (t, steps)
    theirs = {r["id"] for t in SYNCED_TABLES for r in tk.shape_snapshot(world.them, t).rows}
    mine = {r["id"] for t in SYNCED_TABLES for r in whole[t].rows}
    assert not theirs & mine

    assert_views_agree(tk, me, steps)
    # Token totals are the session's own messages' (an import may instead
    # carry its source's, so its sessions and their branches are left out).
    own: dict[str, list[int]] = {}
    for r in whole["messages"].rows:
        t = own.setdefault(r["session_id"], [0, 0])
        t[0] += r["input_tokens"] or 0
        t[1] += r["output_tokens"] or 0
    for sid in world.sessions:  # the counts and the last page agree with the history
        history = tk.get_history(me, sid)
        assert tk.count_messages(me, sid) == len(history)
        assert tk.last_messages(me, sid, 3) == history[-3:]
        s = tk.get_session(me, sid)
        if "source" not in s.metadata:
            assert [s.input_tokens, s.output_tokens] == own.get(sid, [0, 0]), (sid, steps)


@pytest.mark.parametrize(("seed", "instances"), [(1, 1), (2, 1), (3, 2)])
def test_a_live_follower_of_concurrent_writers_ends_with_the_tables(
    tk: Threadkeep, tmp_path: Path, seed: int, instances: int
) -> None:
    """Four threads run random writes on the same user's sessions at once
    (group commit mixes their kinds in one transaction; on PostgreSQL
    concurrent transactions commit out of order), through one store or two
    opened on the same database (on SQLite, two writers contending for its
    lock), while a follower reads every synced table's changes as they come.
    Once the writers stop and the follower catches up, each table it holds
    equals a snapshot."""
    first = make_world(tk, tmp_path)
    tk, me = first.tk, first.me
    second = Threadkeep.open(tk.engine.url) if instances == 2 else tk
    stores = [Threadkeep(st.engine, st.limits, blobs=tk.blob_settings) for st in (tk, second)]
    worlds = [World(stores[i % instances], me, first.them, tmp_path) for i in range(4)]
    for w in worlds:
        w.sessions = list(first.sessions)  # they share the first session
    rng = random.Random(seed)
    plans = [random_steps(rng, 30) for _ in worlds]
    shapes = [Shape(t, me.user_id) for t in SYNCED_TABLES]
    snaps = {s: tk.shape_snapshot(me, s.table) for s in shapes}
    states = {s: state_of(s, snaps[s].rows) for s in shapes}
    after = {s: snaps[s].offset for s in shapes}

    def catch_up() -> None:
        for s in shapes:
            while True:
                got = tk.shape_changes(me, s.table, after[s], limit=50)
                apply_changes(states[s], change_messages(s, got.changes))
                if got.changes:
                    after[s] = got.changes[-1].offset
                if got.complete:
                    break

    writers = AtOnce(worlds, plans)
    while writers.running():
        catch_up()
    failures = writers.join()
    catch_up()
    if second is not tk:
        second.close()
    assert failures == []
    for s in shapes:
        want = state_of(s, tk.shape_snapshot(me, s.table).rows)
        assert differences(states[s], want) == [], (s, seed)
    assert_views_agree(tk, me, seed)

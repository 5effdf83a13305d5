"""A shape snapshot followed from its offset equals the table, under writers.

8 threads append to and rename sessions while readers repeatedly take a
snapshot (``shape_snapshot``) at some moment and then follow the shape's
changes from the snapshot's offset. When the writers stop, each reader's state
(snapshot + changes, applied as a client applies them: an insert for a key
already held fails) must equal the table. On PostgreSQL this is the case where
a sequence-ordered log would skip or repeat: snapshots taken while other
transactions are in flight.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sync_helpers import new_caller

from conftest import apply_changes
from threadkeep import Threadkeep
from threadkeep.model.sync import ShapeSnapshot
from threadkeep.sync.shapes import Shape, change_messages, snapshot_messages

WRITERS = 8
SECONDS = 2.0


def _state_from(tk: Threadkeep, actor: Any, table: str, snap: ShapeSnapshot) -> dict[str, Any]:
    shape = Shape(table, actor.user_id)
    state: dict[str, dict[str, Any]] = {}
    apply_changes(state, list(snapshot_messages(shape, snap.rows)))
    after = snap.offset
    while True:
        got = tk.shape_changes(actor, table, after, limit=200)
        apply_changes(state, change_messages(shape, got.changes))
        if got.complete:
            return state
        after = got.changes[-1].offset


def test_snapshots_taken_under_concurrent_writers_followed_from_their_offset_equal_the_table(
    tk: Threadkeep,
) -> None:
    me = new_caller(tk)
    sessions = [tk.create_session(me.actor, title="s").value.id for _ in range(4)]
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                sid = sessions[(n + i) % len(sessions)]
                tk.append_messages(me.actor, sid, [{"role": "user", "content": f"{n}-{i}"}])
                if i % 5 == 0:
                    tk.update_session(me.actor, sid, title=f"{n}-{i}")
                i += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    snaps: list[tuple[str, ShapeSnapshot]] = []
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for table in ("messages", "sessions"):
            snaps.append((table, tk.shape_snapshot(me.actor, table)))
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert len(snaps) >= 6
    final = {t: tk.shape_snapshot(me.actor, t) for t in ("messages", "sessions")}
    for table, snap in snaps:
        want = {
            str(r["id"]): dict(r)
            for r in (
                m["value"]
                for m in snapshot_messages(Shape(table, me.actor.user_id), final[table].rows)
            )
        }
        got = {v["id"]: v for v in _state_from(tk, me.actor, table, snap).values()}
        assert got.keys() == want.keys(), (table, len(got), len(want))
        for key, row in want.items():
            for col in ("title", "head_seq", "content", "seq", "session_id"):
                if col in row:
                    assert got[key].get(col) == row[col], (table, key, col)

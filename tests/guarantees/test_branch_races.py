"""Branch operations racing each other on one tree of sessions, on both engines.

Forks, rewinds (by seq and by message id), appends, streamed replies, tool
events, and trash-then-purge of leaves, from four threads at once. Each
operation either happens whole or is refused with a typed error. Afterwards
every history is whole (seq 1..head, and a branch's first ``fork_seq``
messages are exactly its parent's), and the change log, followed from
before the threads started, rebuilds every synced table as a sync client
would hold it.

Two races of this kind were found by luck (a fork racing a rewind of its
parent, and a fork at a message id racing a rewind and an append; see
CHANGELOG.md). This test looks for the whole family on purpose.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
import time

from conftest import running_in_threads
from replay_checks import assert_log_rebuilds
from threadkeep import (
    Actor,
    HasBranches,
    InvalidInput,
    InvalidState,
    MessageNotFound,
    SessionNotFound,
    Threadkeep,
)
from threadkeep.store import tables
from threadkeep.sync.shapes import Shape

# The refusals a racing operation may meet: the session or message it chose
# was moved, trashed, purged or branched by another thread meanwhile.
REFUSED = (HasBranches, InvalidInput, InvalidState, MessageNotFound, SessionNotFound)
THREADS = 4
SECONDS = 2.0


class Tree:
    """The sessions the threads know of (some may be gone by now)."""

    def __init__(self, tk: Threadkeep, me: Actor, root: str) -> None:
        self.tk, self.me, self.root = tk, me, root
        self.ids = [root]
        self.lock = threading.Lock()
        self.done: dict[str, int] = {}

    def add(self, sid: str) -> None:
        with self.lock:
            self.ids.append(sid)

    def pick(self, rng: random.Random) -> str:
        with self.lock:
            return rng.choice(self.ids)

    def step(self, rng: random.Random) -> None:
        tk, me = self.tk, self.me
        sid = self.pick(rng)
        op = rng.choice(
            ["append", "append", "fork", "fork_at_message", "rewind", "purge", "stream", "tool"]
        )
        if op == "append":
            n = rng.randint(1, 3)
            tk.append_messages(me, sid, [{"role": "user", "content": f"{sid[-4:]}"}] * n)
        elif op == "fork":
            head = tk.get_session(me, sid).head_seq
            self.add(tk.fork_session(me, sid, at_seq=rng.randint(0, head)).value.id)
        elif op == "fork_at_message":
            last = tk.last_messages(me, sid, 1)
            if last:
                self.add(tk.fork_session(me, sid, at_message_id=last[-1].id).value.id)
        elif op == "rewind":
            head = tk.get_session(me, sid).head_seq
            branch = tk.rewind_session(me, sid, to_seq=rng.randint(0, head)).value.branch
            if branch is not None:
                self.add(branch.id)
        elif op == "stream":  # a reply arriving while its session is rewound
            m = tk.start_message(me, sid, {"role": "assistant", "content": "a"}).value
            for _ in range(rng.randint(0, 2)):
                tk.extend_message(me, m.id, " b")
            tk.finish_message(me, m.id, status=rng.choice(["complete", "incomplete"]))
        elif op == "tool":
            last = tk.last_messages(me, sid, 1)
            link = {"message_id": last[-1].id} if last else {}
            ev = tk.start_tool_event(me, sid, {"name": "t", **link}).value
            tk.finish_tool_event(me, ev.id, output={"ok": True})
        elif sid != self.root:  # the root stays, or the tree could end early
            tk.delete_session(me, sid)
            try:
                tk.purge_session(me, sid)
            except HasBranches:
                tk.restore_session(me, sid)
        self.done[op] = self.done.get(op, 0) + 1


def test_forks_rewinds_appends_and_purges_racing_keep_every_history_whole(
    tk: Threadkeep, actor: Actor
) -> None:
    seed = int(os.environ.get("THREADKEEP_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"THREADKEEP_TEST_SEED={seed}")
    root = tk.create_session(actor, title="root").value.id
    tk.append_messages(actor, root, [{"role": "user", "content": f"r{i}"} for i in range(30)])
    start = {Shape(t, actor.user_id): tk.shape_snapshot(actor, t) for t in tables.SYNCED_TABLES}
    tree = Tree(tk, actor, root)

    def step(rng: random.Random) -> None:
        with contextlib.suppress(*REFUSED):
            tree.step(rng)

    loops = [functools.partial(step, random.Random(seed * 10 + i)) for i in range(THREADS)]
    with running_in_threads(*loops):
        time.sleep(SECONDS)
    assert tree.done.get("fork", 0) + tree.done.get("fork_at_message", 0) > 5, tree.done
    assert tree.done.get("rewind", 0) > 5, tree.done

    live = {s.id: s for s in _all_sessions(tk, actor)}
    histories = {sid: [m.id for m in tk.get_history(actor, sid)] for sid in live}
    for sid, s in live.items():
        seqs = [m.seq for m in tk.get_history(actor, sid)]
        assert seqs == list(range(1, s.head_seq + 1)), (seed, sid)
        if s.parent_session_id is not None:
            assert s.fork_seq is not None
            parent = histories.get(s.parent_session_id)
            assert parent is not None, (seed, sid, "its parent is gone")
            assert histories[sid][: s.fork_seq] == parent[: s.fork_seq], (seed, sid)
    # An event points at a message of its own session: a rewind that moves
    # the message takes the event along, or the event is refused.
    for sid in live:
        for ev in tk.list_tool_events(actor, sid):
            if ev.message_id is not None:
                owner = tk.get_message(actor, ev.message_id).session_id
                assert owner == sid, (seed, ev.id, "its message is in", owner)
    # What a sync client saw: the log, followed from before, rebuilds every
    # synced table, whatever the interleaving.
    assert_log_rebuilds(tk, actor, start, seed)


def _all_sessions(tk: Threadkeep, actor: Actor) -> list:  # type: ignore[type-arg]
    """Every session of the actor, live or in the trash (a branch's parent
    may be in the trash, its history still shared)."""
    out = []
    for trash in (False, True):
        cursor = None
        while True:
            page = tk.list_sessions(actor, limit=200, cursor=cursor, trashed=trash)
            out.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return out

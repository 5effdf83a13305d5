"""Random branch operations (and retention) on one tree of sessions, and the checks of what
they leave: shared by the branch race tests and their child processes.

An operation either happens whole or is refused with one of ``REFUSED``
(the session or message it chose was moved, trashed, purged or branched by
another writer meanwhile); anything else it raises is a bug and fails the
test. ``check_tree`` then asks that every history is whole, that a branch
starts with its parent's messages, that tool events stay with their
messages, and that the change log rebuilds every synced table.
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any

from replay_checks import assert_log_rebuilds
from threadkeep import (
    Actor,
    HasBranches,
    InvalidInput,
    InvalidState,
    MessageNotFound,
    SessionNotFound,
    Threadkeep,
    ToolEventNotFound,
)
from threadkeep.config import RetentionSettings
from threadkeep.store import tables
from threadkeep.sync.shapes import Shape

REFUSED = (
    HasBranches,
    InvalidInput,
    InvalidState,
    MessageNotFound,
    SessionNotFound,
    ToolEventNotFound,
)

OPS = (
    "append",
    "append",
    "fork",
    "fork_at_message",
    "rewind",
    "purge",
    "stream",
    "tool",
    "checkpoint",
    "file_change",
    "todos",
    "trash",
    "retention",
)

# Retention's periods: a billionth of a day (or hour), so that each run does all
# it may: purge the trash, finish open streams, drop old snapshots.
_NOW = 1e-9


class Tree:
    """The sessions one writer knows of (some may be gone by now). A writer
    in another process learns of the others' branches by listing the
    sessions every ``REFRESH`` steps."""

    REFRESH = 25

    def __init__(self, tk: Threadkeep, me: Actor, root: str) -> None:
        self.tk, self.me, self.root = tk, me, root
        self.ids = [root]
        self.lock = threading.Lock()
        self.done: dict[str, int] = {}
        self.steps = 0

    def add(self, sid: str) -> None:
        with self.lock:
            self.ids.append(sid)

    def pick(self, rng: random.Random) -> str:
        with self.lock:
            self.steps += 1
            refresh = self.steps % self.REFRESH == 0
        if refresh:
            live = [s.id for s in all_sessions(self.tk, self.me, trashed=(False,))]
            with self.lock:
                self.ids = live or [self.root]
        with self.lock:
            return rng.choice(self.ids)

    def step(self, rng: random.Random) -> None:
        """One random operation; a refusal in ``REFUSED`` is swallowed."""
        op = rng.choice(OPS)
        with contextlib.suppress(*REFUSED):
            self._run(op, self.pick(rng), rng)
            with self.lock:
                self.done[op] = self.done.get(op, 0) + 1

    def _run(self, op: str, sid: str, rng: random.Random) -> None:
        tk, me = self.tk, self.me
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
        elif op == "checkpoint":  # names a message that a rewind may move
            last = tk.last_messages(me, sid, 1)
            if last:
                tk.create_checkpoint(me, sid, {"message_id": last[-1].id, "context": {"k": 1}})
        elif op == "file_change":  # names a tool event that a rewind may move
            events = tk.list_tool_events(me, sid)
            link = {"tool_event_id": events[-1].id} if events else {}
            tk.record_file_change(me, sid, {"path": "a.py", "diff": "+x", **link})
        elif op == "todos":
            tk.replace_todos(me, sid, [{"content": f"t{rng.randint(0, 3)}"}])
        elif op == "trash":  # left there, for retention to purge (or not: branches)
            if sid != self.root:
                tk.delete_session(me, sid)
        elif op == "retention":  # purges what another writer just trashed
            rules = RetentionSettings(
                snapshot_days=_NOW,
                analytics_days=_NOW,
                trash_days=_NOW,
                stream_hours=_NOW,
                collect_blobs=False,
            )
            tk.apply_retention(rules=rules)
        elif sid != self.root:  # purge; the root stays, or the tree could end early
            tk.delete_session(me, sid)
            try:
                tk.purge_session(me, sid)
            except HasBranches:
                tk.restore_session(me, sid)


def snapshot(tk: Threadkeep, actor: Actor) -> dict[Shape, Any]:
    """Every synced table as a sync client holds it now (for check_tree)."""
    return {Shape(t, actor.user_id): tk.shape_snapshot(actor, t) for t in tables.SYNCED_TABLES}


def check_tree(tk: Threadkeep, actor: Actor, start: dict[Shape, Any], seed: int) -> None:
    """Everything the racing writers left must be whole (see the module doc)."""
    live = {s.id: s for s in all_sessions(tk, actor)}
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


def all_sessions(
    tk: Threadkeep, actor: Actor, trashed: tuple[bool, ...] = (False, True)
) -> list[Any]:
    """Every session of the actor, live or in the trash (a branch's parent
    may be in the trash, its history still shared)."""
    out = []
    for trash in trashed:
        cursor = None
        while True:
            page = tk.list_sessions(actor, limit=200, cursor=cursor, trashed=trash)
            out.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return out

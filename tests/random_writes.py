"""Random sequences of one user's writes through the library, for the
properties that must hold whatever was written (test_log_replay.py,
test_export_property.py): every kind of write, with another user beside."""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from record_kinds import KINDS, Ctx
from threadkeep import Actor, InvalidInput, SessionNotFound, Threadkeep, ThreadkeepError
from threadkeep.config import BlobSettings, RetentionSettings
from threadkeep.importers import FORMATS, run_import

T = TypeVar("T")
Plan = list[tuple[str, list[int]]]  # (operation, its numbers) a step

# The word every message the writes make carries: what search must find.
WORD = "replay"

# Retention's periods (days, hours): a billionth, so that every rule does all
# it may (non-starred snapshots, analytics events, the trash, open streams).
NOW = 1e-9
OPS = [
    "create_session",
    "update_session",
    "stale_update",
    "append",
    "append",
    "append_with_events",
    "stream",
    "finish_stream",
    "tool_event",
    "timeline",
    "fork",
    "rewind",
    "trash",
    "restore",
    "purge",
    "record",
    "record",
    "update_record",
    "delete_record",
    "todos",
    "summary",
    "upload",
    "retention",
    "other_user",
    "import_transcript",
    "import_fixture",
]
# Exports with branches, tool calls and a sidechain (tests/importers/data; the
# ChatGPT one also holds a corrupted conversation, which fails alone).
FIXTURES = Path(__file__).parent / "importers" / "data"
IMPORTS = [
    ("chatgpt", FIXTURES / "chatgpt"),
    ("open-webui", FIXTURES / "open-webui" / "chat-export-1718000000000.json"),
    ("claude-code", FIXTURES / "claude-project"),
]


class World:
    """One user's writes. Each step is an operation and a few numbers that make
    its choices among what exists (which session, how many, which field): plain
    data, so explicit examples can name a whole sequence."""

    def __init__(self, tk: Threadkeep, me: Actor, them: Actor, files: Path) -> None:
        self.tk, self.me, self.them = tk, me, them
        self.transcript_path = files / f"{me.user_id}-{id(self)}.jsonl"  # one per World
        self.transcript: list[dict[str, Any]] = []
        self.numbers: Iterator[int] = itertools.cycle([0])
        self.sessions: list[str] = []
        self.records: list[tuple[int, str, str]] = []  # (kind index, session, id)
        self.uploads: list[str] = []
        self.tool_events: list[str] = []
        self.streams: list[str] = []  # messages left streaming, as a dead writer leaves them
        self.client_ids = itertools.cycle(["c1", "c2", "c3", "c4", "c5"])
        self.names = itertools.count()
        self.refused: list[str] = []  # the steps that raised, in order

    def number(self, lo: int, hi: int) -> int:
        """The step's next number, folded into lo..hi."""
        return lo + next(self.numbers) % (hi - lo + 1)

    def flag(self) -> bool:
        return self.number(0, 1) == 1

    def pick(self, options: Sequence[T]) -> T:
        return options[self.number(0, len(options) - 1)]

    def session(self) -> str:
        return self.pick(self.sessions)

    def head(self, sid: str) -> int:
        return self.tk.count_messages(self.me, sid)

    def ctx(self, sid: str) -> Ctx:
        """A message and a tool event of ``sid``, for the record kinds that
        name them (made if the session has none)."""
        tk, me = self.tk, self.me
        history = tk.last_messages(me, sid, 1)
        own = [m for m in history if m.session_id == sid]
        msg = own[0].id if own else tk.append_message(me, sid, self.message()).value.id
        ev = tk.start_tool_event(me, sid, {"name": "edit", "message_id": msg}).value.id
        return Ctx(tk, me, sid, msg, ev)

    def message(self, client_id: bool = False) -> dict[str, Any]:
        m: dict[str, Any] = {
            "role": self.pick(["user", "assistant", "tool"]),
            "content": f"words {next(self.names)} about {WORD}",
            "metadata": {"n": self.number(0, 3)},
            "input_tokens": self.number(0, 9) or None,
            "output_tokens": self.number(0, 9),
        }
        if client_id:
            m["client_id"] = next(self.client_ids)
        return m

    # --- the operations -----------------------------------------------------------

    def create_session(self) -> None:
        title = self.pick([None, "plans", "notes"])
        s = self.tk.create_session(self.me, title=title, tags=["t"]).value
        self.sessions.append(s.id)

    def session_changes(self) -> dict[str, Any]:
        """Some of a session's fields, changed (maybe none of them)."""
        every = {
            "title": self.pick([None, "renamed", "again"]),
            "tags": self.pick([[], ["a"], ["a", "b"]]),
            "starred": self.flag(),
            "pinned": self.flag(),
            "archived": self.flag(),
            "metadata": {"k": self.number(0, 9)},
        }
        return {k: v for k, v in every.items() if self.flag()}

    def update_session(self) -> None:
        self.tk.update_session(self.me, self.session(), **self.session_changes())

    def stale_update(self) -> None:
        sid = self.session()
        version = self.tk.get_session(self.me, sid).version
        self.tk.update_session(self.me, sid, title="stale", expected_version=version - 1)

    def append(self) -> None:
        n = self.number(1, 3)
        with_ids = self.flag()  # ids repeat: some appends are retries
        self.tk.append_messages(self.me, self.session(), [self.message(with_ids) for _ in range(n)])

    def append_with_events(self) -> None:
        sid = self.session()
        c = self.ctx(sid)
        self.tk.append(
            self.me,
            sid,
            [self.message()],
            tool_events=[{"name": "grep", "message_id": c.message_id, "status": "succeeded"}],
            timeline_events=[{"kind": "note", "payload": {"x": 1}, "message_id": c.message_id}],
        )

    def stream(self) -> None:
        m = self.tk.start_message(self.me, self.session(), {"role": "assistant"}).value
        for _ in range(self.number(0, 2)):
            self.tk.extend_message(self.me, m.id, " more")
        if self.flag():  # or left streaming
            status = self.pick(["complete", "incomplete"])
            self.tk.finish_message(self.me, m.id, status=status, output_tokens=3)
        else:
            self.streams.append(m.id)

    def finish_stream(self) -> None:
        """What an app does for a stream whose writer died: finish it now
        rather than wait for retention. One that is finished already (by an
        earlier step or by retention) or purged is refused."""
        mid = self.open_stream()
        status = self.pick(["complete", "incomplete"])
        content = f"final {WORD}" if self.flag() else None
        self.tk.finish_message(self.me, mid, status=status, content=content)

    def open_stream(self) -> str:
        """A stream left open earlier, or one started now by a writer that
        dies at once."""
        if self.streams and self.flag():
            return self.pick(self.streams)
        m = self.tk.start_message(self.me, self.session(), {"role": "assistant", "content": "cut"})
        self.streams.append(m.value.id)
        return m.value.id

    def tool_event(self) -> None:
        if self.tool_events and self.flag():
            ev = self.pick(self.tool_events)
            if self.flag():
                self.tk.update_tool_event(self.me, ev, {"status": "running", "output": [1]})
            else:
                self.tk.finish_tool_event(self.me, ev, output={"ok": True})
            return
        ev = self.tk.start_tool_event(self.me, self.session(), {"name": "run", "input": [1]})
        self.tool_events.append(ev.value.id)

    def timeline(self) -> None:
        events = [{"kind": "step", "payload": {"i": i}} for i in range(self.number(1, 3))]
        self.tk.append_timeline_events(self.me, self.session(), events)

    def fork(self) -> None:
        sid = self.session()
        at = self.number(0, self.head(sid))
        self.sessions.append(self.tk.fork_session(self.me, sid, at_seq=at).value.id)

    def rewind(self) -> None:
        sid = self.session()
        to = self.number(0, self.head(sid))
        branch = self.tk.rewind_session(self.me, sid, to_seq=to).value.branch
        if branch is not None:
            self.sessions.append(branch.id)

    def trash(self) -> None:
        self.tk.delete_session(self.me, self.session())

    def restore(self) -> None:
        self.tk.restore_session(self.me, self.session())

    def purge(self) -> None:
        sid = self.session()
        self.tk.purge_session(self.me, sid)
        self.sessions.remove(sid)

    def record(self) -> None:
        i = self.number(0, len(KINDS) - 1)
        c = self.ctx(self.session())
        row = KINDS[i].create(c, {}).value
        self.records.append((i, c.sid, row.id))

    def _a_record(self) -> tuple[int, Ctx, str]:
        i, sid, key = self.pick(self.records)
        return i, Ctx(self.tk, self.me, sid, "", ""), key

    def update_record(self) -> None:
        if self.records:
            i, c, key = self._a_record()
            KINDS[i].patch(c, key, KINDS[i].update)

    def delete_record(self) -> None:
        if self.records:
            i, c, key = self._a_record()
            KINDS[i].delete(c, key)

    def todo_list(self, sid: str) -> list[dict[str, Any]]:
        """A new todo list for ``sid``: some of its items kept, one added."""
        keep = [t.id for t in self.tk.list_todos(self.me, sid)][: self.number(0, 2)]
        todos: list[dict[str, Any]] = [
            {"id": k, "content": "kept", "status": "completed"} for k in keep
        ]
        todos.append({"content": f"new {next(self.names)}"})
        return todos

    def todos(self) -> None:
        sid = self.session()
        self.tk.replace_todos(self.me, sid, self.todo_list(sid))

    def summary(self) -> None:
        sid = self.session()
        if self.flag():
            self.tk.set_summary(self.me, sid, {"summary": f"so far {next(self.names)}"})
        else:
            self.tk.delete_summary(self.me, sid)

    def upload(self) -> None:
        if self.uploads and self.flag():
            self.tk.delete_upload(self.me, self.uploads.pop())
            return
        up = self.tk.upload(self.me, self.session(), [b"%d" % next(self.names)], filename="a.txt")
        self.uploads.append(up.value.id)

    def retention(self) -> None:
        rules = RetentionSettings(
            snapshot_days=NOW,
            analytics_days=NOW,
            trash_days=NOW,
            stream_hours=NOW,  # the streams left open are finished
            collect_blobs=False,
        )
        self.tk.apply_retention(rules=rules)
        self.sessions = [s for s in self.sessions if self._exists(s)]

    def _exists(self, sid: str) -> bool:
        try:
            self.tk.get_session(self.me, sid)
        except SessionNotFound:
            return False
        return True

    def other_user(self) -> None:
        """Another user writes, in their own session and (refused) in ours."""
        theirs = self.tk.create_session(self.them, title="theirs").value.id
        self.tk.append_message(self.them, theirs, {"role": "user", "content": "mine"})
        self.tk.append_message(self.them, self.session(), {"role": "user", "content": "yours"})

    def import_transcript(self) -> None:
        """A Claude Code transcript that grows between imports: the first
        import creates its session, a later one adds what it gained (or, if
        other steps changed that session meanwhile, is refused)."""
        for _ in range(self.number(1, 4)):
            self.transcript.append(transcript_record(len(self.transcript)))
        path = self.transcript_path
        path.parent.mkdir(parents=True, exist_ok=True)  # the blob store makes it lazily
        path.write_text("".join(json.dumps(r) + "\n" for r in self.transcript), encoding="utf-8")
        self._import("claude-code", path)

    def import_fixture(self) -> None:
        """Another tool's export, with branches: created the first time,
        unchanged after (or, once steps changed its sessions, refused)."""
        fmt, path = self.pick(IMPORTS)
        self._import(fmt, path)

    def _import(self, fmt: str, path: Path) -> None:
        items = FORMATS[fmt].read(path, self.me.user_id)
        report = run_import(self.tk, self.me, items, format=fmt, path=str(path))
        done = [r for r in report.sessions if r.status != "failed"]
        if not done:
            raise InvalidInput(fmt, repr(report.failed))
        self.sessions += [r.session_id for r in done if r.session_id not in self.sessions]

    def run(self, op: str, numbers: list[int]) -> None:
        self.numbers = itertools.cycle(numbers)
        if not self.sessions:
            self.create_session()
        try:
            getattr(self, op)()
        except ThreadkeepError:
            self.refused.append(op)


class AtOnce:
    """Each world's plan run in a thread of its own, all started at once."""

    def __init__(self, worlds: Sequence[World], plans: Sequence[Plan]) -> None:
        self.failures: list[BaseException] = []  # anything but a refused write
        self.threads = [
            threading.Thread(target=self._write, args=wp) for wp in zip(worlds, plans, strict=True)
        ]
        for t in self.threads:
            t.start()

    def _write(self, world: World, plan: Plan) -> None:
        try:
            for op, numbers in plan:
                world.run(op, numbers)
        except BaseException as exc:
            self.failures.append(exc)

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self) -> list[BaseException]:
        """Wait for every plan; what they raised (``World.run`` keeps refusals)."""
        for t in self.threads:
            t.join()
        return self.failures


def transcript_record(i: int) -> dict[str, Any]:
    """Record ``i`` of a linear Claude Code transcript: a prompt, an answer
    that calls a tool, the tool's result, and so on."""
    body: dict[str, Any] = {
        "uuid": f"u{i}",
        "parentUuid": f"u{i - 1}" if i else None,
        "sessionId": "replay",
        "timestamp": f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
    }
    tool = f"toolu_{i - i % 3 + 1}"
    if i % 3 == 0:
        message: dict[str, Any] = {"role": "user", "content": f"prompt {i} about {WORD}"}
    elif i % 3 == 1:
        text = {"type": "text", "text": f"answer {i} about {WORD}"}
        call = {"type": "tool_use", "id": tool, "name": "Bash", "input": {"i": i}}
        message = {"role": "assistant", "id": f"msg{i}", "content": [text, call]}
    else:
        result = {"type": "tool_result", "tool_use_id": tool, "content": f"ok {i}"}
        message = {"role": "user", "content": [result]}
    return {**body, "type": message["role"], "message": message}


def random_steps(rng: random.Random, n: int) -> list[tuple[str, list[int]]]:
    """Steps as STEPS draws them, from a seeded generator (for threads)."""
    return [(rng.choice(OPS), [rng.randrange(1001) for _ in range(6)]) for _ in range(n)]


STEPS = st.lists(
    st.tuples(st.sampled_from(OPS), st.lists(st.integers(0, 1000), min_size=1, max_size=6)),
    min_size=1,
    max_size=25,
)


def random_writers(first: World, n: int = 2) -> list[Callable[[], None]]:
    """``n`` loops of random steps (seeded 0..n-1), each its own World of
    ``first``'s user, store and sessions: for conftest.running_in_threads,
    to write every kind of row while a backup or a copy is taken."""
    loops = []
    for i in range(n):
        w = World(first.tk, first.me, first.them, first.transcript_path.parent)
        w.sessions = list(first.sessions)
        rng = random.Random(i)

        def loop(w: World = w, rng: random.Random = rng) -> None:
            for op, numbers in random_steps(rng, 10):
                w.run(op, numbers)

        loops.append(loop)
    return loops


def make_world(tk: Threadkeep, tmp_path: Path, me: Actor | None = None) -> World:
    """A user (``me``, or a new one) with one session holding one message,
    and another user."""
    tk = Threadkeep(tk.engine, tk.limits, blobs=BlobSettings(backend="fs", path=str(tmp_path)))
    me = me or Actor(tk.create_user("replay").value.id)
    world = World(tk, me, Actor(tk.create_user("other").value.id), tmp_path)
    world.create_session()
    tk.append_message(world.me, world.sessions[0], {"role": "user", "content": "hello"})
    return world

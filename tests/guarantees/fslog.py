"""Replay fslog.c's record: what a power cut could still take away.

A directory entry (a file created, a directory made, a rename's new name) is
durable once its directory has been fsynced after the entry was made; a
file's bytes once the file has been fsynced after it was made (a rename
carries the state of the bytes with it). At each ``ack <label>`` line (the
moment the code under test told its caller the work was done) every entry
made under ``root`` that still exists must be durable in both senses.

Removals are checked where a scenario asks (``gone``): a file deleted so
that it stays deleted (an erased user's blob) is gone for good only once
its directory has been fsynced after the removal.

What the record cannot see: writes to a file after its last fsync (the
bytes rule only asks that a file made here was fsynced at least once after
it was made), and mmap'ed files. SQLite's ``-shm`` file is memory shared
between connections, rebuilt from the log after a crash, and is not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _transient(path: str) -> bool:
    return path.endswith("-shm")


@dataclass
class Replay:
    root: str
    step: int = 0
    # path -> (kind, step its entry was made, step its bytes were made or None)
    live: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)
    synced: dict[str, int] = field(default_factory=dict)  # path -> last fsync step
    removed: dict[str, int] = field(default_factory=dict)  # path -> step it went
    gone: Callable[[str], bool] = lambda _: False  # removals that must last
    problems: dict[str, list[str]] = field(default_factory=dict)  # ack label -> problems

    def _mine(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + "/")

    def line(self, text: str) -> None:
        self.step += 1
        op, _, rest = text.partition(" ")
        if op == "ack":
            self.problems[rest] = self.not_durable()
            return
        if op == "rename":
            src, dst = rest.split("\t")
            self._rename(src, dst)
            return
        path = rest
        if op == "sync":
            self.synced[path] = self.step
        elif not self._mine(path):
            return
        elif op == "create":
            self._made(path, ("file", self.step, self.step))
        elif op == "mkdir":
            self._made(path, ("dir", self.step, None))
        elif op in ("unlink", "rmdir"):
            self.live.pop(path, None)
            self.removed[path] = self.step

    def _made(self, path: str, entry: tuple[str, int, int | None]) -> None:
        self.live[path] = entry
        self.removed.pop(path, None)

    def _rename(self, src: str, dst: str) -> None:
        moved = {p: v for p, v in self.live.items() if p == src or p.startswith(src + "/")}
        for p in moved:
            del self.live[p]
        if self._mine(src):
            self.removed[src] = self.step
        if not self._mine(dst):
            return
        kind, _, made = moved.get(src, ("file", 0, None))
        if src not in moved and kind == "file":
            # A file made before the record began: its bytes are the
            # caller's business, its new name is ours.
            made = None
        elif made is not None and self.synced.get(src, -1) > made:
            made = None  # its bytes were synced under the old name
        self._made(dst, (kind, self.step, made))
        for p, (k, _, m) in moved.items():
            if p != src:
                self._made(dst + p[len(src) :], (k, self.step, m))

    def not_durable(self) -> list[str]:
        out = []
        for path, (_kind, entry_made, bytes_made) in sorted(self.live.items()):
            if _transient(path):
                continue
            parent = _parent(path)
            if self.synced.get(parent, -1) < entry_made:
                out.append(f"{path}: its name is not durable (no fsync of {parent} after it)")
            if bytes_made is not None and self.synced.get(path, -1) < bytes_made:
                out.append(f"{path}: its bytes were never fsynced")
        for path, went in sorted(self.removed.items()):
            parent = _parent(path)
            if self.gone(path) and self.synced.get(parent, -1) < went:
                out.append(f"{path}: its removal is not durable (no fsync of {parent} after it)")
        return out


def replay(
    log: Path, root: Path, gone: Callable[[str], bool] = lambda _: False
) -> dict[str, list[str]]:
    """Each ack label of ``log`` with what was not durable at that moment;
    ``gone`` picks the removed paths that must stay removed."""
    r = Replay(str(root), gone=gone)
    for text in log.read_text().splitlines():
        r.line(text)
    return r.problems

"""What the importers share: the source error, text repair, timestamps,
streaming readers (JSON lines, a JSON array element by element) and the
tree-to-branches rule."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from threadkeep.errors import InvalidInput
from threadkeep.model.imports import ImportedSession

MAX_LINE = 256 * 1024 * 1024  # one JSON line larger than this is refused, not read


class SourceError(InvalidInput):
    """A record that fails its session: ``where`` is ``file line N``. An
    InvalidInput, so raised inside an import's transaction it rolls the
    session back like any other bad input."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        super().__init__(where, reason)


@dataclass
class Failed:
    """A source session that cannot be imported; the run reports it and goes on."""

    where: str
    reason: str
    session_id: str | None = None


@dataclass
class SkippedItem:
    """Source data read on purpose and not imported (UI preferences, ...)."""

    where: str
    reason: str


SourceItem = ImportedSession | Failed | SkippedItem


@dataclass
class Repairs:
    """Counts text the store cannot hold (NUL, lone surrogates) that was
    replaced with U+FFFD, so the report can say so."""

    count: int = 0
    where: list[str] = field(default_factory=list)


_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def clean(value: Any, repairs: Repairs | None = None) -> Any:
    """``value`` with NUL and lone surrogates replaced by U+FFFD (liberal in
    what we accept; strict in what we store)."""
    if isinstance(value, str):
        if _BAD_TEXT.search(value) is None:
            return value
        if repairs is not None:
            repairs.count += len(_BAD_TEXT.findall(value))
        return _BAD_TEXT.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean(k, repairs): clean(v, repairs) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, repairs) for v in value]
    return value


def repair_note(source: str, repairs: Repairs) -> list[tuple[str, str]]:
    if not repairs.count:
        return []
    return [(source, f"{repairs.count} NUL / lone-surrogate character(s) replaced by U+FFFD")]


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def timestamp(value: Any) -> datetime | None:
    """ISO-8601 text, or epoch seconds / milliseconds / microseconds (told
    apart by magnitude); None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if v != v or v <= 0:
            return None
        while v > 1e11:  # ms or us since the epoch
            v /= 1000.0
        try:
            return datetime.fromtimestamp(v, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            got = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                return timestamp(float(text))
            except ValueError:
                return None
        return got if got.tzinfo is not None else got.replace(tzinfo=UTC)
    return None


def json_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw line) for each non-blank line, read one
    line at a time: a file of any size costs one line of memory."""
    with path.open("rb") as f:
        offset = 0
        for lineno, raw in enumerate(f, start=1):
            start = offset
            offset += len(raw)
            if raw.strip():
                yield lineno, start, raw


def decode_record(raw: bytes, where: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            where, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at {exc.start})"
        ) from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep"
        raise SourceError(where, f"not valid JSON ({reason})") from None


def read_line_at(f: IO[bytes], offset: int, where: str) -> Any:
    f.seek(offset)
    return decode_record(f.readline(MAX_LINE), where)


def json_array(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    """(index, element) of a top-level JSON array, one element in memory at a
    time (a ChatGPT export is often one 100+ MB line). A single top-level
    object is yielded as element 0. No dependency: the standard decoder's
    ``raw_decode`` on a growing buffer."""
    decoder = json.JSONDecoder()
    with path.open("rb") as f:
        raw = f.read(chunk)
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        buf = _utf8(raw, f)
        pos = _skip_ws(buf, 0)
        if pos < len(buf) and buf[pos] == "{":
            text = buf + _utf8(f.read(), f)
            try:
                yield 0, json.loads(text)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path.name}", f"not valid JSON ({exc.msg})") from None
            return
        if pos >= len(buf) or buf[pos] != "[":
            raise SourceError(path.name, "expected a JSON array or object")
        pos += 1
        index = 0
        eof = False
        expect_comma = False
        while True:
            pos = _skip_ws(buf, pos)
            ch = buf[pos] if pos < len(buf) else ""
            if ch == "]" and not (index and not expect_comma):
                return
            value: Any = None
            end = -1
            if ch and expect_comma:
                if ch != ",":
                    raise SourceError(
                        f"{path.name} element {index}", "expected ',' or ']' between elements"
                    )
                pos += 1
                expect_comma = False
                continue
            if ch:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if eof:
                        raise SourceError(
                            f"{path.name} element {index}", f"not valid JSON ({exc.msg})"
                        ) from None
            # Read on when the buffer ran out, or when a value ends exactly at
            # its end (a bare number may go on in the next chunk).
            if end < 0 or (end >= len(buf) and not eof):
                if eof:
                    raise SourceError(path.name, "the JSON array is not closed (truncated file?)")
                more = f.read(max(chunk, len(buf)))  # doubling: linear overall
                eof = not more
                buf = buf[pos:] + _utf8(more, f)
                pos = 0
                continue
            yield index, value
            index += 1
            buf, pos = buf[end:], 0
            expect_comma = True


def _utf8(raw: bytes, f: IO[bytes]) -> str:
    # Complete a multi-byte character cut by the chunk boundary.
    for _ in range(3):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(raw) - 3:
                break
            more = f.read(1)
            if not more:
                break
            raw += more
    return raw.decode("utf-8", errors="replace")


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


# --- trees -----------------------------------------------------------------


@dataclass
class Line:
    """One session of the result: ``keys`` in order; a branch (``parent`` an
    index into the list of lines) shares its parent's first ``fork_seq``
    messages."""

    keys: list[str]
    parent: int | None = None
    fork_seq: int | None = None


def linearize(
    parents: dict[str, str | None],
    order: list[str],
    active_leaf: str | None = None,
    inline: Callable[[str], bool] | None = None,
) -> tuple[list[Line], list[str]]:
    """Turn a message tree into a main line plus branches, losing no node.

    ``parents``: node -> parent (None, or a key not in the tree: a root).
    ``order``: every node, in source order (ties and "newest" follow it).
    The main line is the path to ``active_leaf`` (default: the last leaf);
    every other child starts a branch forked at its parent, following its
    newest leaf; other roots become branches forked at 0. ``inline(node)``:
    a leaf child that may sit in its parent's line (a lagging tool result,
    a side note) instead of making a branch of one.

    Returns (lines, orphans: nodes whose parent is not in the tree). Raises
    ValueError naming a node on a cycle (no root above it)."""
    pos = {k: i for i, k in enumerate(order)}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    orphans: list[str] = []
    for k in order:
        p = parents.get(k)
        if p is None or p not in pos:
            roots.append(k)
            if p is not None:
                orphans.append(k)
        else:
            children.setdefault(p, []).append(k)
    reached = 0
    stack = list(roots)
    while stack:
        k = stack.pop()
        reached += 1
        stack.extend(children.get(k, ()))
    if reached < len(order):
        seen: set[str] = set(roots)
        stack = list(roots)
        while stack:
            for c in children.get(stack.pop(), ()):
                seen.add(c)
                stack.append(c)
        bad = next(k for k in order if k not in seen)
        raise ValueError(bad)
    if not order:
        return [Line([])], []

    def newest_leaf(start: str) -> str:
        best, stack = start, [start]
        while stack:
            k = stack.pop()
            kids = children.get(k)
            if kids:
                stack.extend(kids)
            elif pos[k] > pos[best] or children.get(best):
                best = k
        return best

    def path(top: str, leaf: str) -> list[str]:
        out = [leaf]
        while out[-1] != top:
            parent = parents[out[-1]]
            assert parent is not None
            out.append(parent)
        out.reverse()
        return out

    leaf = active_leaf if active_leaf in pos else None
    if leaf is None:
        leaf = next(k for k in reversed(order) if not children.get(k))
    top = leaf
    while parents.get(top) is not None and parents[top] in pos:
        top = parents[top]  # type: ignore[assignment]

    lines: list[Line] = []
    todo: list[tuple[str, str, int | None, int | None]] = [(top, leaf, None, None)]
    todo.extend((r, newest_leaf(r), 0, 0) for r in reversed(roots) if r != top)
    while todo:
        start, end, parent, fork = todo.pop(0) if not lines else todo.pop()
        spine = path(start, end)
        on_spine = set(spine)
        keys: list[str] = []
        forks: list[tuple[str, int]] = []
        base = fork or 0
        for k in spine:
            keys.append(k)
            at = base + len(keys)  # the seq of k in this line's history
            for c in children.get(k, ()):
                if c in on_spine:
                    continue
                if inline is not None and not children.get(c) and inline(c):
                    keys.append(c)
                else:
                    forks.append((c, at))
        index = len(lines)
        lines.append(Line(keys, parent, fork))
        for c, at in reversed(forks):
            todo.append((c, newest_leaf(c), index, at))
    return lines, orphans

"""The Electric HTTP shape protocol's wire pieces: offsets, handles, cursors,
control messages and protocol errors (see ../shared/electric-protocol.md).

Offsets are ``<log offset>_0``: one change-log offset per operation, so
``<lsn>_0`` is an exact resume point (what the client builds in SSE mode).
Handles are ``<definition hash>-<epoch>``; the epoch lives in the database, so
a handle survives a server restart, and moves forward on a prune or a reset,
so a handle is never issued again once it went stale.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from dataclasses import dataclass
from typing import Any

# The cursor's epoch and interval, as Electric computes them (live responses only).
_CURSOR_EPOCH = 1728432000  # 2024-10-09T00:00:00Z
_CURSOR_INTERVAL = 20

_OFFSET = re.compile(r"^(\d+)_(\d+|inf)$")
_HANDLE = re.compile(r"^([0-9a-f]{16})-(\d+)$")

#: Headers a browser on another origin must be allowed to read (on 409 and errors too).
EXPOSED_HEADERS = (
    "electric-offset",
    "electric-handle",
    "electric-schema",
    "electric-cursor",
    "electric-up-to-date",
    "electric-snapshot",
    "retry-after",
)

#: The query parameters that belong to the protocol rather than to a shape's
#: definition (the client's own list); the proxy forwards only these.
PROTOCOL_PARAMS = (
    "live",
    "live_sse",
    "experimental_live_sse",
    "handle",
    "offset",
    "cursor",
    "expired_handle",
    "log",
    "subset__where",
    "subset__limit",
    "subset__offset",
    "subset__order_by",
    "subset__params",
    "subset__where_expr",
    "subset__order_by_expr",
    "cache-buster",
)


class ProtocolError(Exception):
    """A request the protocol refuses: 400 with Electric's error body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Offset:
    """``-1`` (before everything), ``now`` (the head), or a log position."""

    position: int | None  # None: before everything
    now: bool = False

    @property
    def initial(self) -> bool:
        return self.position is None and not self.now


def parse_offset(text: str | None) -> Offset:
    if text is None or text == "":
        raise ProtocolError("offset", "can't be blank")
    if text == "-1":
        return Offset(None)
    if text == "now":
        return Offset(None, now=True)
    m = _OFFSET.match(text)
    if not m:
        raise ProtocolError("offset", "has invalid format")
    # `<n>_inf` means "after everything of n": the same resume point here.
    return Offset(int(m.group(1)))


def format_offset(position: int) -> str:
    return f"{position}_0"


def definition_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def make_handle(def_hash: str, epoch: int) -> str:
    return f"{def_hash}-{epoch}"


def parse_handle(text: str) -> tuple[str, int] | None:
    m = _HANDLE.match(text)
    return (m.group(1), int(m.group(2))) if m else None


def next_cursor(previous: str | None, now: float | None = None) -> str:
    """Electric's cursor: the next 20 s boundary since its epoch, moved on at
    random when that would not advance the client's cursor (it only busts CDN
    caches, but the client's replay detection compares it)."""
    t = time.time() if now is None else now
    n = math.ceil((t - _CURSOR_EPOCH) / _CURSOR_INTERVAL) * _CURSOR_INTERVAL
    try:
        prev = int(previous) if previous else 0
    except ValueError:
        prev = 0
    if n <= prev:
        n = prev + random.randint(1, 3600)
    return str(n)


def up_to_date(lsn: int) -> dict[str, Any]:
    return {"headers": {"control": "up-to-date", "global_last_seen_lsn": str(lsn)}}


def snapshot_end(xmin: int, xmax: int, xip: tuple[int, ...]) -> dict[str, Any]:
    return {
        "headers": {
            "control": "snapshot-end",
            "xmin": str(xmin),
            "xmax": str(xmax),
            "xip_list": [str(x) for x in xip],
        }
    }


MUST_REFETCH = [{"headers": {"control": "must-refetch"}}]

"""Ids: UUID version 7 (RFC 9562), time-ordered.

Random (v4) ids land on random pages of every index that holds them, so each
commit dirties more pages and writes more WAL. v7 ids start with the
millisecond timestamp, so new rows go to the right edge of the index, as an
integer key would, while ids stay unguessable and safe to mint anywhere.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A new UUIDv7 as its canonical string; increasing within this process."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                ms += 1
                _seq = 0
        else:
            _seq = 0
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    h = f"{(ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

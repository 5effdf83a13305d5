"""Pausing Python's cyclic garbage collector while a read builds many objects.

CPython starts a collection every 700 container allocations, whether or not
the new objects could ever be part of a cycle, and a full collection walks
every object the process holds. Reading a 10,000-message history allocates
about 40,000 containers (a row, a dict, a set and a model per message), and
every such read that survives into the older generations brings the next
full collection closer: on a test process of ~110,000 objects, every second
10k read paid a full collection of about 65 ms on top of a read of about
45 ms. Nothing a read allocates forms a cycle, so there is nothing for the
collector to find while it runs; the objects are freed by reference count
when the caller drops them. Mercurial pauses the collector the same way
while it parses large indexes (``util.nogc``).

The collector is a process-wide switch, so the pause is counted: the first
of several overlapping pauses (threads) turns it off, and the last turns it
back on, only if it was on before the first. A pause lasts while one read's
rows become objects (tens of milliseconds for the largest reads). Under a
steady stream of large reads in several threads the pauses could overlap
without end, and cycles made elsewhere in the process would pile up: so a
pause that starts when the collector has been off for more than
``MAX_OFF_SECONDS`` turns it back on, and it stays on until the overlap
ends. A program that switches the collector itself while such a read runs
may find its choice undone when the read ends.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

#: Below this many rows a read allocates too little to start a collection
#: worth avoiding; the pause's own lock is then all it would add.
MIN_ROWS = 256

#: The longest the collector stays off while pauses overlap.
MAX_OFF_SECONDS = 1.0

_clock = time.monotonic
_lock = threading.Lock()
_depth = 0
_restore = False
_off_since = 0.0


_NOTHING = nullcontext()


def gc_paused(rows: int) -> AbstractContextManager[None]:
    """The collector off while ``rows`` rows become objects, if that is
    enough rows to be worth it (see the module doc). Small reads, the most
    frequent (the last 50 messages), get a shared no-op: no generator, no
    lock."""
    return _NOTHING if rows < MIN_ROWS else _paused()


@contextmanager
def _paused() -> Iterator[None]:
    global _depth, _restore, _off_since
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            _off_since = _clock()
            gc.disable()
        elif _restore and _clock() - _off_since > MAX_OFF_SECONDS:
            gc.enable()  # overlapping pauses must not starve the collector
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()

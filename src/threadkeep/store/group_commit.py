"""Group commit: many callers' writes, one transaction, one fsync.

The design is LevelDB's writer queue (``DBImpl::Write``). Each caller enqueues
its request. A caller that finds nobody committing becomes the *leader*: it
takes every request queued so far, runs them in one transaction and commits,
then wakes the callers whose requests it carried. If more requests arrived
meanwhile, it hands leadership to the oldest of them and returns. A caller
alone therefore runs its own write on its own thread (no hop to a writer
thread), and under load each fsync carries everything that queued while the
previous one was on disk.

The leader runs the batch through ``run_batch``, which isolates each request
(a savepoint), so one caller's bad input fails that caller alone.

A leader first waits, briefly, for the callers it expects. Without that, a
steady set of N writers commits in alternating batches of N-1 (or N) and 1:
the callers that the last commit woke re-submit one by one, and the first
of them finds nobody committing and leads alone, paying a whole commit for
one write. So when the last batch carried several requests and fewer are
queued now, the leader waits until as many are queued, for at most half the
time the last batch took (capped at ``max_gather``): the idea of
PostgreSQL's ``commit_delay``/``commit_siblings``, sized by what a commit
costs here. A lone writer never waits (its last batch was its own), and a
wait that runs out shrinks the next one's expectation to what came.

A waiting caller sleeps on a bare lock that it holds and its waker releases:
``threading.Event`` would run a Condition's Python code on both sides of
every hand-off, and with many writers that hand-off happens once per append.
"""

from __future__ import annotations

import threading
import time
from _thread import LockType, allocate_lock
from collections import deque
from collections.abc import Callable
from typing import Any

from threadkeep.errors import StoreClosed

_WAITING, _DONE, _LEAD = 0, 1, 2


class Request:
    __slots__ = ("error", "fn", "only_inserts", "result", "state", "wakeup")

    def __init__(
        self, fn: Callable[..., Any], wakeup: LockType | None, only_inserts: bool = False
    ) -> None:
        self.fn = fn
        self.only_inserts = only_inserts  # see StoreEngine.write
        self.result: Any = None
        self.error: BaseException | None = None
        # Held from birth by a caller that has to wait, released once to wake
        # it; a lone leader never waits and has none.
        self.wakeup = wakeup
        self.state = _WAITING

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def wake(self) -> None:
        assert self.wakeup is not None  # queued behind a leader, so it waits
        self.wakeup.release()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.state = _DONE
        if self.wakeup is not None:
            self.wake()


class GroupCommitQueue:
    """Serialises batches of requests through ``run_batch`` (see module doc)."""

    def __init__(
        self,
        run_batch: Callable[[list[Request]], None],
        max_batch: int = 512,
        max_gather: float = 0.005,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_gather = max_gather
        self._mutex = threading.Lock()
        self._queue: deque[Request] = deque()
        self._busy = False
        self._closed = False
        self._idle = threading.Condition(self._mutex)
        self._arrived = threading.Condition(self._mutex)
        # What the last batch carried and how long it took: how many callers
        # the next leader expects, and how long it may wait for them.
        self._last_size = 1
        self._last_seconds = 0.0
        self._expected = 0  # > 0 while a leader waits for that many

    def submit(self, fn: Callable[..., Any], only_inserts: bool = False) -> Any:
        with self._mutex:
            if self._closed:
                raise StoreClosed()
            lead = not self._busy
            wakeup = None
            if not lead:
                wakeup = allocate_lock()
                wakeup.acquire()
            req = Request(fn, wakeup, only_inserts)
            self._queue.append(req)
            self._busy = True
            if self._expected and len(self._queue) >= self._expected:
                self._arrived.notify()
        if wakeup is not None:
            wakeup.acquire()  # until finish() or a hand-over of leadership
        if req.state != _DONE:
            self._lead()
        if req.error is not None:
            raise req.error
        return req.result

    def _lead(self) -> None:
        with self._mutex:
            self._gather()
            n = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(n)]
        started = time.perf_counter()
        try:
            self._run_batch(batch)
        except BaseException as exc:  # the batch failed as a whole
            for r in batch:
                if r.state != _DONE:
                    r.finish(error=exc)
        finally:
            for r in batch:
                if r.state != _DONE:  # run_batch must finish every request
                    r.finish(error=RuntimeError("write was not completed"))
            with self._mutex:
                self._last_size = n
                self._last_seconds = time.perf_counter() - started
                if self._queue:
                    nxt = self._queue[0]
                    nxt.state = _LEAD
                    nxt.wake()
                else:
                    self._busy = False
                    self._idle.notify_all()

    def _gather(self) -> None:
        """Wait (the mutex released meanwhile) for the callers the last batch
        suggests are coming; see the module doc."""
        expected = self._last_size  # a batch is never over max_batch
        if expected <= 1 or len(self._queue) >= expected or self._closed:
            return
        self._expected = expected
        try:
            self._arrived.wait_for(
                lambda: len(self._queue) >= expected,
                timeout=min(self._last_seconds / 2, self._max_gather),
            )
        finally:
            self._expected = 0

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new writes and wait for the ones in flight to commit."""
        with self._mutex:
            self._closed = True
            self._idle.wait_for(lambda: not self._busy, timeout=timeout)

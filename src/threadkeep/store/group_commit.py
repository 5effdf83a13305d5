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

A waiting caller sleeps on a bare lock that it holds and its waker releases:
``threading.Event`` would run a Condition's Python code on both sides of
every hand-off, and with many writers that hand-off happens once per append.
"""

from __future__ import annotations

import threading
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

    def __init__(self, run_batch: Callable[[list[Request]], None], max_batch: int = 512) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: deque[Request] = deque()
        self._busy = False
        self._closed = False
        self._idle = threading.Condition(self._mutex)

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
        if wakeup is not None:
            wakeup.acquire()  # until finish() or a hand-over of leadership
        if req.state != _DONE:
            self._lead()
        if req.error is not None:
            raise req.error
        return req.result

    def _lead(self) -> None:
        with self._mutex:
            n = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(n)]
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
                if self._queue:
                    nxt = self._queue[0]
                    nxt.state = _LEAD
                    nxt.wake()
                else:
                    self._busy = False
                    self._idle.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new writes and wait for the ones in flight to commit."""
        with self._mutex:
            self._closed = True
            self._idle.wait_for(lambda: not self._busy, timeout=timeout)

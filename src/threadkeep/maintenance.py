"""Scheduled maintenance inside ``threadkeep serve``: the retention rules
(docs/retention.md), applied every ``retention.run_every_seconds``, and
first a minute after the server starts.

The first run comes early because a server that restarts more often than the
interval (deploys, autoscaling, a crash loop) would otherwise never apply the
rules at all, and because a start after a crash is when abandoned streams are
most likely; it waits a minute so that a start-up, or a process that lives
for seconds, does not pay for it.

It runs next to the sync runtime's pruner (sync/runtime.py) and like it: a
task on the server's event loop that hands the work to a thread, logs what it
removed, and survives a failed run (logged; the next run tries again). With
several server instances on one PostgreSQL each runs it; that is safe, since
every delete re-checks that its row is still expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from threadkeep.config import RetentionSettings
from threadkeep.library import Threadkeep
from threadkeep.model.retention import RetentionResult

log = logging.getLogger(__name__)

FIRST_RUN_SECONDS = 60.0  # after start-up (see the module's docstring)


class MaintenanceRuntime:
    def __init__(
        self, tk: Threadkeep, rules: RetentionSettings, first_run_after: float = FIRST_RUN_SECONDS
    ) -> None:
        self.tk = tk
        self.rules = rules
        self.first_run_after = min(first_run_after, rules.run_every_seconds)
        self._task: asyncio.Task[None] | None = None

    @property
    def scheduled(self) -> bool:
        return self.rules.run_every_seconds > 0

    def start(self) -> None:
        """Start the schedule (nothing when ``run_every_seconds`` is 0). Idempotent."""
        if self.scheduled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="threadkeep-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def run_now(self) -> RetentionResult:
        """Apply the retention rules once, off the event loop; log what went."""
        done = await asyncio.to_thread(self.tk.apply_retention, rules=self.rules)
        if done.total or done.kept_with_branches:
            log.info(
                "retention removed %d snapshots, %d analytics events, %d trashed "
                "sessions (%d rows in them) and %d blobs, and finished %d abandoned streams",
                len(done.snapshots),
                len(done.analytics_events),
                len(done.sessions),
                sum(done.session_rows.values()),
                len(done.blobs),
                len(done.streams),
                extra={
                    "removed": done.counts(),
                    "streams": done.streams,
                    "sessions": done.sessions,
                    "session_rows": done.session_rows,
                    "kept_with_branches": done.kept_with_branches,
                    "transactions": done.transactions,
                },
            )
        return done

    async def _loop(self) -> None:
        wait = self.first_run_after
        while True:
            await asyncio.sleep(wait)
            wait = self.rules.run_every_seconds
            try:
                await self.run_now()
            except Exception as exc:
                log.warning("could not apply the retention rules: %s", exc)

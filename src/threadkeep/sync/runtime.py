"""The sync machinery of one server process: the hub, the emulator or the
proxy, and the scheduled pruning of the change log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import httpx

from threadkeep.config import SyncSettings
from threadkeep.library import Threadkeep
from threadkeep.sync.emulator import Emulator
from threadkeep.sync.hub import LiveHub
from threadkeep.sync.proxy import new_client

log = logging.getLogger(__name__)


class SyncRuntime:
    def __init__(
        self,
        tk: Threadkeep,
        settings: SyncSettings,
        *,
        electric_url: str | None = None,
        electric_secret: str | None = None,
    ) -> None:
        self.tk = tk
        self.settings = settings
        self.hub = LiveHub(tk, poll_seconds=settings.poll_seconds)
        self.emulator = Emulator(tk, self.hub, long_poll_seconds=settings.long_poll_seconds)
        self.electric_url = electric_url
        self.electric_secret = electric_secret
        self._pruner: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Start on first use (the app's lifespan also starts it)."""
        if self.hub.started:
            return
        async with self._lock:
            if not self.hub.started:
                await self.hub.start()
                self._pruner = asyncio.create_task(self._prune_loop(), name="threadkeep-prune")

    def drain_threadsafe(self) -> None:
        """The server is shutting down: held live requests answer now, new ones
        are not held (from any thread, e.g. a signal handler)."""
        self.hub.drain_threadsafe()

    def http(self) -> httpx.AsyncClient:
        """The client for the Electric service (proxy mode), made on first use."""
        if self._http is None:
            self._http = new_client()
        return self._http

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pruner
            self._pruner = None
        await self.hub.stop()

    async def prune_now(self) -> None:
        keep = timedelta(hours=self.settings.retention_hours)
        done = await asyncio.to_thread(self.tk.prune_changes, keep)
        if done.deleted:
            log.info(
                "pruned %d change-log rows (up to offset %d)", done.deleted, done.pruned_offset
            )

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_every_seconds)
            try:
                await self.prune_now()
            except Exception as exc:
                log.warning("could not prune the change log: %s", exc)

"""Commit notifications between processes: PostgreSQL LISTEN/NOTIFY.

A server instance that commits a write sends one NOTIFY (after the commit,
coalesced, off the write path); every instance LISTENs and wakes its held sync
requests. A notification can be lost (a dropped connection, an instance that
died between commit and NOTIFY), so readers also poll: a lost one delays a
change by at most the poll interval, it never loses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from threadkeep.store import pg_connect, pg_url

CHANNEL = "threadkeep_changes"


def channel_for(schema: str | None) -> str:
    """The channel of the store in ``schema``: channels belong to the whole
    database, so two stores in two schemas of one database must not share
    one (each would wake the other's readers for nothing)."""
    return CHANNEL if schema is None else f"{CHANNEL}_{schema}"


log = logging.getLogger(__name__)


class PgChangeChannel:
    """Send and receive commit notifications on one PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.channel = channel_for(pg_url.schema_of(url))
        # Through a transaction pooler a LISTEN lasts one transaction: the
        # readers' poll is the only wake-up there (store/pg_connect.py).
        self._listens = not pg_url.through_pooler(url)
        self._stop = threading.Event()
        self._pending = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, on_notify: Callable[[], None]) -> None:
        """Start the listener and the sender threads."""
        loops: list[tuple[Callable[[], None], str]] = [(self._send_loop, "threadkeep-notify")]
        if self._listens:
            loops.append((lambda: self._listen(on_notify), "threadkeep-listen"))
        for target, name in loops:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        """Ask for a NOTIFY to be sent (cheap; called after every local commit)."""
        self._pending.set()

    def stop(self) -> None:
        self._stop.set()
        self._pending.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def _connect(self) -> psycopg.Connection[Any]:
        return pg_connect.connect(self._url, autocommit=True, connect_timeout=5)

    def _listen(self, on_notify: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    # Whatever was missed while (re)connecting is picked up by
                    # the readers' next poll; wake them now to make it sooner.
                    on_notify()
                    while not self._stop.is_set():
                        got = False
                        for _ in conn.notifies(timeout=0.5, stop_after=64):
                            got = True
                        if got:
                            on_notify()
            except psycopg.Error as exc:
                log.warning("sync listener lost its connection (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def _send_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            self._pending.wait()
            if self._stop.is_set():
                break
            self._pending.clear()
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                conn.execute(f"NOTIFY {self.channel}")
            except psycopg.Error as exc:
                log.warning("sync notify failed (%s); readers will poll", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.5)
        if conn is not None:
            conn.close()

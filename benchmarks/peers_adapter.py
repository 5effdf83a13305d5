"""peersbench adapters for threadkeep (SQLite and PostgreSQL).

Plugged into the peers' harness from the environment, without touching it::

    PEERS_EXTRA_ADAPTERS="threadkeep-sqlite=benchmarks.peers_adapter:ThreadkeepSqlite,\
threadkeep-pg=benchmarks.peers_adapter:ThreadkeepPg"

What each harness call does on threadkeep's side (all through the public
library API, one ``Threadkeep`` instance shared by every thread):

* ``append``      -> ``append_message(actor, session, {"role", "content", "metadata"})``
* ``append_many`` -> ``append_messages(actor, session, [...])`` (one transaction)
* ``load(s, n)``  -> ``last_messages(actor, s, n)``; ``load(s)`` -> ``get_history``
* ``list_recent`` -> ``list_sessions(actor, limit=n)`` (newest activity first)

A session is created lazily on its first append with
``create_session(actor, id=session)``: the harness's session names are
client-chosen ids. No ``client_id`` is passed (the peers have no idempotency
key, so passing one would add a lookup they don't pay).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from peersbench.adapters.base import Adapter

from threadkeep import Actor, AlreadyExists, Threadkeep

_SQLITE_SYNC = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def pg_url_from_dsn(dsn: str) -> str:
    """``host=.. port=.. user=.. dbname=..`` (libpq conninfo) -> ``postgresql://`` URL."""
    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(dsn)
    auth = str(d.get("user", "postgres"))
    if d.get("password"):
        auth += f":{d['password']}"
    host = d.get("host", "127.0.0.1")
    port = d.get("port", 5432)
    return f"postgresql://{auth}@{host}:{port}/{d['dbname']}"


class _Threadkeep(Adapter):
    concurrency = "threads"
    supports_list = True
    packages = ("threadkeep", "SQLAlchemy", "alembic", "psycopg")
    client_id = False  # set True to pass an idempotency key per message (peers have none)

    def _url(self, ctx: Any) -> str:
        raise NotImplementedError

    def setup(self, ctx: Any) -> None:
        self.tk = Threadkeep.open(self._url(ctx))
        self.actor = Actor(self.tk.create_user("bench").value.id)
        self._known: set[str] = set()
        self._create_lock = threading.Lock()
        self._ids = itertools.count(1)

    def _ensure(self, session: str) -> None:
        if session in self._known:  # set lookups are atomic under the GIL
            return
        with self._create_lock:
            if session in self._known:
                return
            try:
                self.tk.create_session(self.actor, id=session)
            except AlreadyExists:
                pass
            self._known.add(session)

    def _msg(self, msg: dict) -> dict:
        if not self.client_id:
            return msg
        return {**msg, "client_id": f"c{next(self._ids)}"}

    def append(self, session: str, msg: dict) -> None:
        self._ensure(session)
        self.tk.append_message(self.actor, session, self._msg(msg))

    def append_many(self, session: str, msgs: list[dict]) -> None:
        self._ensure(session)
        self.tk.append_messages(self.actor, session, [self._msg(m) for m in msgs])

    def load(self, session: str, limit: int | None = None) -> list[Any]:
        if limit is None:
            return self.tk.get_history(self.actor, session)
        return self.tk.last_messages(self.actor, session, limit)

    def list_recent(self, n: int) -> list[str]:
        return [s.id for s in self.tk.list_sessions(self.actor, limit=n).items]

    def teardown(self) -> None:
        tk = getattr(self, "tk", None)
        if tk is not None:
            tk.close()

    def seq_of(self, item: Any) -> int:
        return int(item.metadata["seq"])


class ThreadkeepSqlite(_Threadkeep):
    name = "threadkeep-sqlite"
    backend = "sqlite"
    notes = (
        "threadkeep library API, one shared Threadkeep; SQLite WAL + synchronous=FULL with "
        "group commit; session created lazily on first append (create_session id=name); "
        "no client_id; last-N via last_messages, list via list_sessions."
    )

    def _url(self, ctx: Any) -> str:
        return f"sqlite:///{ctx.workdir}/threadkeep.db"

    def describe(self) -> dict:
        import sqlite3

        import threadkeep

        with self.tk.engine.sa_engine.connect() as c:
            jm = c.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = c.exec_driver_sql("PRAGMA synchronous").scalar()
        return {
            "journal_mode": jm,
            "synchronous": _SQLITE_SYNC.get(int(sync), str(sync)),
            "sqlite": sqlite3.sqlite_version,
            "threadkeep": threadkeep.__version__,
            "client_id": self.client_id,
        }


class ThreadkeepPg(_Threadkeep):
    name = "threadkeep-pg"
    backend = "postgres"
    notes = (
        "threadkeep library API, one shared Threadkeep (SQLAlchemy pool, psycopg 3); "
        "synchronous_commit forced on; session created lazily on first append; no client_id; "
        "last-N via last_messages, list via list_sessions."
    )

    def _url(self, ctx: Any) -> str:
        return pg_url_from_dsn(ctx.pg_dsn)

    def describe(self) -> dict:
        import threadkeep

        with self.tk.engine.sa_engine.connect() as c:
            out = {
                k: c.exec_driver_sql(f"SHOW {k}").scalar()
                for k in ("synchronous_commit", "fsync", "wal_sync_method", "server_version")
            }
        out["threadkeep"] = threadkeep.__version__
        out["client_id"] = self.client_id
        return out

"""The SQLite engine: WAL, durable commits, one writer, group commit.

* ``journal_mode=WAL`` and ``synchronous=FULL``: a commit returns after the WAL
  is fsynced, so an acknowledged write survives ``kill -9`` and power loss.
  Throughput comes from group commit (store/group_commit.py), not from a
  weaker sync setting.
* One write connection per process, used only by the current group-commit
  leader. Several processes on one file serialise on SQLite's own write lock
  (``BEGIN IMMEDIATE`` with a busy timeout); sequence numbers are read from the
  database inside the write transaction, never cached, so that stays correct.
* Reads use a pool of other connections and never wait for the writer.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from threadkeep.errors import StoreError, ThreadkeepError
from threadkeep.model.common import Committed, utcnow
from threadkeep.store.changes import change_params
from threadkeep.store.contract import ReadFn, StoreEngine, WriteFn, WriteTx
from threadkeep.store.group_commit import GroupCommitQueue, Request
from threadkeep.store.tables import changes, log_state
from threadkeep.store.translate import translate_errors

T = TypeVar("T")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Counters:
    """Offsets and txids handed out inside one batch (see store/changes.py)."""

    __slots__ = ("last_offset", "last_txid")

    def __init__(self, last_offset: int, last_txid: int) -> None:
        self.last_offset = last_offset
        self.last_txid = last_txid


class SqliteStore(StoreEngine):
    dialect = "sqlite"

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 8) -> None:
        self.url = url
        u = make_url(url)
        if u.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise StoreError(f"not a SQLite URL: {url}")
        path = u.database
        if not path or path == ":memory:":
            raise StoreError(
                "threadkeep needs a SQLite file (sqlite:///path/to/file.db), not an "
                "in-memory database: an in-memory database is lost when the process exits"
            )
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = str(Path(path).expanduser())
        self._busy_timeout_ms = busy_timeout_ms
        self._engine = sa.create_engine(
            sa.URL.create("sqlite+pysqlite", database=self.path),
            isolation_level="AUTOCOMMIT",  # we issue BEGIN/COMMIT ourselves
            json_serializer=_dumps,
            pool_size=pool_size,
            max_overflow=pool_size * 4,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        )
        event.listen(self._engine, "connect", self._on_connect)
        self._writer = self._engine.connect()
        self._queue = GroupCommitQueue(self._run_batch)
        self._closed = False
        self._close_lock = threading.Lock()

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch {self.path} to WAL mode (got {mode!r})")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        cur.close()

    @property
    def sa_engine(self) -> sa.Engine:
        return self._engine

    # --- writes -----------------------------------------------------------------

    def write(self, fn: WriteFn[T]) -> Committed[T]:
        result: Committed[T] = self._queue.submit(fn)
        return result

    def _run_batch(self, batch: list[Request]) -> None:
        conn = self._writer
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except Exception as exc:
            err = StoreError(f"could not start a write transaction: {exc}")
            for r in batch:
                r.finish(error=err)
            return
        done: list[tuple[Request, Any]] = []
        try:
            state = conn.execute(
                sa.select(log_state.c.last_offset, log_state.c.last_txid).where(
                    log_state.c.id == 1
                )
            ).one()
            counters = _Counters(state.last_offset, state.last_txid)
            alone = len(batch) == 1
            for req in batch:
                if alone:
                    try:
                        done.append((req, self._run_one(conn, req.fn, counters)))
                    except BaseException as exc:
                        conn.exec_driver_sql("ROLLBACK")
                        req.finish(error=exc)
                        return
                    continue
                conn.exec_driver_sql("SAVEPOINT op")
                try:
                    res = self._run_one(conn, req.fn, counters)
                except BaseException as exc:
                    # Undo this caller's statements only; the others stand.
                    conn.exec_driver_sql("ROLLBACK TO op")
                    conn.exec_driver_sql("RELEASE op")
                    req.finish(error=exc)
                    continue
                conn.exec_driver_sql("RELEASE op")
                done.append((req, res))
            if done:
                conn.execute(
                    log_state.update()
                    .where(log_state.c.id == 1)
                    .values(last_offset=counters.last_offset, last_txid=counters.last_txid)
                )
            conn.exec_driver_sql("COMMIT")
        except BaseException as exc:
            self._rollback_quietly()
            err = exc if isinstance(exc, ThreadkeepError) else StoreError(f"commit failed: {exc}")
            for req, _ in done:
                req.finish(error=err)
            for req in batch:
                if req.state != 1:
                    req.finish(error=err)
            return
        for req, res in done:
            req.finish(result=res)

    def _run_one(self, conn: sa.Connection, fn: WriteFn[Any], counters: _Counters) -> Committed[Any]:
        tx = WriteTx(conn=conn, now=utcnow(), store=self)
        with translate_errors():
            value = fn(tx)
            if not tx.changes and tx.replay_txid is not None:
                return Committed(value, tx.replay_txid)
            counters.last_txid += 1
            txid = counters.last_txid
            params = change_params(tx.changes, tx.now)
            for p in params:
                counters.last_offset += 1
                p["log_offset"] = counters.last_offset
                p["txid"] = txid
            if params:
                conn.execute(changes.insert(), params)
        return Committed(value, txid)

    def _rollback_quietly(self) -> None:
        try:
            self._writer.exec_driver_sql("ROLLBACK")
        except Exception:  # noqa: S110 - no transaction left to roll back
            pass

    # --- reads ------------------------------------------------------------------

    def read(self, fn: ReadFn[T]) -> T:
        if self._closed:
            from threadkeep.errors import StoreClosed

            raise StoreClosed()
        with self._engine.connect() as conn, translate_errors():
            conn.exec_driver_sql("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.exec_driver_sql("COMMIT")

    def prepare_changes_read(self) -> None:
        return None

    def tag_predicate(self, column: sa.ColumnElement[Any], tag: str) -> sa.ColumnElement[bool]:
        each = sa.func.json_each(column).table_valued("value")
        return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.close()
        self._writer.close()
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, pid={os.getpid()})"

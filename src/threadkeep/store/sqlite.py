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

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from threadkeep.errors import StoreClosed, StoreError, ThreadkeepError
from threadkeep.model.common import Committed, utcnow
from threadkeep.model.jsontext import dumps
from threadkeep.own_files import create_private, make_dirs
from threadkeep.store import sqlite_support
from threadkeep.store.changes import change_params
from threadkeep.store.contract import ChangeRow, ReadFn, StoreEngine, WriteFn, WriteTx
from threadkeep.store.group_commit import GroupCommitQueue, Request
from threadkeep.store.prepared import cursor, prepared
from threadkeep.store.search import index_messages, row_rank
from threadkeep.store.sqlite_functions import add_functions
from threadkeep.store.tables import changes, session_tags
from threadkeep.store.translate import commit_in_doubt, storage_full, translate_errors

T = TypeVar("T")


def _changes_insert() -> sa.Executable:
    cols = (
        "log_offset",
        "txid",
        "table_name",
        "row_key",
        "op",
        "row",
        "owner_id",
        "session_id",
        "created_at",
    )
    return changes.insert().values({c: sa.bindparam(c, type_=changes.c[c].type) for c in cols})


class SqliteStore(StoreEngine):
    dialect = "sqlite"
    indexes_by_itself = False  # new messages: see store/search.py index_messages
    keeps_subquery_order = False

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 40) -> None:
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
        sqlite_support.require()  # before a file is made for it
        # Private and durable (threadkeep/own_files.py): the directories,
        # and the file, made before SQLite opens it so that it and its -wal
        # and -shm (which take its mode) are 0600.
        self.path = str(Path(path).expanduser())
        try:
            make_dirs(Path(self.path).parent)
            create_private(self.path)
        except OSError as exc:
            raise storage_full(exc) or StoreError(
                f"cannot create the SQLite database {self.path}: {exc.strerror or exc}; "
                "check that its directory can be made and written by this user, or "
                "choose another database URL (--database-url or THREADKEEP_DATABASE_URL)"
            ) from exc
        self._busy_timeout_ms = busy_timeout_ms
        self._engine = sa.create_engine(
            sa.URL.create("sqlite+pysqlite", database=self.path),
            isolation_level="AUTOCOMMIT",  # we issue BEGIN/COMMIT ourselves
            json_serializer=dumps,
            # An error's text leaves out the statement's values: they are
            # people's messages, and the text reaches logs.
            hide_parameters=True,
            # Kept open as many connections as the server's worker threads
            # (anyio's 40): an overflow connection is closed after each use,
            # and opening one (with its pragmas) cost a burst of concurrent
            # reads (a write waking many sync readers) more than the reads.
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        )
        event.listen(self._engine, "connect", self._on_connect)
        self._writer = self._engine.connect()
        self._queue = GroupCommitQueue(self._run_batch)
        # Reads in one process take turns. Python's sqlite3 lets go of the
        # GIL for every row it steps to, so threads reading at once hand the
        # GIL back and forth at every row: reading the last 50 messages, one
        # thread did 1,631 reads/s, two threads together 836, sixteen 448
        # (CPU per read 613 µs, then 1,414 and 3,118). Taking turns keeps a
        # read at its single-thread cost whatever the number of readers.
        # Reentrant, so a read may run inside another on the same thread.
        # Not the writer's: a commit never waits for a read.
        self._read_lock = threading.RLock()
        self._closed = False
        self._close_lock = threading.Lock()

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        mode = self._switch_to_wal(cur)
        if str(mode).lower() != "wal":
            raise StoreError(f"could not switch {self.path} to WAL mode (got {mode!r})")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
        add_functions(dbapi_conn)  # tk_fold: the title filter and its index
        # Search ranks each hit by its own text (store/search.py row_rank).
        dbapi_conn.create_function("tk_rank", 1, row_rank, deterministic=True)

    def _switch_to_wal(self, cur: Any) -> str:
        """Switch a fresh file to WAL, waiting out a concurrent opener.

        The switch reads the file, then escalates to an exclusive lock. If
        another connection holds the write lock meanwhile (a second process
        creating the same fresh database), SQLite answers "database is locked"
        at once, without calling the busy handler, because waiting while
        holding the read lock could deadlock. So the wait is ours: retry,
        backing off, for as long as the busy timeout allows. Once the file is
        in WAL the switch is a no-op and never waits."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        pause = 0.002
        while True:
            try:
                return str(cur.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    @property
    def sa_engine(self) -> sa.Engine:
        return self._engine

    # --- writes -----------------------------------------------------------------

    def write(self, fn: WriteFn[T], *, only_inserts: bool = False) -> Committed[T]:
        result: Committed[T] = self._queue.submit(fn, only_inserts)
        return result

    def _run_batch(self, batch: list[Request]) -> None:
        """Run a batch in one transaction: first optimistically, every request on
        the same footing; if one raises, roll back and run them again each in
        its own savepoint, so only the failing caller sees its error.

        The batch protocol runs on the DBAPI cursor: SQLAlchemy's per-call
        overhead would be paid several times per commit (store/prepared.py).
        Offsets and txids come from log_state, read and written inside the
        transaction: SQLite's write lock makes this the only writer, in any
        process, so numbering change rows here is numbering them in commit
        order.

        The messages of consecutive ``only_inserts`` requests are indexed
        together (``unindexed``), before any other request runs and before
        the commit: one FTS5 segment for all of them. Any other request may
        update or delete a message appended just before it, and the search
        triggers expect that message in the index by then."""
        cur = cursor(self._writer)
        if not self._begin(cur, batch):
            return
        try:
            offset, txid = cur.execute(
                "SELECT last_offset, last_txid FROM log_state WHERE id = 1"
            ).fetchone()
            pending: list[dict[str, Any]] = []
            results: list[Committed[Any]] = []
            unindexed: list[str] = []
            for req in batch:
                if not req.only_inserts and unindexed:
                    index_messages(cur, unindexed)
                    unindexed = []
                txid += 1
                value, params, replay, offset = self._run_one(
                    req.fn, txid, offset, unindexed if req.only_inserts else None
                )
                if replay is not None:
                    results.append(Committed(value, replay))
                    continue
                for p in params:
                    offset += 1
                    p["log_offset"] = offset
                pending.extend(params)
                results.append(Committed(value, txid))
            index_messages(cur, unindexed)
            self._finish_log(cur, pending, offset, txid)
        except BaseException as exc:
            self._rollback_quietly()
            if len(batch) == 1:
                batch[0].finish(error=self._store_error(exc))
            else:
                self._run_isolated(batch)
            return
        if not self._commit(cur, batch):
            return
        for req, res in zip(batch, results, strict=True):
            req.finish(result=res)

    def _run_isolated(self, batch: list[Request]) -> None:
        """The slow path: each request in its own savepoint."""
        cur = cursor(self._writer)
        if not self._begin(cur, batch):
            return
        done: list[tuple[Request, Committed[Any]]] = []
        # As in _run_batch; a request rolled back to its savepoint may leave
        # its ids here: they find no row (store/search.py index_messages).
        unindexed: list[str] = []
        try:
            offset, txid = cur.execute(
                "SELECT last_offset, last_txid FROM log_state WHERE id = 1"
            ).fetchone()
            for req in batch:
                if not req.only_inserts and unindexed:
                    index_messages(cur, unindexed)
                    unindexed = []
                cur.execute("SAVEPOINT op")
                try:
                    value, params, replay, spilled = self._run_one(
                        req.fn, txid + 1, offset, unindexed if req.only_inserts else None
                    )
                    if replay is None:
                        for i, p in enumerate(params, start=1):
                            p["log_offset"] = spilled + i
                        self._finish_log(cur, params, spilled + len(params), txid + 1)
                except BaseException as exc:
                    cur.execute("ROLLBACK TO op")
                    cur.execute("RELEASE op")
                    req.finish(error=self._store_error(exc))
                    continue
                cur.execute("RELEASE op")
                if replay is not None:
                    done.append((req, Committed(value, replay)))
                else:
                    txid += 1
                    offset = spilled + len(params)
                    done.append((req, Committed(value, txid)))
            index_messages(cur, unindexed)
        except BaseException as exc:
            self._rollback_quietly()
            err = self._store_error(exc)
            for req in batch:
                if not req.done:
                    req.finish(error=err)
            return
        if not self._commit(cur, [r for r, _ in done]):
            return
        for req, res in done:
            req.finish(result=res)

    def _run_one(
        self, fn: WriteFn[Any], txid: int, offset: int, unindexed: list[str] | None = None
    ) -> tuple[Any, list[dict[str, Any]], int | None, int]:
        """Run one operation. Returns its value, its change rows still to
        write, the txid it replays (or None), and the last offset given to
        the rows it spilled early (``offset`` if none). The messages it
        inserted are indexed before it returns, or, given ``unindexed``,
        added to that list for the caller to index."""
        tx = WriteTx(conn=self._writer, now=utcnow(), store=self, txid=txid)
        last = offset

        def spill(rows: list[ChangeRow]) -> None:
            nonlocal last
            self._index(tx)  # a long operation's memory stays bounded by its chunk
            early = change_params(rows, tx.now)
            for p in early:
                last += 1
                p["log_offset"] = last
                p["txid"] = txid
            stmt = prepared(self._writer.dialect, "changes.insert", _changes_insert)
            stmt.executemany(cursor(self._writer), early)

        tx.spill = spill
        with translate_errors():
            value = fn(tx)
            if unindexed is None:
                self._index(tx)
            else:
                unindexed.extend(tx.unindexed)
        if not tx.changes and tx.replay_txid is not None and last == offset:
            return value, [], tx.replay_txid, last
        params = change_params(tx.changes, tx.now)
        for p in params:
            p["txid"] = txid
        return value, params, None, last

    def _index(self, tx: WriteTx) -> None:
        """Index the messages ``tx`` inserted, now: before the next operation
        can touch those rows (an update or a delete trigger expects them
        indexed)."""
        if tx.unindexed:
            index_messages(cursor(self._writer), tx.unindexed)
            tx.unindexed = []

    def _finish_log(self, cur: Any, params: list[dict[str, Any]], offset: int, txid: int) -> None:
        if params:
            stmt = prepared(self._writer.dialect, "changes.insert", _changes_insert)
            stmt.executemany(cur, params)
        cur.execute(
            "UPDATE log_state SET last_offset = ?, last_txid = ? WHERE id = 1", (offset, txid)
        )

    def _begin(self, cur: Any, batch: list[Request]) -> bool:
        try:
            cur.execute("BEGIN IMMEDIATE")
            return True
        except Exception as exc:
            err = self._store_error(exc, "could not start a write transaction")
            for r in batch:
                r.finish(error=err)
            return False

    def _commit(self, cur: Any, batch: list[Request]) -> bool:
        try:
            cur.execute("COMMIT")
        except Exception as exc:
            self._rollback_quietly()
            err = self._commit_error(exc)
            for r in batch:
                r.finish(error=err)
            return False
        self._committed()
        return True

    @classmethod
    def _commit_error(cls, exc: BaseException) -> BaseException:
        """What the writers of a failed COMMIT are told: in doubt after an I/O
        error (store/translate.py ``commit_in_doubt``), else nothing was
        written."""
        doubt = commit_in_doubt(exc)
        if doubt is None:
            return cls._store_error(exc, "commit failed")
        doubt.__cause__ = exc
        return doubt

    @staticmethod
    def _store_error(exc: BaseException, what: str = "write failed") -> BaseException:
        """What the writers of a failed transaction are told: a threadkeep
        error as it is, a full disk as :class:`StorageFull`, anything else as
        a :class:`StoreError` saying ``what``. The transaction was rolled
        back, so nothing of it was written."""
        if isinstance(exc, ThreadkeepError | KeyboardInterrupt | SystemExit):
            return exc
        err = storage_full(exc) or StoreError(f"{what}, nothing was written: {exc}")
        err.__cause__ = exc
        return err

    def _rollback_quietly(self) -> None:
        try:
            self._writer.exec_driver_sql("ROLLBACK")
        except Exception:
            pass

    # --- reads ------------------------------------------------------------------

    def read(self, fn: ReadFn[T], *, single_statement: bool = False) -> T:
        # One statement in autocommit mode is its own snapshot; anything more
        # runs in one transaction, so every statement sees the same data.
        if self._closed:
            raise StoreClosed()
        with self._read_lock, self._engine.connect() as conn, translate_errors():
            if single_statement:
                return fn(conn)
            cur = cursor(conn)
            cur.execute("BEGIN")  # one snapshot for every statement of fn
            try:
                return fn(conn)
            finally:
                cur.execute("COMMIT")

    def prepare_changes_read(self) -> None:
        return None

    @property
    def txid_sql(self) -> sa.ColumnElement[int]:
        return sa.bindparam("txid", type_=sa.BigInteger)

    def fold(self, column: sa.ColumnElement[Any], sigma: bool = True) -> sa.ColumnElement[str]:
        return sa.func.tk_fold(column, type_=sa.String)

    def carries_tag(self, session: sa.ColumnCollection[str, Any]) -> sa.ColumnElement[bool]:
        # One key lookup in session_tags: 0.3-0.5 µs a session, where opening
        # the row's JSON with json_each cost about 1.8.
        st = session_tags.c
        probe = sa.select(sa.literal(1)).where(
            st.owner_id == sa.bindparam("owner"),
            st.tag == sa.bindparam("tag"),
            st.session_id == session.id,
        )
        return probe.exists()

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

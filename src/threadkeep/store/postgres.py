"""The PostgreSQL engine: psycopg 3, a connection pool, many writers.

* Concurrent writers to one session serialise on that session's row (the
  ``UPDATE sessions ... RETURNING head_seq`` that allocates seq), so seq is
  contiguous across connections, processes and server instances; writers to
  different sessions never wait for each other, and their commits share WAL
  flushes.
* ``synchronous_commit`` is forced on for threadkeep's connections, whatever
  the server default: acknowledged means durable. (Behind a transaction
  pooler, for each transaction instead: store/pg_connect.py.)
* Change-log offsets are assigned after commit by :func:`assign_offsets`
  (store/changes.py explains why).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy import event

from threadkeep.errors import CommitInDoubt, StoreClosed
from threadkeep.model.common import Committed, utcnow
from threadkeep.store import pg_append, pg_connect, pg_url
from threadkeep.store.changes import assign_offsets, change_params, changes_waiting
from threadkeep.store.contract import ChangeRow, ReadFn, StoreEngine, WriteFn, WriteTx
from threadkeep.store.notify import PgChangeChannel
from threadkeep.store.tables import changes
from threadkeep.store.translate import is_retryable, is_unique_violation, translate_errors

T = TypeVar("T")

# The id of the writing transaction, as Electric reports it (xid8 -> bigint).
_TXID = sa.cast(sa.cast(sa.func.pg_current_xact_id(), sa.Text), sa.BigInteger)
# Built once (SQLAlchemy memoizes a statement's cache key; ``.values()`` on
# every write built and keyed the insert anew, ~0.1 ms of CPU per write).
_INSERT_CHANGES = changes.insert().values(txid=_TXID)
_INSERT_CHANGES_TXID = _INSERT_CHANGES.returning(changes.c.txid)
_SELECT_TXID = sa.select(_TXID)

# A unique violation can be a race between two appends with the same client id;
# running the operation again finds the winner's row and returns it.
_MAX_ATTEMPTS = 4

# How long an append waits for one of the one-statement path's connections
# before taking the general path (and its pool) instead.
_APPEND_SLOT_TIMEOUT = 5.0


def _commit(trans: sa.RootTransaction) -> None:
    """Commit; a connection lost during COMMIT leaves the outcome unknown.

    Errors before COMMIT roll the transaction back, so write() may run the
    operation again. A connection that drops during COMMIT may have been
    committed by the server first: running the operation again could apply
    it twice (an append without a client id would be written twice), so that
    case raises CommitInDoubt instead of being retried."""
    try:
        trans.commit()
    except (sa_exc.DBAPIError, psycopg.Error) as exc:
        lost = getattr(exc, "connection_invalidated", False) or isinstance(
            getattr(exc, "orig", exc), psycopg.OperationalError
        )
        if lost:
            raise CommitInDoubt() from exc
        raise


class PostgresStore(StoreEngine):
    dialect = "postgresql"
    supports_append_at_once = True

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        self.schema = pg_url.schema_of(url)
        # Through a transaction pooler (store/pg_connect.py) a transaction's
        # first statement sets what a session would hold, so reads run in
        # transactions; the one-statement append carries its own settings.
        self.pooled = pg_url.through_pooler(url)
        self._append_sql = pg_append.statements(pooled=self.pooled, schema=self.schema)
        self._engine = pg_connect.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping: it would add a round trip to every operation. A
            # connection found dead raises a disconnect error, SQLAlchemy drops
            # it (and the pool's older ones), and write() runs again.
        )
        if not self.pooled:
            # Through a pooler a session setting would land on one server
            # connection and leak to the pooler's next client on it, while
            # this client's next transaction runs on another: there, each
            # transaction sets its own (pg_connect.transaction_settings).
            event.listen(self._engine, "connect", self._on_connect)
        self._appenders = pg_append.AppendConnections(
            url,
            max_idle=pool_size,
            max_open=pool_size + max_overflow,
            timeout=_APPEND_SLOT_TIMEOUT,
        )
        self._closed = False

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET synchronous_commit TO on")
        dbapi_conn.execute("SET TimeZone TO 'UTC'")
        dbapi_conn.autocommit = autocommit

    def _connect(self) -> sa.Connection:
        """A pool connection; a pool that stays exhausted for its whole
        timeout raises StoreBusy (a threadkeep error) before anything ran."""
        with translate_errors():
            return self._engine.connect()

    @property
    def sa_engine(self) -> sa.Engine:
        return self._engine

    def write(self, fn: WriteFn[T], *, only_inserts: bool = False) -> Committed[T]:
        if self._closed:
            raise StoreClosed()
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._connect() as conn:
                    with conn.begin() as trans:
                        tx = WriteTx(conn=conn, now=utcnow(), store=self)
                        tx.spill = functools.partial(self._insert_changes, tx)
                        value = fn(tx)
                        txid = self._flush(tx)
                        _commit(trans)
                    self._committed()
                    return Committed(value, txid)
            except (sa_exc.DBAPIError, psycopg.Error) as exc:
                dropped = getattr(exc, "connection_invalidated", False)
                if attempt < _MAX_ATTEMPTS and (
                    dropped or is_retryable(exc) or is_unique_violation(exc)
                ):
                    continue
                with translate_errors():
                    raise

    @staticmethod
    def _insert_changes(tx: WriteTx, rows: list[ChangeRow]) -> None:
        # Offsets are assigned after commit (store/changes.py), so rows written
        # early in the transaction are numbered like the others.
        tx.conn.execute(_INSERT_CHANGES, change_params(rows, tx.now))

    @staticmethod
    def _flush(tx: WriteTx) -> int:
        params = change_params(tx.changes, tx.now)
        if not params and tx.replay_txid is not None:
            return tx.replay_txid
        if not params:
            return int(tx.conn.execute(_SELECT_TXID).scalar_one())
        return int(tx.conn.execute(_INSERT_CHANGES_TXID, params).scalars().first())  # type: ignore[arg-type]

    def read(self, fn: ReadFn[T], *, single_statement: bool = False) -> T:
        if self._closed:
            raise StoreClosed()
        if single_statement and not self.pooled:
            # Autocommit: one statement is its own transaction, with no BEGIN
            # and COMMIT round trips. Set on the driver's connection (as
            # append_at_once does), not through SQLAlchemy's isolation-level
            # option, whose set-and-reset cost ~30 µs a read.
            with self._connect() as conn, translate_errors():
                raw: psycopg.Connection[Any] = conn.connection.dbapi_connection  # type: ignore[assignment]
                raw.autocommit = True
                try:
                    return fn(conn)
                finally:
                    if not raw.closed:
                        raw.autocommit = False
        with (
            self._connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            translate_errors(),
            conn.begin(),
        ):
            return fn(conn)

    def append_at_once(
        self, owner_id: str, session_id: str, rows: list[dict[str, Any]], now: datetime
    ) -> tuple[int, int] | None:
        if self._closed:
            raise StoreClosed()
        query, params = pg_append.statement(owner_id, session_id, rows, now, self._append_sql)
        got = pg_append.run(self._appenders, query, params)
        if got is not None:
            self._committed()
        return got

    @property
    def txid_sql(self) -> sa.ColumnElement[int]:
        return _TXID

    def change_channel(self) -> PgChangeChannel:
        return PgChangeChannel(self.url)

    def snapshot_read(self, fn: ReadFn[T]) -> T:
        """One REPEATABLE READ transaction that first takes the assigners' lock
        and numbers every change its snapshot can see (store/changes.py): the
        data ``fn`` reads is then exactly the log up to ``last_offset``.
        Changes that commit after the snapshot are invisible to it, stay
        unnumbered, and get larger offsets later."""
        if self._closed:
            raise StoreClosed()
        attempt = 0
        while True:
            attempt += 1
            try:
                with (
                    self._connect().execution_options(isolation_level="REPEATABLE READ") as conn,
                    conn.begin(),
                ):
                    while assign_offsets(conn, lock_always=True) >= 10_000:
                        pass
                    return fn(conn)
            except (sa_exc.DBAPIError, psycopg.Error) as exc:
                # Another assigner committed after this snapshot began: the
                # numbering it did is invisible here. Take a new snapshot.
                if attempt < _MAX_ATTEMPTS * 4 and (
                    getattr(exc, "connection_invalidated", False) or is_retryable(exc)
                ):
                    continue
                with translate_errors():
                    raise

    def prepare_changes_read(self) -> None:
        # Every poll of every synced client comes through here, and almost
        # always nothing waits: ask in one autocommit statement, and open the
        # assigners' transaction only when there is numbering to do. A change
        # that commits just after the question is numbered by the next read,
        # as one that commits just after a numbering transaction always was.
        if not self.read(changes_waiting, single_statement=True):
            return
        with self._connect() as conn, translate_errors():
            while True:
                with conn.begin():
                    n = assign_offsets(conn)
                if n < 10_000:
                    return

    def fold(self, column: sa.ColumnElement[Any], sigma: bool = True) -> sa.ColumnElement[str]:
        # lower() is Unicode-aware, but it lowers a capital sigma to the
        # medial form where a word's own final sigma stays: the Greek word
        # for Sisyphus in capitals and in lower case would not meet. The
        # translation costs 12 ms per 100,000 titles, so only a text that
        # holds a sigma pays it.
        lowered = sa.func.lower(column, type_=sa.String)
        if not sigma:
            return lowered
        return sa.func.translate(lowered, "\u03c2", "\u03c3", type_=sa.String)

    def carries_tag(self, session: sa.ColumnCollection[str, Any]) -> sa.ColumnElement[bool]:
        # The row is in hand as the walk passes it: jsonb containment costs
        # about 0.6 µs a session. A lookup in session_tags cost about 2 µs,
        # and a plain EXISTS on it, without fresh statistics, became a join
        # that read all of a common tag's entries per session (0.9 s).
        tag = sa.bindparam("tag", type_=sa.String)
        contains = session.tags.op("@>", return_type=sa.Boolean)
        return contains(sa.func.jsonb_build_array(tag))  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._appenders.close()
            self._engine.dispose()

    def __repr__(self) -> str:
        return f"PostgresStore({self._engine.url.render_as_string(hide_password=True)!r})"

"""The PostgreSQL engine: psycopg 3, a connection pool, many writers.

* Concurrent writers to one session serialise on that session's row (the
  ``UPDATE sessions ... RETURNING head_seq`` that allocates seq), so seq is
  contiguous across connections, processes and server instances; writers to
  different sessions never wait for each other, and their commits share WAL
  flushes.
* ``synchronous_commit`` is forced on for threadkeep's connections, whatever
  the server default: acknowledged means durable.
* Change-log offsets are assigned after commit by :func:`assign_offsets`
  (store/changes.py explains why).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from sqlalchemy import event
from sqlalchemy.engine import make_url

from threadkeep.errors import StoreClosed, StoreError
from threadkeep.model.common import Committed, utcnow
from threadkeep.store.changes import assign_offsets, change_params
from threadkeep.store.contract import ReadFn, StoreEngine, WriteFn, WriteTx
from threadkeep.store.tables import changes
from threadkeep.store.translate import is_retryable, is_unique_violation, translate_errors

T = TypeVar("T")

# The id of the writing transaction, as Electric reports it (xid8 -> bigint).
_TXID = sa.cast(sa.cast(sa.func.pg_current_xact_id(), sa.Text), sa.BigInteger)

# A unique violation can be a race between two appends with the same client id;
# running the operation again finds the winner's row and returns it.
_MAX_ATTEMPTS = 4


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def normalise_url(url: str) -> sa.URL:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    if u.drivername != "postgresql+psycopg":
        raise StoreError(f"not a PostgreSQL URL: {url}")
    return u


class PostgresStore(StoreEngine):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        self._engine = sa.create_engine(
            normalise_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            json_serializer=_dumps,
        )
        event.listen(self._engine, "connect", self._on_connect)
        self._closed = False

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET synchronous_commit TO on")
        dbapi_conn.execute("SET TimeZone TO 'UTC'")
        dbapi_conn.autocommit = autocommit

    @property
    def sa_engine(self) -> sa.Engine:
        return self._engine

    def write(self, fn: WriteFn[T]) -> Committed[T]:
        if self._closed:
            raise StoreClosed()
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._engine.connect() as conn:
                    with conn.begin():
                        tx = WriteTx(conn=conn, now=utcnow(), store=self)
                        value = fn(tx)
                        txid = self._flush(tx)
                    return Committed(value, txid)
            except sa_exc.DBAPIError as exc:
                if attempt < _MAX_ATTEMPTS and (is_retryable(exc) or is_unique_violation(exc)):
                    continue
                with translate_errors():
                    raise

    @staticmethod
    def _flush(tx: WriteTx) -> int:
        params = change_params(tx.changes, tx.now)
        if not params and tx.replay_txid is not None:
            return tx.replay_txid
        if not params:
            return int(tx.conn.execute(sa.select(_TXID)).scalar_one())
        stmt = changes.insert().values(txid=_TXID).returning(changes.c.txid)
        return int(tx.conn.execute(stmt, params).scalars().first())  # type: ignore[arg-type]

    def read(self, fn: ReadFn[T]) -> T:
        if self._closed:
            raise StoreClosed()
        with (
            self._engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            translate_errors(),
            conn.begin(),
        ):
            return fn(conn)

    def prepare_changes_read(self) -> None:
        with self._engine.connect() as conn, translate_errors():
            while True:
                with conn.begin():
                    n = assign_offsets(conn)
                if n < 10_000:
                    return

    def tag_predicate(self, column: sa.ColumnElement[Any], tag: str) -> sa.ColumnElement[bool]:
        return column.op("@>")(sa.func.jsonb_build_array(tag))  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __repr__(self) -> str:
        return f"PostgresStore({self._engine.url.render_as_string(hide_password=True)!r})"

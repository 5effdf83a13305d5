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

import functools
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from psycopg.types.json import Jsonb
from sqlalchemy import event
from sqlalchemy.engine import make_url

from threadkeep.errors import StoreClosed, StoreError
from threadkeep.model.common import Committed, utcnow
from threadkeep.model.jsontext import dumps
from threadkeep.store.changes import assign_offsets, change_params
from threadkeep.store.contract import ChangeRow, ReadFn, StoreEngine, WriteFn, WriteTx
from threadkeep.store.notify import PgChangeChannel
from threadkeep.store.tables import changes
from threadkeep.store.translate import is_retryable, is_unique_violation, translate_errors

T = TypeVar("T")

# The id of the writing transaction, as Electric reports it (xid8 -> bigint).
_TXID = sa.cast(sa.cast(sa.func.pg_current_xact_id(), sa.Text), sa.BigInteger)

# A unique violation can be a race between two appends with the same client id;
# running the operation again finds the winner's row and returns it.
_MAX_ATTEMPTS = 4

_RECORD_KEYS = (
    "seq",
    "id",
    "role",
    "content",
    "parts",
    "tool_calls",
    "model",
    "input_tokens",
    "output_tokens",
    "client_id",
    "metadata",
)


def normalise_url(url: str) -> sa.URL:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    if u.drivername != "postgresql+psycopg":
        raise StoreError(f"not a PostgreSQL URL: {url}")
    return u


# A plain append in one statement: allocate seq by bumping the session row
# (the row lock orders concurrent appends), insert the messages, and write
# their change-log rows, all with this transaction's id. Sent with BEGIN and
# COMMIT implied (autocommit), the whole durable append is one round trip, as the
# raw driver's single-statement append is. `rows` carries the messages and
# their change-log rows (built by store/messages.py, the same code as the
# general path) as JSON; seq is filled in here. (Data-modifying WITH clauses
# run to completion whether or not the final SELECT reads them.)
_APPEND_AT_ONCE = """
WITH s AS (
    UPDATE sessions
    SET head_seq = head_seq + %(n)s,
        input_tokens = input_tokens + %(in_tok)s,
        output_tokens = output_tokens + %(out_tok)s,
        last_activity_at = %(now)s,
        updated_at = %(now)s
    WHERE id = %(sid)s AND owner_id = %(owner)s AND deleted_at IS NULL
    RETURNING head_seq, event_seq, input_tokens, output_tokens,
              pg_current_xact_id()::text::bigint AS txid
),
v AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(
        seq bigint, id text, role text, content text, parts jsonb, tool_calls jsonb,
        model text, input_tokens bigint, output_tokens bigint, client_id text,
        metadata jsonb, change jsonb)
),
m AS (
    INSERT INTO messages (id, owner_id, session_id, seq, role, content, parts, tool_calls,
                          model, input_tokens, output_tokens, client_id, metadata,
                          created_at, txid)
    SELECT v.id, %(owner)s, %(sid)s, s.head_seq - %(n)s + v.seq, v.role, v.content,
           v.parts, v.tool_calls, v.model, v.input_tokens, v.output_tokens, v.client_id,
           v.metadata, %(now)s, s.txid
    FROM s, v
),
c AS (
    INSERT INTO changes (txid, table_name, row_key, op, row, owner_id, session_id, created_at)
    SELECT s.txid, 'messages', v.id, 'insert',
           v.change || jsonb_build_object('seq', s.head_seq - %(n)s + v.seq),
           %(owner)s, %(sid)s, %(now)s
    FROM s, v
    UNION ALL
    SELECT s.txid, 'sessions', %(sid)s, 'update',
           jsonb_build_object(
               'id', %(sid)s::text, 'head_seq', s.head_seq, 'event_seq', s.event_seq,
               'input_tokens', s.input_tokens, 'output_tokens', s.output_tokens,
               'last_activity_at', %(now_text)s::text, 'updated_at', %(now_text)s::text),
           %(owner)s, %(sid)s, %(now)s
    FROM s
)
SELECT s.head_seq, s.txid FROM s
"""


class PostgresStore(StoreEngine):
    dialect = "postgresql"
    supports_append_at_once = True

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        self._engine = sa.create_engine(
            normalise_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping: it would add a round trip to every operation. A
            # connection found dead raises a disconnect error, SQLAlchemy drops
            # it (and the pool's older ones), and write() runs again.
            json_serializer=dumps,
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
                        tx.spill = functools.partial(self._insert_changes, tx)
                        value = fn(tx)
                        txid = self._flush(tx)
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
        tx.conn.execute(changes.insert().values(txid=_TXID), change_params(rows, tx.now))

    @staticmethod
    def _flush(tx: WriteTx) -> int:
        params = change_params(tx.changes, tx.now)
        if not params and tx.replay_txid is not None:
            return tx.replay_txid
        if not params:
            return int(tx.conn.execute(sa.select(_TXID)).scalar_one())
        stmt = changes.insert().values(txid=_TXID).returning(changes.c.txid)
        return int(tx.conn.execute(stmt, params).scalars().first())  # type: ignore[arg-type]

    def read(self, fn: ReadFn[T], *, single_statement: bool = False) -> T:
        if self._closed:
            raise StoreClosed()
        if single_statement:
            with (
                self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
                translate_errors(),
            ):
                return fn(conn)
        with (
            self._engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            translate_errors(),
            conn.begin(),
        ):
            return fn(conn)

    def append_at_once(
        self,
        owner_id: str,
        session_id: str,
        rows: list[dict[str, Any]],
        changes: list[dict[str, Any]],
        now: datetime,
        input_tokens: int,
        output_tokens: int,
    ) -> tuple[int, int] | None:
        if self._closed:
            raise StoreClosed()
        records = []
        for r, ch in zip(rows, changes, strict=True):
            rec = {k: r[k] for k in _RECORD_KEYS}
            ch.pop("seq", None)
            rec["change"] = ch
            records.append(rec)
        params = {
            "n": len(rows),
            "in_tok": input_tokens,
            "out_tok": output_tokens,
            "now": now,
            "now_text": now.isoformat(),
            "sid": session_id,
            "owner": owner_id,
            "rows": Jsonb(records, dumps=dumps),
        }
        with self._engine.connect() as conn:
            raw: psycopg.Connection[Any] = conn.connection.dbapi_connection  # type: ignore[assignment]
            # One statement in autocommit is its own transaction: atomic, and
            # one round trip, as the raw driver's append is.
            raw.autocommit = True
            try:
                got = raw.execute(_APPEND_AT_ONCE, params).fetchone()
            except psycopg.OperationalError:
                conn.invalidate()  # a broken connection: not back into the pool
                return None
            except psycopg.Error:
                # A clash (e.g. a client id written concurrently): the statement
                # wrote nothing; the general path sorts it out.
                return None
            finally:
                if not raw.closed:
                    raw.autocommit = False
        if got is None:
            return None
        self._committed()
        return int(got[0]), int(got[1])

    @property
    def txid_sql(self) -> sa.ColumnElement[int]:
        return _TXID

    def change_channel(self) -> PgChangeChannel:
        u = normalise_url(self.url).set(drivername="postgresql")
        return PgChangeChannel(u.render_as_string(hide_password=False))

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
                    self._engine.connect().execution_options(
                        isolation_level="REPEATABLE READ"
                    ) as conn,
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
        with self._engine.connect() as conn, translate_errors():
            while True:
                with conn.begin():
                    n = assign_offsets(conn)
                if n < 10_000:
                    return

    def fold(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        # lower() is Unicode-aware in PostgreSQL; casefold() differs from it only
        # for a handful of letters (e.g. German sharp s).
        return sa.func.lower(column, type_=sa.String)

    def tag_predicate(self, column: sa.ColumnElement[Any], tag: str) -> sa.ColumnElement[bool]:
        return column.op("@>")(sa.func.jsonb_build_array(tag))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __repr__(self) -> str:
        return f"PostgresStore({self._engine.url.render_as_string(hide_password=True)!r})"

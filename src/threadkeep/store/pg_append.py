"""The one-statement append on PostgreSQL, and the connections it runs on.

A plain append (messages only, no chosen ids, no replayed client id) is ONE
statement sent in autocommit mode, so BEGIN and COMMIT are implied and the
durable append is one round trip, as the raw driver's is. The statement bumps
the session row (its row lock orders concurrent appends and allocates seq),
inserts the messages, and writes their change-log rows with this
transaction's id. (Data-modifying WITH clauses run to completion whether or
not the final SELECT reads them.)

Why these choices (each measured against raw psycopg on the peers' W1):

* Its own small set of psycopg connections, always in autocommit. Borrowing
  one from SQLAlchemy's pool costs a ``Connection`` wrapper, a checkout and a
  reset-on-return, and switching autocommit on and off per call: ~25 µs of
  client CPU per append, on a path whose whole Python budget is ~150 µs.
  psycopg prepares the statement per connection after a few uses, so a
  connection that stays with this path keeps its prepared plan.
* One message (the common case) is sent as typed parameters: no
  ``jsonb_to_recordset`` and no JSON text to build on the client or parse on
  the server. Several go as one JSON array.
* The change-log row is built by the server from the same values
  (``jsonb_build_object``) instead of being sent as a second JSON copy of
  the message. It holds the keys and values ``store.changes.row_json`` gives
  the general path (jsonb keeps no key order, so the stored rows are equal).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from threadkeep.model.jsontext import dumps
from threadkeep.store import pg_connect, pg_url

# The session's change-log row after an append (as store/messages.py
# session_change builds it on the general path).
_SESSION_CHANGE = """
    SELECT s.txid, 'sessions', %(sid)s, 'update',
           jsonb_build_object(
               'id', %(sid)s::text, 'head_seq', s.head_seq, 'event_seq', s.event_seq,
               'input_tokens', s.input_tokens, 'output_tokens', s.output_tokens,
               'last_activity_at', %(now_text)s::text, 'updated_at', %(now_text)s::text),
           %(owner)s, %(sid)s, %(now)s
    FROM s
"""

_BUMP = """
WITH {durable}s AS (
    UPDATE {t}sessions
    SET head_seq = head_seq + %(n)s,
        input_tokens = input_tokens + %(in_tok)s,
        output_tokens = output_tokens + %(out_tok)s,
        last_activity_at = %(now)s,
        updated_at = %(now)s
    WHERE id = %(sid)s AND owner_id = %(owner)s AND deleted_at IS NULL
    RETURNING head_seq, event_seq, input_tokens, output_tokens,
              pg_current_xact_id()::text::bigint AS txid
),
"""

# One message, as typed parameters; its seq is the new head.
_APPEND_ONE = (
    _BUMP
    + """
m AS (
    INSERT INTO {t}messages (id, owner_id, session_id, seq, role, content, parts, tool_calls,
                          model, input_tokens, output_tokens, client_id, metadata,
                          created_at, txid)
    SELECT %(id)s, %(owner)s, %(sid)s, s.head_seq, %(role)s, %(content)s,
           %(parts)s::jsonb, %(tool_calls)s::jsonb, %(model)s, %(itok)s::bigint,
           %(otok)s::bigint, %(client_id)s, %(metadata)s::jsonb, %(now)s, s.txid
    FROM s
),
c AS (
    INSERT INTO {t}changes (txid, table_name, row_key, op, row, owner_id, session_id, created_at)
    SELECT s.txid, 'messages', %(id)s, 'insert',
           jsonb_build_object(
               'id', %(id)s::text, 'owner_id', %(owner)s::text,
               'session_id', %(sid)s::text, 'seq', s.head_seq, 'role', %(role)s::text,
               'content', %(content)s::text, 'parts', %(parts)s::jsonb,
               'tool_calls', %(tool_calls)s::jsonb, 'model', %(model)s::text,
               'input_tokens', %(itok)s::bigint, 'output_tokens', %(otok)s::bigint,
               'client_id', %(client_id)s::text, 'metadata', %(metadata)s::jsonb,
               'created_at', %(now_text)s::text, 'status', 'complete'),
           %(owner)s, %(sid)s, %(now)s
    FROM s
    UNION ALL"""
    + _SESSION_CHANGE
    + """)
SELECT s.head_seq, s.txid FROM s{durable_from}
"""
)

# Several messages, as one JSON array; ``pos`` is each one's 1-based place.
_APPEND_MANY = (
    _BUMP
    + """
v AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(
        pos bigint, id text, role text, content text, parts jsonb, tool_calls jsonb,
        model text, input_tokens bigint, output_tokens bigint, client_id text,
        metadata jsonb)
),
m AS (
    INSERT INTO {t}messages (id, owner_id, session_id, seq, role, content, parts, tool_calls,
                          model, input_tokens, output_tokens, client_id, metadata,
                          created_at, txid)
    SELECT v.id, %(owner)s, %(sid)s, s.head_seq - %(n)s + v.pos, v.role, v.content,
           v.parts, v.tool_calls, v.model, v.input_tokens, v.output_tokens, v.client_id,
           v.metadata, %(now)s, s.txid
    FROM s, v
),
c AS (
    INSERT INTO {t}changes (txid, table_name, row_key, op, row, owner_id, session_id, created_at)
    SELECT s.txid, 'messages', v.id, 'insert',
           jsonb_build_object(
               'id', v.id, 'owner_id', %(owner)s::text, 'session_id', %(sid)s::text,
               'seq', s.head_seq - %(n)s + v.pos, 'role', v.role, 'content', v.content,
               'parts', v.parts, 'tool_calls', v.tool_calls, 'model', v.model,
               'input_tokens', v.input_tokens, 'output_tokens', v.output_tokens,
               'client_id', v.client_id, 'metadata', v.metadata,
               'created_at', %(now_text)s::text, 'status', 'complete'),
           %(owner)s, %(sid)s, %(now)s
    FROM s, v
    UNION ALL"""
    + _SESSION_CHANGE
    + """)
SELECT s.head_seq, s.txid FROM s{durable_from}
"""
)

# Behind a transaction pooler (store/pg_connect.py) the statement carries
# what the session would: acknowledged-means-durable for its own implicit
# transaction (set_config(..., true) holds until that transaction's commit),
# and the schema, by name, since a search path cannot change within a
# statement. (PostgreSQL resolves the generated search columns' functions and
# the foreign keys when they are created, so naming the tables is enough.)
_DURABLE = "d AS (SELECT set_config('synchronous_commit', 'on', true)),\n"


def statements(*, pooled: bool = False, schema: str | None = None) -> tuple[str, str]:
    """The one-message and the several-message append statements (a store
    builds them once)."""
    parts = {
        "durable": _DURABLE if pooled else "",
        "durable_from": ", d" if pooled else "",
        "t": f"{schema}." if pooled and schema is not None else "",
    }
    return _APPEND_ONE.format(**parts), _APPEND_MANY.format(**parts)


# A direct connection's (the session holds the settings and the search path).
DIRECT = statements()

_MESSAGE_KEYS = (
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


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=dumps)


def statement(
    owner_id: str,
    session_id: str,
    rows: list[dict[str, Any]],
    now: datetime,
    sql: tuple[str, str] = DIRECT,
) -> tuple[str, dict[str, Any]]:
    """The append statement for message ``rows`` (store/messages.py
    ``message_rows``; their ``seq`` is ignored) and its parameters. ``sql``:
    :func:`statements` for the store's connections."""
    append_one, append_many = sql
    params: dict[str, Any] = {
        "n": len(rows),
        "in_tok": sum(r["input_tokens"] or 0 for r in rows),
        "out_tok": sum(r["output_tokens"] or 0 for r in rows),
        "now": now,
        "now_text": now.isoformat(),
        "sid": session_id,
        "owner": owner_id,
    }
    if len(rows) == 1:
        r = rows[0]
        params.update(
            id=r["id"],
            role=r["role"],
            content=r["content"],
            parts=_json(r["parts"]),
            tool_calls=_json(r["tool_calls"]),
            model=r["model"],
            itok=r["input_tokens"],
            otok=r["output_tokens"],
            client_id=r["client_id"],
            metadata=Jsonb(r["metadata"], dumps=dumps),
        )
        return append_one, params
    records = [{"pos": i, **{k: r[k] for k in _MESSAGE_KEYS}} for i, r in enumerate(rows, 1)]
    params["rows"] = Jsonb(records, dumps=dumps)
    return append_many, params


class AppendConnections:
    """A few psycopg connections, always in autocommit, that only the
    one-statement append uses (see the module doc for why not the pool's).

    Last in, first out, so a lone writer keeps reusing one connection (and its
    prepared statement). At most ``max_open`` are in use at once, as the
    SQLAlchemy pool bounds its own (a burst of appenders must not exhaust the
    server's connection slots); at most ``max_idle`` are kept between uses."""

    def __init__(self, url: str, *, max_idle: int, max_open: int, timeout: float) -> None:
        self._url = url
        # Through a pooler a session SET would stay on the pooler's server
        # connection for its next client; the statement sets what it needs.
        self._pooled = pg_url.through_pooler(url)
        self._max_idle = max_idle
        self._slots = threading.BoundedSemaphore(max_open)
        self._timeout = timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> psycopg.Connection[Any] | None:
        """A connection, or None if none came free in time (the caller takes
        the general path, whose pool waits and reports in its own way)."""
        if not self._slots.acquire(timeout=self._timeout):
            return None
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            conn = pg_connect.connect(self._url, autocommit=True)
            if not self._pooled:
                # Acknowledged means durable, whatever the server's default.
                conn.execute("SET synchronous_commit TO on")
                conn.execute("SET TimeZone TO 'UTC'")
        except BaseException:
            self._slots.release()
            raise
        return conn

    def put(self, conn: psycopg.Connection[Any]) -> None:
        """Hand back a connection that is idle and healthy."""
        with self._lock:
            keep = not self._closed and len(self._idle) < self._max_idle
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()
        self._slots.release()

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        """Close a connection whose state is unknown or broken."""
        conn.close()
        self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def run(conns: AppendConnections, query: str, params: dict[str, Any]) -> tuple[int, int] | None:
    """Run an append statement; (head_seq, txid), or None if it wrote nothing
    (no such live session for this owner, or a clash such as a client id
    written concurrently: the general path then sorts it out)."""
    try:
        conn = conns.get()
    except psycopg.OperationalError:
        return None  # the server is not there: the general path reports it
    if conn is None:
        return None
    try:
        got = conn.execute(query, params).fetchone()
    except psycopg.OperationalError:
        conns.discard(conn)  # a broken connection: not back into the set
        return None
    except psycopg.Error:
        # The statement was its own transaction and is rolled back whole.
        conns.put(conn)
        return None
    except BaseException:
        conns.discard(conn)  # interrupted mid-protocol: its state is unknown
        raise
    conns.put(conn)
    if got is None:
        return None
    return int(got[0]), int(got[1])

"""Helpers shared by the contract tests (plain functions, no fixtures)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg.sql
import sqlalchemy as sa

from conftest import row_counts
from threadkeep import Actor, Message, Session, Threadkeep
from threadkeep.store import tables

# Tables whose full contents a failing call must leave untouched.
_DUMPED = ("users", "sessions", "messages", "tool_events", "timeline_events", "changes")


def db_snapshot(tk: Threadkeep) -> dict[str, Any]:
    """Row counts (conftest.row_counts) plus every row of the data tables, so that
    an UPDATE that should not have happened is caught too, not only an INSERT."""
    snap: dict[str, Any] = dict(row_counts(tk))
    with tk.engine.sa_engine.connect() as conn:
        for name in _DUMPED:
            table = tables.metadata.tables[name]
            pk = next(iter(table.primary_key.columns))
            rows = conn.execute(sa.select(table).order_by(pk)).all()
            snap[f"rows:{name}"] = [tuple(r) for r in rows]
    return snap


_LOG_KEYS = ("changes", "rows:changes", "log_state.last_offset")


@contextmanager
def writes_nothing(tk: Threadkeep, *, except_log: bool = False) -> Iterator[None]:
    """Assert the block leaves the database exactly as it found it.

    Use it outside ``pytest.raises``::

        with writes_nothing(tk), pytest.raises(InvalidInput):
            tk.append(...)

    ``except_log``: a successful no-op may still log a row (so that its txid
    shows up in the change stream); only the data must stay the same.
    """
    before = db_snapshot(tk)
    yield
    after = db_snapshot(tk)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if except_log:
        changed = [k for k in changed if k not in _LOG_KEYS]
    assert not changed, f"the call changed the database: {changed}"


def missing_id() -> str:
    return f"missing-{uuid.uuid4()}"


def backdate(tk: Threadkeep, times: dict[str, datetime]) -> None:
    """Give sessions the activity times of a long history (ties included), by
    id, in one write."""
    c = tables.sessions.c

    def op(tx: Any) -> None:
        for sid, at in times.items():
            tx.conn.execute(tables.sessions.update().where(c.id == sid).values(last_activity_at=at))

    tk.engine.write(op)


def new_session(tk: Threadkeep, actor: Actor, **fields: Any) -> Session:
    return tk.create_session(actor, **fields).value


def user_msgs(n: int, prefix: str = "m", start: int = 1) -> list[dict[str, Any]]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": f"{prefix}{i}"} for i in range(start, start + n)]


def with_messages(
    tk: Threadkeep, actor: Actor, n: int, prefix: str = "m", **fields: Any
) -> Session:
    """A new session holding ``n`` messages with contents prefix1..prefixN."""
    s = new_session(tk, actor, **fields)
    if n:
        tk.append_messages(actor, s.id, user_msgs(n, prefix))
    return tk.get_session(actor, s.id)


def view(messages: list[Message]) -> list[tuple[Any, ...]]:
    """What a history *is*, independent of which session physically holds each
    message (rewind moves rows to the new branch, and says so in session_id)."""
    return [
        (
            m.id,
            m.seq,
            m.role,
            m.content,
            m.client_id,
            m.metadata,
            m.input_tokens,
            m.output_tokens,
            m.created_at,
        )
        for m in messages
    ]


def contents(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


def not_raising(cases: dict[str, Any], call: Any, error: type[BaseException]) -> dict[str, str]:
    """Run ``call(case)`` for every case; return the ones that did not raise
    ``error`` (with what happened instead). Many small cases in one test, one
    database, and a failure still lists every case that broke."""
    wrong: dict[str, str] = {}
    for name, case in cases.items():
        try:
            result = call(case)
        except error:
            continue
        except BaseException as exc:
            wrong[name] = f"raised {exc!r}"
        else:
            wrong[name] = f"returned {result!r:.200}"
    return wrong


def query_plan(conn: sa.Connection, sql: str, params: Any) -> str:
    """The plan of a statement a test caught (``before_cursor_execute``), as
    one line: SQLite's ``EXPLAIN QUERY PLAN``, or PostgreSQL's generic plan,
    the one a prepared statement reused by a pooled connection ends up
    with (so a value the statement takes as a parameter cannot steer it)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
        return " ".join(str(r[-1]) for r in rows)
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    for i, name in enumerate(names, 1):
        sql = sql.replace(f"%({name})s", f"${i}")
    raw = conn.connection.driver_connection
    args = ", ".join(psycopg.sql.Literal(params[n]).as_string(raw) for n in names)
    args = args.replace("%", "%%")  # a LIKE pattern's, in a statement without parameters
    conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: ask if it can
    conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql("PREPARE caught AS " + sql)
    try:
        rows = conn.exec_driver_sql(
            f"EXPLAIN EXECUTE caught({args})" if names else "EXPLAIN EXECUTE caught"
        )
        return " ".join(r[0] for r in rows)
    finally:
        conn.exec_driver_sql("DEALLOCATE caught")
        conn.exec_driver_sql("RESET ALL")  # the pooled connection goes back as it came


def list_plan(tk: Threadkeep, actor: Actor, **flt: Any) -> str:
    """The plan of the statement ``list_sessions(actor, **flt)`` runs, asked
    the way ``query_plan`` asks. The list runs compiled statements on the
    DBAPI cursor (store/prepared.py), which SQLAlchemy's events do not see,
    so the statement is chosen here as the store chooses it."""
    from threadkeep.model.sessions import SessionFilter
    from threadkeep.store import sessions as session_q

    with tk.engine.sa_engine.connect() as conn:
        shape, values = session_q.list_query(conn, actor.user_id, SessionFilter(**flt), 50, None)
        stmt = session_q.list_statement(conn, tk.engine, shape)
        params = stmt.params(values)
        return query_plan(conn, stmt.sql, tuple(params) if isinstance(params, list) else params)

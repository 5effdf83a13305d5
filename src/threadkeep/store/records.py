"""Queries shared by the session-record tables (todos, snapshots...; see
store/tables.py, revision 0003): insert, get, list, update and delete of a
row that belongs to one session of one owner, each write logged to
``changes``.

Every statement is scoped by owner *and* session: another user's row, or a
row of another session, is reported exactly like a missing one. The
per-family modules (store/todos.py, store/repos.py...) add what differs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from threadkeep.errors import InvalidInput, NotFound, ToolEventNotFound
from threadkeep.model.ids import new_id
from threadkeep.model.record import RecordRow
from threadkeep.model.trusted import trusted
from threadkeep.store import sessions as session_q
from threadkeep.store.changes import row_json
from threadkeep.store.chosen_ids import check_free
from threadkeep.store.contract import WriteTx
from threadkeep.store.messages import check_linked_messages
from threadkeep.store.prepared import bound_set, bound_values
from threadkeep.store.tables import tool_events

R = TypeVar("R", bound=RecordRow)


@dataclass(frozen=True)
class Kind(Generic[R]):
    """One session-record table: its model, its NotFound, how rows read back."""

    table: sa.Table
    model: type[R]
    not_found: type[NotFound]
    name: str  # for AlreadyExists: "todo", "snapshot"...
    order: tuple[str, ...] = ("created_at", "id")
    # Column -> conversion of the stored value (enums, nested models).
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def to_model(self, row: Any) -> R:
        m = {str(k): v for k, v in (row._mapping if hasattr(row, "_mapping") else row).items()}
        for column, conv in self.convert.items():
            if m[column] is not None:
                m[column] = conv(m[column])
        return trusted(self.model, m)

    def scoped(self, owner_id: str, session_id: str) -> list[sa.ColumnElement[bool]]:
        c = self.table.c
        return [c.owner_id == owner_id, c.session_id == session_id]


def live_session(tx: WriteTx, owner_id: str, session_id: str, *, lock: bool = False) -> Any:
    """The session row, for a write: SessionNotFound, or InvalidState when the
    session is in the trash. ``lock`` serialises writers to this session on
    PostgreSQL (SQLite has one writer anyway)."""
    return session_q.get_live_row(tx.conn, owner_id, session_id, lock=lock)


def check_ids_free(conn: sa.Connection, kind: Kind[Any], ids: Iterable[str | None]) -> None:
    check_free(conn, kind.table, kind.name, ids)


def check_refs(
    conn: sa.Connection,
    owner_id: str,
    session_id: str,
    *,
    message_ids: Iterable[str | None] = (),
    tool_event_ids: Iterable[str | None] = (),
) -> None:
    """Evidence and links may only point at messages and tool events of the
    same session of the same owner: MessageNotFound / ToolEventNotFound."""
    check_linked_messages(conn, owner_id, session_id, {i for i in message_ids if i is not None})
    wanted = {i for i in tool_event_ids if i is not None}
    if not wanted:
        return
    c = tool_events.c
    found = set(
        conn.execute(
            sa.select(c.id).where(
                c.id.in_(list(wanted)), c.owner_id == owner_id, c.session_id == session_id
            )
        ).scalars()
    )
    missing = wanted - found
    if missing:
        raise ToolEventNotFound(sorted(missing)[0])


def insert(
    tx: WriteTx, kind: Kind[R], owner_id: str, session_id: str, rows: Sequence[dict[str, Any]]
) -> list[R]:
    """Insert ``rows`` (their own columns; ids, owner, session and times are
    filled in, except the times a row gives: an import keeps the source's)
    and log each one whole."""
    full = [
        {
            "created_at": tx.now,
            "updated_at": tx.now,
            **r,
            "id": r.get("id") or new_id(),
            "owner_id": owner_id,
            "session_id": session_id,
        }
        for r in rows
    ]
    full = [plain(r) for r in full]
    if full:
        tx.conn.execute(kind.table.insert(), full)
    for r in full:
        tx.log(kind.table.name, r["id"], "insert", row_json(r), owner_id, session_id)
    return [kind.to_model(r) for r in full]


def get_row(conn: sa.Connection, kind: Kind[Any], owner_id: str, session_id: str, key: str) -> Any:
    row = conn.execute(_statements(kind.table).get, _key(owner_id, session_id, key)).first()
    if row is None:
        raise kind.not_found(key)
    return row


def get(conn: sa.Connection, kind: Kind[R], owner_id: str, session_id: str, key: str) -> R:
    return kind.to_model(get_row(conn, kind, owner_id, session_id, key))


def list_rows(
    conn: sa.Connection,
    kind: Kind[R],
    owner_id: str,
    session_id: str,
    *where: sa.ColumnElement[bool],
    limit: int | None = None,
) -> list[R]:
    """The session's rows in the kind's order; SessionNotFound, never an empty
    list, for a session the owner does not have."""
    session_q.get_row(conn, owner_id, session_id)
    t = kind.table
    q = sa.select(t).where(*kind.scoped(owner_id, session_id), *where)
    q = q.order_by(*(t.c[name] for name in kind.order))
    if limit is not None:
        q = q.limit(limit)
    return [kind.to_model(r) for r in conn.execute(q)]


def update(
    tx: WriteTx,
    kind: Kind[R],
    owner_id: str,
    session_id: str,
    key: str,
    values: Mapping[str, Any],
) -> R:
    """Change ``values`` of one row and log the row as it now is."""
    t = kind.table
    params = bound_values(values)
    params.update(_key(owner_id, session_id, key), now=tx.now)
    row = tx.conn.execute(_update_statement(t, tuple(values)), params).first()
    if row is None:
        raise kind.not_found(key)
    tx.log(t.name, key, "update", row_json(row._mapping), owner_id, session_id)
    return kind.to_model(row)


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values from a model dump: enum members as their text."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}


def patch(
    tx: WriteTx,
    kind: Kind[R],
    owner_id: str,
    session_id: str,
    key: str,
    values: Mapping[str, Any],
    *,
    required: Iterable[str] = (),
) -> R:
    """A caller's partial update of one row of a live session: only the given
    fields change, and ``required`` fields cannot be cleared."""
    live_session(tx, owner_id, session_id)
    for name in required:
        if name in values and values[name] is None:
            raise InvalidInput(name, "cannot be cleared")
    if not values:
        return get(tx.conn, kind, owner_id, session_id, key)
    return update(tx, kind, owner_id, session_id, key, plain(values))


def delete(tx: WriteTx, kind: Kind[Any], owner_id: str, session_id: str, key: str) -> None:
    live_session(tx, owner_id, session_id)  # a trashed session is read-only, deletes too
    t = kind.table
    gone = tx.conn.execute(_statements(t).delete, _key(owner_id, session_id, key)).first()
    if gone is None:
        raise kind.not_found(key)
    tx.log(t.name, key, "delete", None, owner_id, session_id)


# The statements of one row by key, built once per table (and, for an
# update, per column list): built per call with the values inlined,
# SQLAlchemy built and keyed each anew, which cost more CPU than the
# database's work on the same row. The caches hold module-level tables only.


def _key(owner_id: str, session_id: str, key: str) -> dict[str, Any]:
    return {"key": key, "owner": owner_id, "sid": session_id}


def _by_key(t: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        t.c.id == sa.bindparam("key"),
        t.c.owner_id == sa.bindparam("owner"),
        t.c.session_id == sa.bindparam("sid"),
    )


@dataclass(frozen=True)
class _Statements:
    get: sa.Select[Any]
    delete: sa.Executable


@functools.lru_cache(maxsize=64)
def _statements(t: sa.Table) -> _Statements:
    return _Statements(
        get=sa.select(t).where(*_by_key(t)),
        delete=t.delete().where(*_by_key(t)).returning(t.c.id),
    )


@functools.lru_cache(maxsize=512)
def _update_statement(t: sa.Table, columns: tuple[str, ...]) -> sa.Update:
    values = bound_set(t, columns)
    values["updated_at"] = sa.bindparam("now", type_=t.c.updated_at.type)
    return t.update().where(*_by_key(t)).values(values).returning(*t.c)

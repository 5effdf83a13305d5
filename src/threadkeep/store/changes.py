"""The change log: written with every operation, read by sync.

Ordering on PostgreSQL. A sequence value taken by one transaction can become
visible after a larger value taken by another, so a reader that followed a
sequence-assigned offset would skip the late one forever. Here writers do not
assign offsets: they insert their rows with ``log_offset`` NULL, and
:func:`assign_offsets` later numbers the committed-but-unnumbered rows, in one
transaction that holds the ``log_state`` row lock. Assigners are therefore
serialised, and each one's numbers are above every number handed out before.
A reader asking for ``log_offset > N`` sees a row only once its assigner has
committed, and by then every smaller number is already visible: nothing is
skipped, nothing is read twice. Writers never wait on this, so concurrent
commits still share WAL flushes.

On SQLite every write goes through one writer at a time (the database write
lock), so the writer numbers rows as it inserts them: commit order is
insertion order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from threadkeep.model.changes import Change, Operation
from threadkeep.store.contract import ChangeRow
from threadkeep.store.tables import changes, log_state


def row_json(row: Any) -> dict[str, Any]:
    """A table row as a JSON-able dict (timestamps as ISO 8601 text)."""
    out: dict[str, Any] = {}
    # str(k): row keys can be SQLAlchemy's quoted_name, a str subclass that
    # orjson will not take as a key.
    for k, v in dict(row).items():
        k = str(k)
        if isinstance(v, datetime):
            out[k] = v.isoformat()
        elif isinstance(v, Decimal):
            out[k] = float(v)
        else:
            out[k] = v
    return out


def change_params(rows: Sequence[ChangeRow], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "table_name": r.table,
            "row_key": r.key,
            "op": r.op,
            "row": r.row,
            "owner_id": r.owner_id,
            "session_id": r.session_id,
            "created_at": now,
        }
        for r in rows
    ]


def pending_in_commit_order(conn: sa.Connection, limit: int | None = None) -> list[int]:
    """The ids of the change rows without an offset, in the order they are to
    be numbered.

    Commit order, where it matters: a transaction that waited for another's
    row lock wrote its change rows (they are written last, after every lock
    is held) after the other committed, so its ids are all larger. Ordering
    transactions by their first id, and rows by id within one, keeps each
    transaction's rows together and every row's changes in commit order."""
    first = sa.func.min(changes.c.id).over(partition_by=changes.c.txid)
    pending = (
        sa.select(changes.c.id, first.label("first"))
        .where(changes.c.log_offset.is_(None))
        .subquery()
    )
    q = sa.select(pending.c.id).order_by(pending.c.first, pending.c.id).limit(limit)
    return [int(i) for i in conn.execute(q).scalars()]


# Any committed change still without an offset? (The partial index
# ix_changes_unsequenced holds exactly those rows.)
_WAITING = sa.select(changes.c.id).where(changes.c.log_offset.is_(None)).limit(1)


def changes_waiting(conn: sa.Connection) -> bool:
    """True if some committed change has no offset yet (PostgreSQL)."""
    return conn.execute(_WAITING).first() is not None


def assign_offsets(conn: sa.Connection, *, lock_always: bool = False) -> int:
    """Number the committed rows that have no offset yet (PostgreSQL). Returns how
    many were numbered. Must run in its own transaction, committed right after.
    With ``lock_always`` the assigners' lock is taken even when nothing waits
    (a sync snapshot needs it held whatever it finds)."""
    if not lock_always and not changes_waiting(conn):
        return 0
    # Take the assigners' lock, then look again: rows that committed while we
    # waited are ours to number too.
    last = conn.execute(
        sa.select(log_state.c.last_offset).where(log_state.c.id == 1).with_for_update()
    ).scalar_one()
    ids = pending_in_commit_order(conn, limit=10_000)
    if not ids:
        return 0
    numbered = sa.values(
        sa.column("id", sa.BigInteger), sa.column("n", sa.BigInteger), name="numbered"
    ).data([(i, last + k) for k, i in enumerate(ids, start=1)])
    conn.execute(
        changes.update().where(changes.c.id == numbered.c.id).values(log_offset=numbered.c.n)
    )
    conn.execute(log_state.update().where(log_state.c.id == 1).values(last_offset=last + len(ids)))
    return len(ids)


def read_changes(
    conn: sa.Connection,
    after: int,
    *,
    limit: int = 1000,
    owner_id: str | None = None,
    session_id: str | None = None,
    tables: Sequence[str] | None = None,
) -> list[Change]:
    """Changes with offset > ``after``, in offset order."""
    tables = list(tables or ())
    q = _changes_query(owner_id is not None, session_id is not None, min(len(tables), 2))
    params: dict[str, Any] = {"after": after, "limit": limit, "tables": tables}
    if owner_id is not None:
        params["owner"] = owner_id
    if session_id is not None:
        params["session"] = session_id
    if len(tables) == 1:
        params["tables"] = tables[0]
    return [
        Change.model_construct(
            offset=r.log_offset,
            txid=r.txid,
            table=r.table_name,
            key=r.row_key,
            op=Operation(r.op),
            row=r.row,
            owner_id=r.owner_id,
            session_id=r.session_id,
            created_at=r.created_at,
        )
        for r in conn.execute(q, params)
    ]


@functools.cache
def _changes_query(by_owner: bool, by_session: bool, tables: int) -> sa.Select[Any]:
    """The statement for one combination of filters (``tables``: none, one,
    or several), built once: every live poll reads one shape's changes, and
    a select built per call costs more in SQLAlchemy (construction, cache
    key) than the indexed read. One table is an equality, not a one-item
    ``IN``: an expanding parameter is rendered again at each execution
    (about 25-50 µs a call here)."""
    q = sa.select(changes).where(
        changes.c.log_offset > sa.bindparam("after", type_=sa.BigInteger())
    )
    if by_owner:
        q = q.where(changes.c.owner_id == sa.bindparam("owner"))
    if by_session:
        q = q.where(changes.c.session_id == sa.bindparam("session"))
    if tables == 1:
        q = q.where(changes.c.table_name == sa.bindparam("tables"))
    elif tables > 1:
        q = q.where(changes.c.table_name.in_(sa.bindparam("tables", expanding=True)))
    return q.order_by(changes.c.log_offset).limit(sa.bindparam("limit", type_=sa.Integer()))


_LAST_OFFSET = sa.select(log_state.c.last_offset).where(log_state.c.id == 1)


def last_offset(conn: sa.Connection) -> int:
    """The newest offset handed out (0 for an empty log)."""
    return int(conn.execute(_LAST_OFFSET).scalar_one())

"""Queries on todos: the whole list replaced at once (as agents' TodoWrite
tools do), and single items added, changed or removed. Each write is one
transaction; every row it inserts, changes or removes is logged, so a sync
client sees exactly the inserts, updates and deletes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from threadkeep.errors import InvalidInput, TodoNotFound
from threadkeep.model.todos import NewTodo, Todo, TodoStatus, TodoUpdate
from threadkeep.store import records
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import todos

TODO = records.Kind(
    todos, Todo, TodoNotFound, "todo", order=("position", "id"), convert={"status": TodoStatus}
)


def _values(item: NewTodo, position: int) -> dict[str, Any]:
    return {
        "position": position,
        "content": item.content,
        "status": item.status.value,
        "active_form": item.active_form,
    }


def replace_todos(
    tx: WriteTx, owner_id: str, session_id: str, items: Sequence[NewTodo]
) -> list[Todo]:
    """Make the session's list exactly ``items``, in that order. Items whose id
    the list holds are updated (only when something changed), the others are
    inserted, and the rows not named any more are deleted."""
    conn = tx.conn
    records.live_session(tx, owner_id, session_id, lock=True)
    named = [i.id for i in items if i.id is not None]
    if len(set(named)) != len(named):
        raise InvalidInput("todos", "the same todo id appears twice in the list")
    scope = TODO.scoped(owner_id, session_id)
    existing = {r.id: r for r in conn.execute(sa.select(todos).where(*scope))}
    records.check_ids_free(conn, TODO, [i for i in named if i not in existing])

    gone = sorted(set(existing) - set(named))
    if gone:
        conn.execute(todos.delete().where(*scope, todos.c.id.in_(gone)))
        for key in gone:
            tx.log("todos", key, "delete", None, owner_id, session_id)
    fresh: list[dict[str, Any]] = []
    for position, item in enumerate(items):
        values = _values(item, position)
        old = existing.get(item.id) if item.id is not None else None
        if old is None:
            fresh.append({**values, "id": item.id})
        elif any(getattr(old, k) != v for k, v in values.items()):
            records.update(tx, TODO, owner_id, session_id, old.id, values)
    records.insert(tx, TODO, owner_id, session_id, fresh)
    return records.list_rows(conn, TODO, owner_id, session_id)


def add_todo(tx: WriteTx, owner_id: str, session_id: str, item: NewTodo) -> Todo:
    """Append one item at the end of the list."""
    records.live_session(tx, owner_id, session_id, lock=True)
    records.check_ids_free(tx.conn, TODO, [item.id])
    last = tx.conn.execute(
        sa.select(sa.func.max(todos.c.position)).where(*TODO.scoped(owner_id, session_id))
    ).scalar_one()
    position = 0 if last is None else int(last) + 1
    row = {**_values(item, position), "id": item.id}
    return records.insert(tx, TODO, owner_id, session_id, [row])[0]


def update_todo(tx: WriteTx, owner_id: str, session_id: str, key: str, change: TodoUpdate) -> Todo:
    values = change.model_dump(exclude_unset=True)
    return records.patch(
        tx, TODO, owner_id, session_id, key, values, required=("content", "status")
    )

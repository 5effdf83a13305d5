"""Todo operations: replace the whole list (as agents' TodoWrite tools do),
or add, change and remove one item. Each is one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed
from threadkeep.model.todos import NewTodo, Todo, TodoUpdate
from threadkeep.service import args
from threadkeep.service.records import RecordOps
from threadkeep.store import todos as todo_q

TodoInput = NewTodo | Mapping[str, Any]


class TodoOps(RecordOps):
    def replace_todos(
        self, actor: Actor, session_id: str, todos: Sequence[TodoInput]
    ) -> Committed[list[Todo]]:
        """Make the session's todo list exactly ``todos``, in order.

        Items carrying the ``id`` of an item of the list update it; the other
        items are added, and items left out are deleted: a sync client sees
        each as an insert, update or delete. An empty list clears it.

        Raises:
            SessionNotFound: no such session for this actor.
            AlreadyExists: a new item's id is taken elsewhere.
            InvalidInput: a malformed item; nothing is written.
        """
        owner, sid = self._scope(actor, session_id)
        todos = args.items("todos", todos)
        if len(todos) > self.limits.max_batch:
            raise InvalidInput("todos", f"at most {self.limits.max_batch} items")
        items = [self._input(NewTodo, t, f"todos[{i}]") for i, t in enumerate(todos)]
        return self._write(owner, sid, lambda tx: todo_q.replace_todos(tx, owner, sid, items))

    def add_todo(self, actor: Actor, session_id: str, todo: TodoInput) -> Committed[Todo]:
        """Add one item at the end of the session's todo list."""
        owner, sid = self._scope(actor, session_id)
        item = self._input(NewTodo, todo, "todo")
        return self._write(owner, sid, lambda tx: todo_q.add_todo(tx, owner, sid, item))

    def update_todo(
        self, actor: Actor, session_id: str, todo_id: str, update: TodoUpdate | Mapping[str, Any]
    ) -> Committed[Todo]:
        """Change one item's content, status or active form."""
        change = self._input(TodoUpdate, update, "update")
        owner, sid = self._scope(actor, session_id)
        key = args.key("todo_id", todo_id)
        return self._write(owner, sid, lambda tx: todo_q.update_todo(tx, owner, sid, key, change))

    def list_todos(self, actor: Actor, session_id: str) -> list[Todo]:
        """The session's todo list, in order."""
        return self._list(todo_q.TODO, actor, session_id, None)

    def get_todo(self, actor: Actor, session_id: str, todo_id: str) -> Todo:
        return self._get(todo_q.TODO, actor, session_id, todo_id)

    def delete_todo(self, actor: Actor, session_id: str, todo_id: str) -> Committed[None]:
        """Remove one item; the others keep their order."""
        return self._delete(todo_q.TODO, actor, session_id, todo_id)

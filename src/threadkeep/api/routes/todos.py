"""The todo list of a session."""

from __future__ import annotations

from fastapi import APIRouter

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import error_responses
from threadkeep.api.record_schemas import (
    Deleted,
    TodoList,
    TodoReplace,
    TodosWritten,
    TodoWritten,
    written,
)
from threadkeep.api.routes._params import RowId, SessionId
from threadkeep.model.todos import NewTodo, Todo, TodoUpdate

router = APIRouter(tags=["todos"])


@router.post(
    "/v1/sessions/{session_id}/todos",
    status_code=201,
    summary="Add a todo",
    responses=error_responses(404, 409, body=True),
)
def add_todo(session_id: SessionId, body: NewTodo, principal: Writer, tk: TK) -> TodoWritten:
    """Add one item at the end of the list."""
    return written(TodoWritten, tk.add_todo(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/todos",
    summary="List todos",
    responses=error_responses(404),
)
def list_todos(session_id: SessionId, principal: Reader, tk: TK) -> TodoList:
    return TodoList(items=tk.list_todos(principal.actor, session_id))


@router.get(
    "/v1/sessions/{session_id}/todos/{todo_id}",
    summary="Get a todo",
    responses=error_responses(404),
)
def get_todo(session_id: SessionId, todo_id: RowId, principal: Reader, tk: TK) -> Todo:
    return tk.get_todo(principal.actor, session_id, todo_id)


@router.patch(
    "/v1/sessions/{session_id}/todos/{todo_id}",
    summary="Update a todo",
    responses=error_responses(404, 409, body=True),
)
def update_todo(
    session_id: SessionId, todo_id: RowId, body: TodoUpdate, principal: Writer, tk: TK
) -> TodoWritten:
    return written(TodoWritten, tk.update_todo(principal.actor, session_id, todo_id, body))


@router.delete(
    "/v1/sessions/{session_id}/todos/{todo_id}",
    summary="Delete a todo",
    responses=error_responses(404, body=True),
)
def delete_todo(session_id: SessionId, todo_id: RowId, principal: Writer, tk: TK) -> Deleted:
    return Deleted(txid=tk.delete_todo(principal.actor, session_id, todo_id).txid)


@router.put(
    "/v1/sessions/{session_id}/todos",
    summary="Replace the todo list",
    responses=error_responses(404, 409, body=True),
)
def replace_todos(
    session_id: SessionId, body: TodoReplace, principal: Writer, tk: TK
) -> TodosWritten:
    """Make the list exactly ``todos``, in order, as agents' todo tools do: items
    with the id of an item of the list update it, others are added, the rest
    are deleted; all in one transaction."""
    done = tk.replace_todos(principal.actor, session_id, body.todos)
    return TodosWritten(items=done.value, txid=done.txid)

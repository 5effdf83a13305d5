"""Repo bindings and file changes of a session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import error_responses
from threadkeep.api.record_schemas import (
    ActiveRepoBinding,
    Deleted,
    FileChangeList,
    FileChangeWritten,
    RepoBindingList,
    RepoBindingWritten,
    Unbound,
    written,
)
from threadkeep.api.routes._params import RowId, SessionId
from threadkeep.model.repos import (
    FileChange,
    FileChangeUpdate,
    NewFileChange,
    NewRepoBinding,
    RepoBinding,
    RepoBindingUpdate,
)

router = APIRouter(tags=["repos"])


@router.post(
    "/v1/sessions/{session_id}/file-changes",
    status_code=201,
    summary="Record a file change",
    responses=error_responses(404, 409, body=True),
)
def record_file_change(
    session_id: SessionId, body: NewFileChange, principal: Writer, tk: TK
) -> FileChangeWritten:
    """A change to one file, linked to the tool event (of this session) that made it."""
    return written(FileChangeWritten, tk.record_file_change(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/file-changes",
    summary="List file changes",
    responses=error_responses(404),
)
def list_file_changes(
    session_id: SessionId,
    principal: Reader,
    tk: TK,
    path: Annotated[str | None, Query(min_length=1, max_length=4096)] = None,
    tool_event_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> FileChangeList:
    return FileChangeList(
        items=tk.list_file_changes(
            principal.actor, session_id, path=path, tool_event_id=tool_event_id
        )
    )


@router.get(
    "/v1/sessions/{session_id}/file-changes/{file_change_id}",
    summary="Get a file change",
    responses=error_responses(404),
)
def get_file_change(
    session_id: SessionId, file_change_id: RowId, principal: Reader, tk: TK
) -> FileChange:
    return tk.get_file_change(principal.actor, session_id, file_change_id)


@router.patch(
    "/v1/sessions/{session_id}/file-changes/{file_change_id}",
    summary="Update a file change",
    responses=error_responses(404, 409, body=True),
)
def update_file_change(
    session_id: SessionId, file_change_id: RowId, body: FileChangeUpdate, principal: Writer, tk: TK
) -> FileChangeWritten:
    return written(
        FileChangeWritten, tk.update_file_change(principal.actor, session_id, file_change_id, body)
    )


@router.delete(
    "/v1/sessions/{session_id}/file-changes/{file_change_id}",
    summary="Delete a file change",
    responses=error_responses(404, body=True),
)
def delete_file_change(
    session_id: SessionId, file_change_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_file_change(principal.actor, session_id, file_change_id).txid)


@router.post(
    "/v1/sessions/{session_id}/repo-bindings",
    status_code=201,
    summary="Bind the session to a repository",
    responses=error_responses(404, 409, body=True),
)
def bind_repo(
    session_id: SessionId, body: NewRepoBinding, principal: Writer, tk: TK
) -> RepoBindingWritten:
    """The new binding becomes the session's active one; the previous active
    binding ends in the same transaction and stays in the history."""
    return written(RepoBindingWritten, tk.bind_repo(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/repo-bindings/active",
    summary="The active repo binding",
    responses=error_responses(404),
)
def get_active_repo_binding(session_id: SessionId, principal: Reader, tk: TK) -> ActiveRepoBinding:
    return ActiveRepoBinding(binding=tk.get_active_repo_binding(principal.actor, session_id))


@router.post(
    "/v1/sessions/{session_id}/repo-bindings/unbind",
    summary="End the active repo binding",
    responses=error_responses(404, 409, body=True),
)
def unbind_repo(session_id: SessionId, principal: Writer, tk: TK) -> Unbound:
    """The binding ends (it stays in the history); ``binding`` is null when
    there was none."""
    done = tk.unbind_repo(principal.actor, session_id)
    return Unbound(binding=done.value, txid=done.txid)


@router.get(
    "/v1/sessions/{session_id}/repo-bindings",
    summary="List repo bindings",
    responses=error_responses(404),
)
def list_repo_bindings(session_id: SessionId, principal: Reader, tk: TK) -> RepoBindingList:
    return RepoBindingList(items=tk.list_repo_bindings(principal.actor, session_id))


@router.get(
    "/v1/sessions/{session_id}/repo-bindings/{repo_binding_id}",
    summary="Get a repo binding",
    responses=error_responses(404),
)
def get_repo_binding(
    session_id: SessionId, repo_binding_id: RowId, principal: Reader, tk: TK
) -> RepoBinding:
    return tk.get_repo_binding(principal.actor, session_id, repo_binding_id)


@router.patch(
    "/v1/sessions/{session_id}/repo-bindings/{repo_binding_id}",
    summary="Update a repo binding",
    responses=error_responses(404, 409, body=True),
)
def update_repo_binding(
    session_id: SessionId,
    repo_binding_id: RowId,
    body: RepoBindingUpdate,
    principal: Writer,
    tk: TK,
) -> RepoBindingWritten:
    return written(
        RepoBindingWritten,
        tk.update_repo_binding(principal.actor, session_id, repo_binding_id, body),
    )


@router.delete(
    "/v1/sessions/{session_id}/repo-bindings/{repo_binding_id}",
    summary="Delete a repo binding",
    responses=error_responses(404, body=True),
)
def delete_repo_binding(
    session_id: SessionId, repo_binding_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_repo_binding(principal.actor, session_id, repo_binding_id).txid)

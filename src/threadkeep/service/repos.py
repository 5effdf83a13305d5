"""Repo-binding and file-change operations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed
from threadkeep.model.repos import (
    FileChange,
    FileChangeUpdate,
    NewFileChange,
    NewRepoBinding,
    RepoBinding,
    RepoBindingUpdate,
)
from threadkeep.model.text import check_text
from threadkeep.service import args
from threadkeep.service.records import RecordOps
from threadkeep.store import repos as repo_q


class RepoOps(RecordOps):
    # --- repo bindings -------------------------------------------------------------

    def bind_repo(
        self, actor: Actor, session_id: str, binding: NewRepoBinding | Mapping[str, Any]
    ) -> Committed[RepoBinding]:
        """Bind the session to a repository (path and/or remote URL, branch, commit).

        A session has at most one active binding: the active one, if any, ends
        in the same transaction and stays in the history.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewRepoBinding, binding, "binding")
        return self._write(owner, sid, lambda tx: repo_q.bind_repo(tx, owner, sid, new))

    def unbind_repo(self, actor: Actor, session_id: str) -> Committed[RepoBinding | None]:
        """End the active binding (it stays in the history); None if there was none."""
        owner, sid = self._scope(actor, session_id)
        return self._write(owner, sid, lambda tx: repo_q.unbind_repo(tx, owner, sid))

    def get_active_repo_binding(self, actor: Actor, session_id: str) -> RepoBinding | None:
        """The repository the session is bound to now, or None."""
        owner, sid = self._scope(actor, session_id)
        return self.engine.read(lambda c: repo_q.active_binding(c, owner, sid))

    def get_repo_binding(self, actor: Actor, session_id: str, binding_id: str) -> RepoBinding:
        return self._get(repo_q.REPO_BINDING, actor, session_id, binding_id)

    def list_repo_bindings(self, actor: Actor, session_id: str) -> list[RepoBinding]:
        """Every binding the session had, oldest first (the last may be active)."""
        return self._list(repo_q.REPO_BINDING, actor, session_id, None)

    def update_repo_binding(
        self,
        actor: Actor,
        session_id: str,
        binding_id: str,
        update: RepoBindingUpdate | Mapping[str, Any],
    ) -> Committed[RepoBinding]:
        """Record that the binding moved along (a new branch or commit)."""
        change = self._input(RepoBindingUpdate, update, "update")
        return self._patch(repo_q.REPO_BINDING, actor, session_id, binding_id, change)

    def delete_repo_binding(
        self, actor: Actor, session_id: str, binding_id: str
    ) -> Committed[None]:
        """Remove a binding from the history (the active one too)."""
        return self._delete(repo_q.REPO_BINDING, actor, session_id, binding_id)

    # --- file changes --------------------------------------------------------------

    def record_file_change(
        self, actor: Actor, session_id: str, change: NewFileChange | Mapping[str, Any]
    ) -> Committed[FileChange]:
        """Record a change to a file (path, kind, diff), linked to its tool event.

        Raises:
            ToolEventNotFound: the linked tool event is not in this session.
            TooLarge: the diff is over max_message_bytes.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewFileChange, change, "file_change")
        self._text_limit("file_change.diff", new.diff)
        return self._write(owner, sid, lambda tx: repo_q.record_file_change(tx, owner, sid, new))

    def update_file_change(
        self,
        actor: Actor,
        session_id: str,
        file_change_id: str,
        update: FileChangeUpdate | Mapping[str, Any],
    ) -> Committed[FileChange]:
        change = self._input(FileChangeUpdate, update, "update")
        self._text_limit("update.diff", change.diff)
        return self._patch(repo_q.FILE_CHANGE, actor, session_id, file_change_id, change)

    def get_file_change(self, actor: Actor, session_id: str, file_change_id: str) -> FileChange:
        return self._get(repo_q.FILE_CHANGE, actor, session_id, file_change_id)

    def list_file_changes(
        self,
        actor: Actor,
        session_id: str,
        *,
        path: str | None = None,
        tool_event_id: str | None = None,
    ) -> list[FileChange]:
        """The session's file changes, oldest first; of one ``path`` or tool event."""
        if path is not None:
            if not isinstance(path, str):
                raise InvalidInput("path", "must be a string")
            check_text("path", path)
        tool_event_id = args.optional_key("tool_event_id", tool_event_id)
        return self._list(
            repo_q.FILE_CHANGE, actor, session_id, None, path=path, tool_event_id=tool_event_id
        )

    def delete_file_change(
        self, actor: Actor, session_id: str, file_change_id: str
    ) -> Committed[None]:
        return self._delete(repo_q.FILE_CHANGE, actor, session_id, file_change_id)

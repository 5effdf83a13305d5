"""A user's data, whole: what an export archive holds and what an erasure did."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict


class Progress(Protocol):
    """Called as work advances: (what: a table, ``blobs`` or ``changes``; how
    many rows or blobs were just done)."""

    def __call__(self, what: str, n: int, /) -> None: ...


#: The ``format`` named in every archive's manifest.json.
ARCHIVE_FORMAT = "threadkeep-user-export"
ARCHIVE_VERSION = 1


class ArchiveFile(BaseModel):
    """One file of an export archive, as its manifest describes it."""

    model_config = ConfigDict(frozen=True)

    rows: int | None = None  # JSONL files: how many lines (rows)
    bytes: int
    sha256: str


class UserExport(BaseModel):
    """What :meth:`Threadkeep.export_user` wrote."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    path: str
    #: Rows per table, as in the manifest.
    counts: dict[str, int]
    #: Every file of the archive but the manifest, by name.
    files: dict[str, ArchiveFile]
    #: Blobs the uploads name that the blob store did not have.
    missing_blobs: list[str]
    #: Size of the archive file.
    archive_bytes: int


class UserErasure(BaseModel):
    """What :meth:`Threadkeep.erase_user` deleted."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    #: Rows deleted per table (sessions and everything in them, tokens, the user).
    rows: dict[str, int]
    #: Blobs deleted: only this user's uploads used them.
    blobs_deleted: list[str]
    #: Blobs kept because another user's upload holds the same bytes.
    blobs_kept: list[str]
    #: Change-log rows deleted because they carried this user's data.
    changes_scrubbed: int

"""The threadkeep error hierarchy.

Every error a caller can act on is a subclass of :class:`ThreadkeepError`, named
after what went wrong and carrying fields, not only text. Nothing here knows
about HTTP: the API layer maps these classes to status codes in one place, the
CLI maps them to exit codes in another.
"""

from __future__ import annotations


class ThreadkeepError(Exception):
    """Root of every error threadkeep raises on purpose."""


# --- input -------------------------------------------------------------------


class InvalidInput(ThreadkeepError):
    """The caller sent something threadkeep will not store. Nothing was written."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidText(InvalidInput):
    """Text holds a NUL byte or a lone surrogate, which no engine stores faithfully."""


class TooLarge(InvalidInput):
    """A value is over a configured size limit."""

    def __init__(self, field: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(field, f"is {size} bytes, over the limit of {limit} bytes")


class ChecksumMismatch(InvalidInput):
    """The bytes received do not have the sha256 the caller said they would.
    Nothing was stored."""

    def __init__(self, field: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            field,
            f"the bytes received have sha256 {actual}, not the expected {expected}; "
            "nothing was stored (send the upload again)",
        )


# --- lookups -----------------------------------------------------------------


class NotFound(ThreadkeepError):
    """No such row for this actor. A row owned by someone else is reported exactly
    like a missing one, so ids cannot be probed."""

    kind = "row"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"{self.kind} {key!r} not found")


class UserNotFound(NotFound):
    kind = "user"


class SessionNotFound(NotFound):
    kind = "session"


class MessageNotFound(NotFound):
    kind = "message"


class ToolEventNotFound(NotFound):
    kind = "tool event"


# The session record (revision 0003).


class TodoNotFound(NotFound):
    kind = "todo"


class MisalignmentNotFound(NotFound):
    kind = "misalignment"


class HookDecisionNotFound(NotFound):
    kind = "hook decision"


class RepoBindingNotFound(NotFound):
    kind = "repo binding"


class SnapshotNotFound(NotFound):
    kind = "snapshot"


class CheckpointNotFound(NotFound):
    kind = "checkpoint"


class SummaryNotFound(NotFound):
    """No summary for this session (the key is the session id)."""

    kind = "summary of session"


class RecordingNotFound(NotFound):
    kind = "recording"


class FileChangeNotFound(NotFound):
    kind = "file change"


class AnalyticsEventNotFound(NotFound):
    kind = "analytics event"


class UploadNotFound(NotFound):
    kind = "upload"


# --- conflicts ---------------------------------------------------------------


class Conflict(ThreadkeepError):
    """The write clashes with the current state. Nothing was written."""


class VersionConflict(Conflict):
    """Optimistic concurrency: the caller's version is not the stored one."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{key!r} is at version {actual}, not {expected}: reload it and apply the change again"
        )


class AlreadyExists(Conflict):
    """A client-chosen id is taken."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} id {key!r} is already taken; choose another id")


class HasBranches(Conflict):
    """Purging would destroy history that branches still share."""

    def __init__(self, key: str, branches: int) -> None:
        self.key = key
        self.branches = branches
        super().__init__(
            f"session {key!r} has {branches} branch(es) that share its history; "
            "purge the branches first"
        )


class InvalidState(Conflict):
    """The operation does not apply to the row in its current state
    (e.g. appending to a session in the trash)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key!r}: {reason}")


# --- the store itself ----------------------------------------------------------


class StoreError(ThreadkeepError):
    """The database could not do what was asked (not the caller's fault)."""


class CommitInDoubt(StoreError):
    """The write was interrupted while it committed: the connection to
    PostgreSQL was lost, or SQLite's commit met an I/O error (a failed
    ``fsync`` can leave the commit in the write-ahead log, to be replayed
    when the database next opens). The database may or may not have applied
    it, and threadkeep cannot tell. It is not retried (a retry could apply it
    twice); read back before writing again, or give appends a ``client_id``
    so that a retry is safe."""

    def __init__(self, cause: str | None = None) -> None:
        what = (
            "the connection to the database was lost"
            if cause is None
            else f"the commit met an error ({cause})"
        )
        super().__init__(
            f"{what} while the write was committing; "
            "it may or may not have been applied (read back before writing it again)"
        )


class StorageFull(StoreError):
    """The disk that holds the database, or the upload bytes, is full
    (SQLite's ``SQLITE_FULL``, PostgreSQL's ``disk_full``, ``ENOSPC``). The
    write was rolled back: nothing of it was stored, and everything
    acknowledged before it stays. Writes succeed again once space is freed;
    reads go on meanwhile."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the disk is full ({detail}); nothing was written: free space on it, then retry"
        )


class SchemaTooNew(StoreError):
    """The database was migrated by a newer threadkeep than this one."""

    def __init__(self, database_revision: str, code_revision: str) -> None:
        self.database_revision = database_revision
        self.code_revision = code_revision
        super().__init__(
            f"the database schema is at revision {database_revision!r}, newer than this "
            f"threadkeep knows (its newest is {code_revision!r}); upgrade threadkeep, or "
            "restore a backup taken before the upgrade (see docs/rollback.md)"
        )


class StoreBusy(StoreError):
    """Every database connection this process may open stayed in use for the
    pool's whole timeout. Nothing was done; retry, or raise ``pool.size`` /
    ``pool.max_overflow`` if the database allows it (docs/postgresql.md)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"every database connection stayed in use ({detail}); nothing was done: retry, "
            "or allow more connections with pool.size / pool.max_overflow"
        )


class SchemaInUse(StoreError):
    """Another application's tables are where threadkeep's would go. Nothing
    was written; give threadkeep a schema (or a database) of its own."""

    def __init__(self, where: str, why: str, *, sqlite: bool = False) -> None:
        self.where = where
        way_out = (
            "give it a database file of its own"
            if sqlite
            else "give it a schema of its own by adding ?schema=threadkeep to the "
            "PostgreSQL URL, or a database of its own (docs/postgresql.md)"
        )
        super().__init__(
            f"{where} is another application's: {why}. threadkeep keeps its own tables "
            f"and its own alembic_version, so nothing was written; {way_out}"
        )


class BlobMissing(StoreError):
    """An upload's bytes are not in the blob store (deleted behind threadkeep's back,
    or a blob store other than the one that stored them is configured)."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(
            f"blob {sha256} is not in the blob store; check the blob store settings "
            "(docs/blobs.md) or restore the blob store from a backup"
        )


class BlobGone(Conflict):
    """An upload's bytes were deleted between storing them and writing its row
    (an erasure of another user with the same file). Nothing was written;
    sending the bytes again stores them anew."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(
            f"the bytes of blob {sha256} were deleted while they were being stored "
            "(another user with the same file was erased); nothing was written: send "
            "them again"
        )


class StoreClosed(StoreError):
    """The store was closed; open a new one."""

    def __init__(self) -> None:
        super().__init__("the store is closed")


# --- backup and restore ----------------------------------------------------------


class BackupError(ThreadkeepError):
    """A backup or a restore could not be done; nothing was restored. The
    message says what to do."""


class BackupToolMissing(BackupError):
    """A program the backup needs (``pg_dump``, ``pg_restore``) is not installed."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        super().__init__(
            f"{tool} is not installed (or not on PATH): install the PostgreSQL client "
            f"tools of the server's major version or newer (Debian/Ubuntu: `apt-get install "
            f"postgresql-client`; macOS: `brew install libpq`), then run the command again"
        )


class RestoreTargetNotEmpty(BackupError):
    """The restore target already holds data; ``--force`` overwrites it."""

    def __init__(self, target: str, holds: str) -> None:
        self.target = target
        self.holds = holds
        super().__init__(
            f"{target} is not empty ({holds}); restore into an empty database, or pass "
            "--force to overwrite it (take a backup of it first)"
        )


class BackupCorrupt(BackupError):
    """The backup does not match its manifest (or has none)."""


class CopyError(ThreadkeepError):
    """A copy of a store into another database could not be done; the target
    holds none of its rows. The message says what to do."""


class CopyTargetNotEmpty(CopyError):
    """The copy's target already holds data: a copy never mixes two stores."""

    def __init__(self, target: str, holds: str) -> None:
        self.target = target
        self.holds = holds
        super().__init__(
            f"{target} is not empty ({holds}); copy into a new, empty database "
            "(for PostgreSQL: createdb)"
        )

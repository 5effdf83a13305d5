"""The blob store contract: content-addressed bytes, keyed by their sha256.

Three implementations: a directory on disk (``filesystem.py``, the default for
SQLite), the PostgreSQL database itself (``postgres.py``) and S3-compatible
object storage (``s3.py``). Bytes always move as streams: ``put`` takes an
iterable of chunks (or a binary file object) and ``open`` yields chunks, so a
200 MB upload never sits in memory whole.

The rules every backend keeps:

* ``put`` hashes while it writes and makes the blob visible only once it is
  durable and its sha256 known (and equal to ``expected_sha256`` when given);
  an aborted, oversized or mismatched put leaves no blob behind.
* Identical bytes are stored once. Storing bytes that are already there
  *touches* the blob (refreshes its age), which is what makes garbage
  collection safe against a concurrent upload of the same bytes.
* ``collect`` deletes only blobs that are unreferenced *and* were last
  stored or touched before the cutoff, re-checking the age at the moment of
  deletion; an upload writes its bytes (touching them) before its row, and
  takes far less than the grace period between the two.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from threadkeep.errors import ChecksumMismatch, InvalidInput, TooLarge

#: Bytes per chunk when reading out and when a backend regroups chunks.
CHUNK = 1024 * 1024
SHA256 = re.compile(r"[0-9a-f]{64}")

Source = Iterable[bytes] | IO[bytes]
Referenced = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its key, its size, and whether this put created it."""

    sha256: str
    size: int
    created: bool


def check_sha256(field: str, value: Any) -> str:
    """A sha256 as 64 lowercase hex digits (upper case is accepted and folded)."""
    if not isinstance(value, str) or not SHA256.fullmatch(value.lower()):
        raise InvalidInput(field, "must be a sha256 as 64 hexadecimal digits")
    return value.lower()


def check_source(source: Any) -> None:
    """Refuse what is neither a binary file object nor an iterable of chunks (a
    bare bytes object iterates as ints: say what to pass instead)."""
    if callable(getattr(source, "read", None)):
        return
    if isinstance(source, bytes | bytearray | memoryview | str) or not isinstance(source, Iterable):
        raise InvalidInput(
            "data",
            f"pass an iterable of bytes chunks or a binary file object, not "
            f"{type(source).__name__}",
        )


def chunks_of(source: Source) -> Iterator[bytes]:
    """The chunks of ``source``: an iterable of bytes, or a binary file object."""
    check_source(source)
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            chunk = read(CHUNK)
            if not chunk:
                return
            yield bytes(chunk)
        return
    for chunk in source:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InvalidInput("data", f"chunks must be bytes, not {type(chunk).__name__}")
        if chunk:
            yield bytes(chunk)


class Hashing:
    """Wraps a chunk stream: hashes and counts as it is read, refuses more than
    ``max_bytes`` (TooLarge, raised as soon as the limit is passed) and, at the
    end, a digest other than ``expected`` (ChecksumMismatch).

    Iterating it to the end is the verification: a backend makes a blob
    visible only after the iteration finished without raising.
    """

    def __init__(self, source: Source, max_bytes: int, expected: str | None = None) -> None:
        self._source = chunks_of(source)
        self.max_bytes = max_bytes
        self.expected = expected
        self.size = 0
        self._hash = hashlib.sha256()
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._source:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise TooLarge("data", self.size, self.max_bytes)
            self._hash.update(chunk)
            yield chunk
        digest = self._hash.hexdigest()
        if self.expected is not None and digest != self.expected:
            raise ChecksumMismatch("sha256", self.expected, digest)
        self.sha256 = digest

    def regrouped(self, size: int) -> Iterator[bytes]:
        """The same stream in chunks of exactly ``size`` bytes (the last one shorter)."""
        buf = bytearray()
        for chunk in self:
            buf += chunk
            while len(buf) >= size:
                yield bytes(buf[:size])
                del buf[:size]
        if buf:
            yield bytes(buf)


class BlobStore(abc.ABC):
    """Content-addressed bytes. Thread-safe; one instance per process."""

    #: The name used in the settings (``fs``, ``postgres``, ``s3``).
    name: str

    def in_transaction(self, conn: Any) -> BlobStore:
        """This store, for calls made inside the caller's open database
        transaction ``conn`` (one that holds a blob's lock, say). A store
        outside the database is itself. One inside it answers on ``conn``:
        otherwise the transaction would wait for a second connection while
        holding its first, and when every connection of the pool (or of a
        transaction pooler, whose server connections are few) is held that
        way, none comes free."""
        return self

    @abc.abstractmethod
    def put(
        self, source: Source, *, max_bytes: int, expected_sha256: str | None = None
    ) -> BlobInfo:
        """Store the bytes of ``source`` durably; return their sha256 and size.

        Raises:
            TooLarge: more than ``max_bytes`` arrived (nothing is stored).
            ChecksumMismatch: the digest is not ``expected_sha256`` (nothing stored).
        """

    @abc.abstractmethod
    def open(self, sha256: str) -> Iterator[bytes]:
        """The blob's bytes, in chunks. Raises BlobMissing at once (not at the
        first chunk) when there is no such blob."""

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""

    @abc.abstractmethod
    def touch(self, sha256: str) -> int | None:
        """Refresh the blob's age, as storing its bytes again would, without
        sending them; return its size, or None when it is not stored.

        For a row about to name bytes that are already stored (an import of
        an upload row): garbage collection and erasure then spare them as
        they spare an upload in flight, at the cost of one small request
        instead of a copy of the bytes."""

    @abc.abstractmethod
    def list_blobs(self) -> Iterator[tuple[str, datetime]]:
        """Every stored blob: (sha256, when it was last stored or touched)."""

    @abc.abstractmethod
    def collect(self, referenced: Referenced, cutoff: datetime) -> list[str]:
        """Delete every blob that ``referenced`` says is unused and that was last
        stored before ``cutoff``; also sweep leftovers of interrupted puts older
        than ``cutoff``. Returns the sha256 of the blobs deleted."""

    @abc.abstractmethod
    def discard(self, sha256: str, referenced: Referenced, cutoff: datetime) -> bool:
        """Delete this one blob if ``referenced`` says it is unused and it was last
        stored before ``cutoff``, with the same re-checks as :meth:`collect`.
        Returns whether it was deleted (False too when there is no such blob).
        Sweeps nothing else: erasing a user (service/userdata.py) deletes that
        user's blobs without touching other uploads in flight."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release what the store holds. Idempotent."""

"""Blobs as files in a directory: ``<root>/ab/cd/abcd...`` (two fan-out levels,
so no directory holds more than a few thousand files at any realistic size).

A put writes into ``<root>/tmp/`` (the same filesystem as the blobs, so the
final rename is atomic), fsyncs the file, checks the sha256, renames the file
into place and fsyncs the directory: a blob file that exists is whole and
durable. A crash leaves at most a temp file, swept by ``collect``.

A blob's age is its file's mtime; storing bytes that are already there sets
it to now (``os.utime``). ``collect`` first renames a candidate out of the way
(atomic), then re-checks its mtime and its references, and renames it back
if either says keep: a put that touched the file before the rename is seen,
and one that comes after it finds no file and writes its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from threadkeep.blobs.contract import (
    CHUNK,
    SHA256,
    BlobInfo,
    BlobStore,
    Hashing,
    Referenced,
    Source,
)
from threadkeep.errors import BlobMissing, StorageFull

# A full disk, or the user's quota on it.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemBlobStore(BlobStore):
    name = "fs"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(
        self, source: Source, *, max_bytes: int, expected_sha256: str | None = None
    ) -> BlobInfo:
        hashing = Hashing(source, max_bytes, expected_sha256)
        temp = self.tmp / f"put-{uuid.uuid4().hex}"
        try:
            with open(temp, "xb") as f:
                for chunk in hashing:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            assert hashing.sha256 is not None
            final = self.path(hashing.sha256)
            try:
                os.utime(final)  # already stored: refresh its age, keep one copy
                created = False
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, final)
                _fsync_dir(final.parent)
                created = True
        except OSError as exc:
            if exc.errno in _FULL:
                raise StorageFull(f"{self.root}: {exc.strerror}") from exc
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return BlobInfo(hashing.sha256, hashing.size, created)

    def open(self, sha256: str) -> Iterator[bytes]:
        try:
            f = open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        return self._read(f)

    @staticmethod
    def _read(f: IO[bytes]) -> Iterator[bytes]:
        with f:
            while chunk := f.read(CHUNK):
                yield chunk

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def touch(self, sha256: str) -> int | None:
        # A collect that renamed the file aside before this re-checks its
        # mtime and finds it old: the bytes are going, and None says so.
        path = self.path(sha256)
        try:
            os.utime(path)
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def list_blobs(self) -> Iterator[tuple[str, datetime]]:
        for first in sorted(self.root.iterdir()):
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for f in sorted(second.iterdir()):
                    if SHA256.fullmatch(f.name):
                        with contextlib.suppress(FileNotFoundError):
                            yield f.name, _mtime(f)

    def collect(self, referenced: Referenced, cutoff: datetime) -> list[str]:
        deleted = []
        for sha256, touched in list(self.list_blobs()):
            if touched >= cutoff or referenced(sha256):
                continue
            if self._delete_unused(sha256, referenced, cutoff):
                deleted.append(sha256)
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if leftover.name.startswith("put-") and _mtime(leftover) < cutoff:
                    leftover.unlink()
        return deleted

    def discard(self, sha256: str, referenced: Referenced, cutoff: datetime) -> bool:
        try:
            touched = _mtime(self.path(sha256))
        except FileNotFoundError:
            return False
        if touched >= cutoff or referenced(sha256):
            return False
        return self._delete_unused(sha256, referenced, cutoff)

    def _delete_unused(self, sha256: str, referenced: Referenced, cutoff: datetime) -> bool:
        final = self.path(sha256)
        aside = self.tmp / f"gc-{sha256}-{uuid.uuid4().hex}"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            return False
        if _mtime(aside) >= cutoff or referenced(sha256):
            os.replace(aside, final)  # touched meanwhile: put it back
            return False
        aside.unlink()
        return True

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({str(self.root)!r})"


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)

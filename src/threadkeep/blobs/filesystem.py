"""Blobs as files in a directory: ``<root>/ab/cd/abcd...`` (two fan-out levels,
so no directory holds more than a few thousand files at any realistic size).

A put writes into ``<root>/tmp/`` (the same filesystem as the blobs, so the
final rename is atomic), fsyncs the file, checks the sha256, renames the file
into place and fsyncs the directory, and each fan-out directory it makes is
fsynced into its parent (threadkeep/own_files.py): a blob file that
exists is whole, and its name survives a power cut. A crash leaves at most a
temp file, swept by ``collect``.

A blob's age is its file's mtime; storing bytes that are already there sets
it to now (``os.utime``). ``collect`` first renames a candidate out of the way
(atomic), then re-checks its mtime and its references, and renames it back
if either says keep: a put that touched the file before the rename is seen,
and one that comes after it finds no file and writes its own.

A process killed while a blob is set aside would lose it: the aside name
(``tmp/gc-<sha256>-...``) is a name nothing reads. So opening the store and
every ``collect`` put such files back first, and the next ``collect``
decides again. A collector in another process whose file is put back that
way finds it gone, and decides again.
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
from threadkeep.own_files import PRIVATE_DIR, fsync_path, make_dirs, open_new, replace

# The name a collector gives a blob while it decides (``tmp/gc-<sha256>-<uuid>``),
# and how often it decides again when another process puts the blob back.
_ASIDE = "gc-"
_ATTEMPTS = 3

# A full disk, or the user's quota on it.
_FULL = (errno.ENOSPC, errno.EDQUOT)


class FilesystemBlobStore(BlobStore):
    name = "fs"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.tmp = self.root / "tmp"
        make_dirs(self.root)
        self.tmp.mkdir(mode=PRIVATE_DIR, exist_ok=True)  # nothing in it is kept as it is
        self._restore_set_aside()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(
        self, source: Source, *, max_bytes: int, expected_sha256: str | None = None
    ) -> BlobInfo:
        hashing = Hashing(source, max_bytes, expected_sha256)
        temp = self.tmp / f"put-{uuid.uuid4().hex}"
        try:
            with open_new(temp) as f:
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
                make_dirs(final.parent)
                replace(temp, final)
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
        self._restore_set_aside()
        deleted = []
        changed: set[Path] = set()
        for sha256, touched in list(self.list_blobs()):
            if touched >= cutoff or referenced(sha256):
                continue
            if self._delete_unused(sha256, referenced, cutoff, changed):
                deleted.append(sha256)
        for directory in sorted(changed):  # once per directory, not per blob
            fsync_path(directory)
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
        changed: set[Path] = set()
        deleted = self._delete_unused(sha256, referenced, cutoff, changed)
        for directory in sorted(changed):
            fsync_path(directory)
        return deleted

    def _delete_unused(
        self, sha256: str, referenced: Referenced, cutoff: datetime, changed: set[Path]
    ) -> bool:
        """Delete one blob if it is still unused. The directories whose
        entries it removed go into ``changed``: the caller fsyncs them, so
        that a deleted blob (an erased user's, say) does not come back
        after a power cut."""
        final = self.path(sha256)
        for _ in range(_ATTEMPTS):
            aside = self.tmp / f"{_ASIDE}{sha256}-{uuid.uuid4().hex}"
            try:
                os.rename(final, aside)
            except FileNotFoundError:
                return False
            try:
                if _mtime(aside) >= cutoff or referenced(sha256):
                    self._put_back(aside, final)  # touched meanwhile
                    return False
                aside.unlink()
            except FileNotFoundError:
                # Another process opening the store put it back meanwhile
                # (_restore_set_aside): decide again, as an erasure must.
                continue
            changed.update((final.parent, aside.parent))
            return True
        return False

    def _put_back(self, aside: Path, final: Path) -> None:
        os.replace(aside, final)
        # Both names are durable: the blob's, and the aside one's removal
        # (or after a power cut the next open would find it twice).
        fsync_path(final.parent)
        fsync_path(aside.parent)

    def _restore_set_aside(self) -> None:
        """Put back every blob a collector set aside and did not decide on
        (it was killed, or the machine lost power): deleting a blob is only
        ever done by a collector that has just checked it."""
        for leftover in self.tmp.glob(f"{_ASIDE}*"):
            sha256 = leftover.name[len(_ASIDE) :].split("-", 1)[0]
            if not SHA256.fullmatch(sha256):
                continue
            final = self.path(sha256)
            try:
                if final.exists():
                    leftover.unlink()  # stored again since: the same bytes
                else:
                    make_dirs(final.parent)
                    self._put_back(leftover, final)
            except FileNotFoundError:
                continue  # its collector decided meanwhile

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({str(self.root)!r})"


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)

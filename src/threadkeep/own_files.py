"""The files and directories threadkeep makes: durable, and private.

Durable. ``fsync`` of a file makes its bytes durable, but its name lives in
the directory: a file created or renamed, or a directory made, can vanish in
a power cut until the directory holding the new entry is itself fsynced.
ext4 in its default mode commits directory changes in order and hides most
of this; POSIX, XFS, btrfs and network filesystems do not promise it. So
where threadkeep tells a caller a file is kept (a blob, a backup, an export
taken before an erasure), the directories that name it are fsynced first.
``tests/guarantees/test_file_durability.py`` records every entry made and
every fsync, and checks the order.

Private. What threadkeep writes is people's conversations and uploads. A
directory it makes is ``0700`` and a file ``0600``, whatever the umask, as
PostgreSQL does with its data directory and the XDG spec asks of data
directories: on a shared machine, other accounts cannot read them. A
directory or file that already exists keeps the mode its owner gave it
(``threadkeep doctor`` warns when a database file is readable by others).
SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Make durable what ``path`` holds: a directory's entries (files made,
    renamed, removed), or the bytes of a file another program wrote."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike[str]) -> None:
    """``mkdir -p`` whose new directories are private and survive: each level
    it makes is ``0700`` and fsynced into its parent. Levels that exist are
    left alone."""
    path = Path(path)
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            if not level.is_dir():
                raise
            # Another writer made it at the same moment: it syncs its own.
            continue
        fsync_path(level.parent)


def create_private(path: str | os.PathLike[str]) -> bool:
    """Make ``path`` an empty ``0600`` file if it does not exist, durably,
    so that what opens it next (SQLite, pg_dump) writes into a private file.
    False if it existed (its mode is left as it is)."""
    try:
        os.close(os.open(path, _NEW, PRIVATE_FILE))
    except FileExistsError:
        return False
    fsync_path(Path(path).parent)
    return True


def open_new(path: str | os.PathLike[str], mode: str = "wb", **open_args: Any) -> IO[Any]:
    """Open a new private file for writing; FileExistsError if it exists."""
    fd = os.open(path, _NEW, PRIVATE_FILE)
    try:
        return os.fdopen(fd, mode, **open_args)
    except BaseException:
        os.close(fd)
        raise


def replace(temp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename ``temp`` over ``final`` and make the new name durable. (The
    caller has fsynced ``temp``'s bytes.)"""
    os.replace(temp, final)
    fsync_path(Path(final).parent)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], mode: str = "wb", **open_args: Any
) -> Iterator[IO[Any]]:
    """Write the private file ``path`` whole or not at all: into a hidden
    file beside it, fsynced and renamed into place when the block ends. If
    the block raises, ``path`` is untouched (an earlier file of that name
    stays) and the partial file is removed."""
    final = Path(path)
    temp = final.with_name(f".{final.name}.partial")
    temp.unlink(missing_ok=True)  # left by a crash, with whatever mode it had
    try:
        with open_new(temp, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise

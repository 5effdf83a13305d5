"""Files whose names, not just their bytes, survive a power cut.

``fsync`` of a file makes its bytes durable, but its name lives in the
directory: a file created or renamed, or a directory made, can vanish in a
power cut until the directory holding the new entry is itself fsynced.
ext4 in its default mode commits directory changes in order and hides most
of this; POSIX, XFS, btrfs and network filesystems do not promise it. So
where threadkeep tells a caller a file is kept (a blob, a backup, an export
taken before an erasure), the directories that name it are fsynced first.
``tests/guarantees/test_file_durability.py`` records every entry made and
every fsync, and checks the order.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` (files made, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Make the bytes of a file another program wrote (pg_dump) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike[str]) -> None:
    """``mkdir -p`` whose new directories survive: each level it makes is
    fsynced into its parent. Levels that exist are left alone."""
    path = Path(path)
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for level in reversed(missing):
        try:
            level.mkdir()
        except FileExistsError:
            if not level.is_dir():
                raise
            # Another writer made it at the same moment: it syncs its own.
            continue
        fsync_dir(level.parent)


def replace(temp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename ``temp`` over ``final`` and make the new name durable. (The
    caller has fsynced ``temp``'s bytes.)"""
    os.replace(temp, final)
    fsync_dir(Path(final).parent)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], mode: str = "wb", **open_args: Any
) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all: into a hidden file beside it,
    fsynced and renamed into place when the block ends. If the block raises,
    ``path`` is untouched (an earlier file of that name stays) and the
    partial file is removed."""
    final = Path(path)
    temp = final.with_name(f".{final.name}.partial")
    try:
        with open(temp, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise

"""Copy a whole store into a new database: ``threadkeep copy`` (docs/postgresql.md).

What it is for: moving off the embedded SQLite file onto PostgreSQL when one
machine is no longer enough (or back, or to a new server of the same kind)
without losing a row. A backup cannot do that: it restores only into the
engine it was taken from.

The order keeps every promise a backup keeps:

1. the target must be empty (a copy never merges two stores);
2. the source is read in one snapshot, so the copy is the store at one
   moment even while a server writes to it;
3. the bytes of every upload the snapshot names go into the target's blob
   store first: a row without its bytes would be a loss, bytes without a row
   are only an orphan that ``threadkeep cleanup`` removes;
4. every row is written in one transaction, which is read back and compared
   with the source, table by table, *before* it commits: a copy is there
   whole and proven, or not at all;
5. the target's sync epoch moves past the source's, so a client that synced
   against the old database refetches rather than trusting old offsets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from threadkeep.config import Settings
from threadkeep.errors import BlobMissing, CopyError, CopyTargetNotEmpty, StoreError
from threadkeep.library import Threadkeep
from threadkeep.store import backup as backup_q
from threadkeep.store import copy as copy_q
from threadkeep.store import pg_url, shown_url

#: (phase, done, total). Phases: ``blobs`` (bytes), ``rows``, ``compare`` (tables).
Progress = Callable[[str, int, int], None]


def _quiet(phase: str, done: int, total: int) -> None:
    pass


@dataclass
class CopyResult:
    """What a copy moved."""

    target: str
    counts: dict[str, int]
    blobs_copied: int
    # Uploads whose bytes the source's blob store no longer had: copied as
    # they were (the rows), and listed so that the loss is not silent.
    missing_blobs: list[str] = field(default_factory=list)


def _same_database(a: str, b: str) -> bool:
    ua, ub = sa.make_url(a), sa.make_url(b)
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        return Path(ua.database or "").expanduser().resolve() == (
            Path(ub.database or "").expanduser().resolve()
        )
    return (ua.host or "localhost", ua.port or 5432, ua.database, pg_url.schema_of(ua)) == (
        ub.host or "localhost",
        ub.port or 5432,
        ub.database,
        pg_url.schema_of(ub),
    )


def copy_store(
    source: Threadkeep, target: Settings, *, progress: Progress | None = None
) -> CopyResult:
    """Copy everything ``source`` holds into the empty database (and blob
    store) that ``target`` names, migrating it first. Safe while a server
    writes to the source; nothing may use the target until this returns.

    Raises:
        CopyTargetNotEmpty: the target already holds data (nothing written).
        CopyError: the target is the source, or refused a row, or did not
            read back what was written (nothing written but blob bytes).
    """
    report = progress or _quiet
    source_url = source.engine.url
    target_url = target.database_url
    if _same_database(source_url, target_url):
        raise CopyError(f"the target {shown_url(target_url)} is the source database itself")
    try:
        destination = Threadkeep.open(settings=target)  # creates and migrates its schema
    except (StoreError, sa.exc.DBAPIError) as exc:
        # The driver's own words (one line), not SQLAlchemy's wrapping of them.
        driver = getattr(exc, "orig", None) or getattr(exc.__cause__, "orig", None)
        reason = str(driver or exc).strip()
        raise CopyError(
            f"cannot open the copy's target {shown_url(target_url)}: {reason}; for PostgreSQL, "
            "create the database first (createdb) and check the URL"
        ) from exc
    try:
        holds = copy_q.holds_data(target_url)
        if holds:
            raise CopyTargetNotEmpty(shown_url(target_url), "rows in " + ", ".join(holds))
        with copy_q.snapshot(source_url) as src:
            copied, missing = _copy_blobs(source, destination, src, report)
            with copy_q.writing(target_url) as dst:
                epoch = time.time_ns() // 1000
                wrote = copy_q.copy_rows(src, dst, lambda d, t: report("rows", d, t), epoch)
                _verify(dst, wrote, report)
        counts = {name: digest.rows for name, digest in wrote.items()}
    finally:
        destination.close()
    return CopyResult(shown_url(target_url), counts, copied, missing)


def _copy_blobs(
    source: Threadkeep, destination: Threadkeep, src: sa.Connection, report: Progress
) -> tuple[int, list[str]]:
    """Put the bytes of every upload in the snapshot into the target's blob
    store (a blob it has already is skipped: they are named by their sha256)."""
    wanted = backup_q.upload_blobs(src)
    total = sum(size for _, size in wanted)
    done = copied = 0
    missing: list[str] = []
    report("blobs", 0, total)
    for sha256, size in wanted:
        if not destination.blobs.exists(sha256):
            try:
                chunks = source.blobs.open(sha256)
            except BlobMissing:
                missing.append(sha256)
            else:
                destination.blobs.put(chunks, max_bytes=max(size, 1), expected_sha256=sha256)
                copied += 1
        done += size
        report("blobs", done, total)
    return copied, missing


def _verify(dst: sa.Connection, wrote: dict[str, copy_q.Digest], report: Progress) -> None:
    """Read the copy back inside its own transaction; raise (and so roll it
    back) unless every table holds exactly the rows written."""
    wrong: list[str] = []
    report("compare", 0, len(copy_q.COPIED))
    for done, table in enumerate(copy_q.COPIED, start=1):
        got = copy_q.table_digest(dst, table)
        if got != wrote[table.name]:
            wrong.append(
                f"{table.name}: {got.rows} rows read back, {wrote[table.name].rows} written"
            )
        report("compare", done, len(copy_q.COPIED))
    if wrong:
        raise CopyError(
            f"the copy did not read back as written ({', '.join(wrong)}); nothing was copied"
        )
    if not copy_q.search_index_ok(dst):
        raise CopyError("the target's search index did not match its rows; nothing was copied")

"""Backup and restore of a whole store: the database and the blob store
(docs/backup.md). ``threadkeep backup`` and ``threadkeep restore`` call these.

A backup is one directory::

    manifest.json      what it holds: schema revision, engine, row counts,
                       the size and sha256 of every file; written last
    database.sqlite    SQLite: a copy made with the online backup API
    database.dump      PostgreSQL: pg_dump --format=custom
    blobs/ab/cd/<sha256>   the bytes of every upload (fs blob store; the
                       postgres blob store is inside the dump; S3 buckets are
                       backed up separately)

The database is copied first, consistently while the server writes; then the
blobs its uploads name. A restore checks every file against the manifest
before it writes anything, restores, checks the row counts, and then resets
sync, so that every client refetches its shapes (their handles name the
database as it was before the restore).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from threadkeep import __version__
from threadkeep.blobs import fs_path
from threadkeep.blobs.contract import CHUNK, SHA256
from threadkeep.config import Settings, load_settings
from threadkeep.errors import BackupCorrupt, BackupError, BlobMissing, RestoreTargetNotEmpty
from threadkeep.library import Threadkeep
from threadkeep.model.common import utcnow
from threadkeep.model.sync import SyncState
from threadkeep.own_files import (
    atomic_file,
    create_private,
    fsync_path,
    make_dirs,
    open_new,
)
from threadkeep.store import backup as backup_q
from threadkeep.store import migrate as migrations
from threadkeep.store import pg_url, shown_url

FORMAT = "threadkeep-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.dump"
#: In the manifest's counts: the distinct blobs the uploads name.
UPLOAD_BLOBS = "upload_blobs"

#: Progress: (phase, done, total). Phases: ``database`` (pages or tables),
#: ``blobs`` (bytes), ``verify`` (bytes).
Progress = Callable[[str, int, int], None]


def _quiet(phase: str, done: int, total: int) -> None:
    pass


@dataclass
class Manifest:
    """What a backup holds (``manifest.json``)."""

    engine: str  # "sqlite" or "postgresql"
    schema_revision: str | None
    threadkeep_version: str
    created_at: str
    database_file: str
    blob_backend: str  # fs, postgres, s3
    # "included": the files under blobs/; "in-database": inside the dump;
    # "not-included": an S3 bucket, backed up separately.
    blobs: str
    counts: dict[str, int]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing_blobs: list[str] = field(default_factory=list)
    # PostgreSQL: the schema of its own (``?schema=``) that the dump holds
    # alone; None for a dump of the whole database (threadkeep in ``public``).
    schema: str | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @classmethod
    def read(cls, root: Path) -> Manifest:
        path = root / MANIFEST
        if not path.is_file():
            raise BackupCorrupt(
                f"{root} is not a threadkeep backup: it has no {MANIFEST} (a backup "
                "that was interrupted has none either)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError("not a threadkeep backup manifest")
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('format_version')} is not supported")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise BackupCorrupt(f"{path} cannot be read: {exc}") from None


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    database_url: str
    blobs_restored: int
    sync: SyncState


def _hash_file(path: Path, progress: Progress, phase: str, done: list[int], total: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            done[0] += len(chunk)
            progress(phase, done[0], total)
    return h.hexdigest()


def _blob_path(root: Path, sha256: str) -> Path:
    return root / "blobs" / sha256[:2] / sha256[2:4] / sha256


def _empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


# --- backup -----------------------------------------------------------------------


def backup_store(
    tk: Threadkeep, dest: str | os.PathLike[str], *, progress: Progress | None = None
) -> Manifest:
    """Back up the store ``tk`` is open on into the new directory ``dest``.

    Safe while the server writes: the database copy is one consistent
    snapshot, and the blobs copied are those its uploads name.

    Raises:
        BackupError: ``dest`` is not empty, or pg_dump failed.
        BackupToolMissing: PostgreSQL without pg_dump installed.
    """
    report = progress or _quiet
    backup_q.require_direct(tk.engine.url)
    root = Path(dest).expanduser()
    if not _empty_dir(root):
        raise BackupError(f"{root} exists and is not empty; back up into a new directory")
    existed = root.exists()
    make_dirs(root)
    try:
        return _backup_into(tk, root, report)
    except BaseException:
        # Leave nothing half-written behind: the directory was empty (or absent).
        if existed:
            for child in root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _backup_into(tk: Threadkeep, root: Path, report: Progress) -> Manifest:
    backend = tk.blobs.name
    if tk.dialect == "sqlite":
        db_file = SQLITE_FILE
        create_private(root / db_file)
        backup_q.sqlite_copy(
            backup_q.sqlite_path(tk.engine.url),
            root / db_file,
            lambda done, total: report("database", done, total),
        )
        copy = backup_q.raw_engine(f"sqlite:///{root / db_file}")
        try:
            with copy.connect() as conn:
                revision = migrations.database_revision(conn)
                counts = backup_q.row_counts(conn)
                wanted = backup_q.upload_blobs(conn)
        finally:
            copy.dispose()
    else:
        db_file = PG_FILE
        create_private(root / db_file)  # pg_dump writes into it, keeping its mode
        with backup_q.exported_snapshot(tk.engine.url) as (snapshot, conn):
            revision = migrations.database_revision(conn)
            counts = backup_q.row_counts(conn)
            wanted = backup_q.upload_blobs(conn)
            backup_q.pg_dump(
                tk.engine.url,
                root / db_file,
                snapshot,
                lambda done, total: report("database", done, total),
                len(counts),
            )
            fsync_path(root / db_file)  # pg_dump syncs it unless told not to; be sure
    manifest = Manifest(
        engine="sqlite" if tk.dialect == "sqlite" else "postgresql",
        schema_revision=revision,
        threadkeep_version=__version__,
        created_at=utcnow().isoformat(),
        database_file=db_file,
        blob_backend=backend,
        blobs={"fs": "included", "postgres": "in-database"}.get(backend, "not-included"),
        counts=counts,
        schema=tk.engine.schema,
    )
    if manifest.blobs == "included":
        _copy_blobs(tk, root, wanted, manifest, report)
    manifest.counts[UPLOAD_BLOBS] = len(wanted)
    done = [0]
    size = (root / db_file).stat().st_size
    manifest.files[db_file] = {
        "size": size,
        "sha256": _hash_file(root / db_file, report, "verify", done, size),
    }
    _write_manifest(root, manifest)
    return manifest


def _copy_blobs(
    tk: Threadkeep, root: Path, wanted: list[tuple[str, int]], manifest: Manifest, report: Progress
) -> None:
    total = sum(n for _, n in wanted)
    done = 0
    report("blobs", 0, total)
    written_into: set[Path] = set()
    for sha256, size in wanted:
        target = _blob_path(root, sha256)
        make_dirs(target.parent)
        h = hashlib.sha256()
        written = 0
        try:
            with open_new(target) as f:
                for chunk in tk.blobs.open(sha256):
                    f.write(chunk)
                    h.update(chunk)
                    written += len(chunk)
                    report("blobs", done + written, total)
                f.flush()
                os.fsync(f.fileno())
        except BlobMissing:
            target.unlink(missing_ok=True)
            manifest.missing_blobs.append(sha256)
            continue
        if h.hexdigest() != sha256:
            raise BackupError(
                f"blob {sha256} in the blob store does not hold the bytes its name says "
                f"(it has sha256 {h.hexdigest()}); the blob store is damaged"
            )
        done += size
        written_into.add(target.parent)
        rel = target.relative_to(root).as_posix()
        manifest.files[rel] = {"size": written, "sha256": sha256}
    # The files' names, before the manifest says the backup is whole.
    for directory in sorted(written_into):
        fsync_path(directory)
    report("blobs", total, total)


def _write_manifest(root: Path, manifest: Manifest) -> None:
    # Written last, whole or not at all: a backup with a manifest is a whole
    # one. Its rename syncs the backup's directory, and with it the names of
    # the database file and of blobs/.
    with atomic_file(root / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(asdict(manifest), f, indent=2, sort_keys=True)
        f.write("\n")


# --- restore ----------------------------------------------------------------------


def verify_backup(src: str | os.PathLike[str], *, progress: Progress | None = None) -> Manifest:
    """Read the manifest of the backup ``src`` and check every file's size and
    sha256 against it. Raises BackupCorrupt on the first difference."""
    report = progress or _quiet
    root = Path(src).expanduser()
    manifest = Manifest.read(root)
    if manifest.database_file not in manifest.files:
        raise BackupCorrupt(f"the manifest of {root} does not list its database file")
    total = sum(int(f["size"]) for f in manifest.files.values())
    done = [0]
    report("verify", 0, total)
    for rel, expected in sorted(manifest.files.items()):
        path = root / rel
        if not path.is_file():
            raise BackupCorrupt(f"{path} is missing from the backup")
        if path.stat().st_size != expected["size"]:
            raise BackupCorrupt(
                f"{path} is {path.stat().st_size} bytes, the manifest says {expected['size']}"
            )
        if _hash_file(path, report, "verify", done, total) != expected["sha256"]:
            raise BackupCorrupt(f"{path} does not have the sha256 the manifest lists")
    return manifest


def restore_store(
    src: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore the backup ``src`` into the database (and blob store) that
    ``settings`` name. Stop every server using that database first.

    Every file is checked against the manifest before anything is written.
    After the restore, sync is reset: clients refetch their shapes.

    Args:
        force: overwrite a target that holds data (otherwise refused).

    Raises:
        BackupCorrupt: the backup is incomplete or damaged (nothing written).
        RestoreTargetNotEmpty: the target holds data and ``force`` is not set.
        SchemaTooNew: the backup is from a newer threadkeep.
    """
    report = progress or _quiet
    settings = settings or load_settings()
    root = Path(src).expanduser()
    manifest = verify_backup(root, progress=report)
    url = settings.database_url
    engine_name = "sqlite" if sa.make_url(url).get_backend_name() == "sqlite" else "postgresql"
    if engine_name != manifest.engine:
        raise BackupError(
            f"this is a backup of a {manifest.engine} database and the target is "
            f"{engine_name}: restore it into a {manifest.engine} database"
        )
    if manifest.schema_revision is not None and (
        manifest.schema_revision not in migrations.known_revisions()
    ):
        from threadkeep.errors import SchemaTooNew

        raise SchemaTooNew(manifest.schema_revision, migrations.code_head())
    if engine_name == "postgresql":
        backup_q.require_direct(url)
        _check_schema(url, manifest)
    _check_target(url, settings, force)
    db_file = root / manifest.database_file

    def db_progress(done: int, total: int) -> None:
        report("database", done, total)

    if engine_name == "sqlite":
        target = backup_q.sqlite_path(url)
        make_dirs(target.parent)
        create_private(target)  # a new database is private; an existing one keeps its mode
        backup_q.sqlite_copy(db_file, target, db_progress)
    else:
        engine = backup_q.raw_engine(url)
        try:
            with engine.begin() as conn:
                backup_q.drop_tables_not_in(conn, set(manifest.counts))
        finally:
            engine.dispose()
        tables = sum(1 for name in manifest.counts if name != UPLOAD_BLOBS)
        backup_q.pg_restore(url, db_file, db_progress, tables)
    _check_counts(url, manifest)
    tk = Threadkeep.open(url, settings=settings)  # migrates a backup from an older version
    try:
        restored = _restore_blobs(tk, root, manifest, report)
        state = tk.reset_sync()
    finally:
        tk.close()
    return RestoreResult(manifest, url, restored, state)


def _check_schema(url: str, manifest: Manifest) -> None:
    """A dump names the schema it came from, and pg_restore cannot rename it:
    the target must name the same one (or none, for a whole-database dump)."""
    target = pg_url.schema_of(url)
    if target == manifest.schema:
        return

    def named(schema: str | None) -> str:
        return "no schema (public)" if schema is None else f"?schema={schema}"

    raise BackupError(
        f"this backup holds a store with {named(manifest.schema)} and the target URL "
        f"has {named(target)}: restore it with {named(manifest.schema)} in the URL "
        "(a dump cannot move to another schema; `threadkeep copy` can, see docs/backup.md)"
    )


def _check_target(url: str, settings: Settings, force: bool) -> None:
    """Refuse a target that holds data: any table with rows where the dump
    goes (the whole database's ``public``, or threadkeep's own schema, the
    only one its connections see)."""
    holds: list[str] = []
    if sa.make_url(url).get_backend_name() == "sqlite":
        path = backup_q.sqlite_path(url)
        if path.exists():
            holds += _tables_with_data(url)
    else:
        holds += _tables_with_data(url)
    blob_dir = fs_path(settings.blobs, url)
    if blob_dir is not None and blob_dir.is_dir():
        if any(p.is_dir() and len(p.name) == 2 for p in blob_dir.iterdir()):
            holds.append(f"blobs in {blob_dir}")
    if holds and not force:
        raise RestoreTargetNotEmpty(shown_url(url), "holds " + ", ".join(holds))


def _tables_with_data(url: str) -> list[str]:
    engine = backup_q.raw_engine(url)
    try:
        with engine.connect() as conn:
            return [f"rows in {t}" for t in backup_q.data_held(conn)]
    except sa.exc.DBAPIError as exc:
        raise BackupError(
            f"cannot open the restore target {shown_url(url)}: {str(exc).splitlines()[0]}; "
            "for PostgreSQL, create the database first (createdb); a SQLite target "
            "must be a threadkeep database or not exist"
        ) from None
    finally:
        engine.dispose()


def _check_counts(url: str, manifest: Manifest) -> None:
    engine = backup_q.raw_engine(url)
    try:
        with engine.connect() as conn:
            got = backup_q.row_counts(conn)
    finally:
        engine.dispose()
    wrong = {
        t: (n, got.get(t))
        for t, n in manifest.counts.items()
        if t != UPLOAD_BLOBS and got.get(t) != n
    }
    if wrong:
        detail = ", ".join(f"{t}: {g} rows, expected {n}" for t, (n, g) in sorted(wrong.items()))
        raise BackupCorrupt(f"the restored database does not match the manifest ({detail})")


def _restore_blobs(tk: Threadkeep, root: Path, manifest: Manifest, report: Progress) -> int:
    blob_files = [
        (rel, int(f["size"]), str(f["sha256"]))
        for rel, f in sorted(manifest.files.items())
        if rel.startswith("blobs/") and SHA256.fullmatch(str(f["sha256"]))
    ]
    if not blob_files:
        return 0
    total = sum(size for _, size, _ in blob_files)
    done = 0
    report("blobs", 0, total)
    for rel, size, sha256 in blob_files:
        with open(root / rel, "rb") as f:
            tk.blobs.put(f, max_bytes=max(size, 1), expected_sha256=sha256)
        done += size
        report("blobs", done, total)
    return len(blob_files)

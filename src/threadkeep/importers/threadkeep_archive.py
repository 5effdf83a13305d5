"""A user archive (``threadkeep user export``, ``GET /v1/me/export``) read
back into a store: the way home for a user's own copy of their data.

The archive is a zip of one JSONL file per table, ``blobs/<sha256>`` and
``manifest.json`` (service/userdata.py). Reading it back:

1. **Nothing before the archive is whole.** Every file the manifest lists
   is read once and checked against its sha256 and size, and a file the
   manifest does not list, or a blob whose bytes are not its name, fails the
   whole archive before anything is written (:meth:`Archive.verify`).
2. **Bytes before the rows that name them.** The blobs go into this store's
   blob store first (:func:`prepare`), so each upload row is imported with
   its bytes; a dry run only checks them.
3. **The lossless JSONL importer does the rest.** The table files are merged
   into the records of ``threadkeep export --format jsonl``, a root session
   and its branches together, parents first, and handed to
   ``threadkeep_jsonl.read_records``: the same checks, one transaction per
   root and its branches, the same idempotent re-import.

Every table file is in the order of the sessions file (the export pages
each table by the same session-id windows), so the files are merged in one
pass, a session at a time. A session with branches is not complete until
its last branch's turn comes; until then its records wait in a temporary
file, never in memory. The account itself (the user row, the tokens, which
an archive holds without their secrets) is not imported: the sessions
become the importing user's, and the report says what was left out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import zipfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from threadkeep.errors import ThreadkeepError
from threadkeep.importers._common import Failed, SkippedItem, SourceError, SourceItem
from threadkeep.importers.threadkeep_jsonl import Record, read_records
from threadkeep.model.userdata import ARCHIVE_FORMAT, ARCHIVE_VERSION
from threadkeep.service.imports import ImportOps
from threadkeep.store.migrate import code_head, known_revisions

MANIFEST = "manifest.json"
SESSIONS = "sessions.jsonl"
#: The account's files: read for the report, not imported.
ACCOUNT = ("users.jsonl", "api_tokens.jsonl")
#: Tables whose rows are a session's own kinds of record in the JSONL export;
#: every other session-scoped table is a session-record table (or uploads).
KINDS = {"messages": "message", "tool_events": "tool_event", "timeline_events": "timeline_event"}
_SCOPE = ("owner_id", "session_id")
_READ = 1 << 20


def looks_like(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read(MANIFEST))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == ARCHIVE_FORMAT


@dataclass(frozen=True)
class _Manifest:
    files: dict[str, tuple[int, str]]  # name -> (bytes, sha256)
    counts: dict[str, Any]


class Archive:
    """An open archive whose manifest has been read (not yet verified)."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        try:
            self._zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise SourceError(self.name, f"not a readable zip archive ({exc})") from None
        try:
            manifest = self._manifest()
        except BaseException:
            self._zf.close()
            raise
        self.files = manifest.files
        #: Rows per table, as the export counted them (for the report only).
        self.counts = manifest.counts
        #: sha256 -> size of every blob the archive holds.
        self.blobs = {
            sha256: size for name, (size, sha256) in self.files.items() if name.startswith("blobs/")
        }
        #: Rows the merge could not place, for the report.
        self.skipped: list[SkippedItem] = []

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zf.close()

    def _manifest(self) -> _Manifest:
        where = f"{self.name}: {MANIFEST}"
        try:
            manifest = json.loads(self._zf.read(MANIFEST))
        except KeyError:
            raise SourceError(self.name, f"no {MANIFEST}: not a threadkeep user export") from None
        except (ValueError, zipfile.BadZipFile, OSError) as exc:
            raise SourceError(where, f"unreadable ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
            raise SourceError(where, f"not a threadkeep user export (format {ARCHIVE_FORMAT!r})")
        if manifest.get("format_version") != ARCHIVE_VERSION:
            raise SourceError(
                where, f"archive format version {manifest.get('format_version')!r} is unknown"
            )
        revision = manifest.get("schema_revision")
        if isinstance(revision, str) and revision not in known_revisions():
            raise SourceError(
                where,
                f"made by a newer threadkeep (schema revision {revision}; this one knows up "
                f"to {code_head()}): upgrade threadkeep to import it",
            )
        files = manifest.get("files")
        if not isinstance(files, dict) or SESSIONS not in files:
            raise SourceError(where, f"its file list is missing or names no {SESSIONS}")
        out: dict[str, tuple[int, str]] = {}
        for name, f in files.items():
            ok = isinstance(f, dict) and isinstance(f.get("sha256"), str)
            size = f.get("bytes") if ok else None
            if not ok or not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise SourceError(where, f"the entry for {name!r} needs bytes and sha256")
            out[name] = (size, f["sha256"])
        counts = manifest.get("counts")
        return _Manifest(out, counts if isinstance(counts, dict) else {})

    def verify(self) -> None:
        """Every listed file is there, whole; nothing unlisted is.

        Raises:
            SourceError: the archive is damaged or was changed (names the file).
        """
        present = set(self._zf.namelist()) - {MANIFEST}
        extra = sorted(present - set(self.files))
        if extra:
            raise SourceError(
                f"{self.name}: {extra[0]}", "not in the manifest: the archive was changed"
            )
        for name, (size, sha256) in self.files.items():
            where = f"{self.name}: {name}"
            if name not in present:
                raise SourceError(where, "listed in the manifest but missing from the archive")
            digest, got = hashlib.sha256(), 0
            try:
                with self._zf.open(name) as f:
                    while chunk := f.read(_READ):
                        digest.update(chunk)
                        got += len(chunk)
            except (zipfile.BadZipFile, OSError) as exc:
                raise SourceError(where, f"unreadable ({exc})") from None
            if got != size or digest.hexdigest() != sha256:
                raise SourceError(
                    where,
                    f"{got} bytes with sha256 {digest.hexdigest()}, but the manifest says "
                    f"{size} bytes with sha256 {sha256}: the archive is damaged",
                )
            if name.startswith("blobs/") and name != f"blobs/{sha256}":
                raise SourceError(where, "a blob's name must be its sha256")

    def store_blobs(self, store: Callable[[IO[bytes], str], None]) -> None:
        """Hand each blob's bytes to ``store`` (after :meth:`verify`)."""
        for sha256 in self.blobs:
            with self._zf.open(f"blobs/{sha256}") as f:
                try:
                    store(f, sha256)
                except ThreadkeepError as exc:  # too large for this store, say
                    raise SourceError(f"{self.name}: blobs/{sha256}", str(exc)) from None

    def account_notes(self) -> list[SkippedItem]:
        """What the account's files hold, which an import leaves out."""
        notes = []
        for name in ACCOUNT:
            rows = self.counts.get(name.removesuffix(".jsonl"))
            if not rows:
                continue
            where = f"{self.name}: {name}"
            if name == "users.jsonl":
                notes.append(
                    SkippedItem(
                        where,
                        "the archive's user account is not imported: its sessions go to the "
                        "importing user",
                    )
                )
            else:
                notes.append(
                    SkippedItem(
                        where,
                        f"{rows} API token(s) not imported: an archive holds no token "
                        "secrets; make new tokens (threadkeep token create)",
                    )
                )
        return notes

    # --- the records, a root and its branches together ------------------------

    def _lines(self, name: str) -> Generator[tuple[str, Any], None, None]:
        """(where, decoded row or SourceError) for each line of a table file."""
        with self._zf.open(name) as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                where = f"{self.name}: {name} line {lineno}"
                try:
                    yield where, orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    yield where, SourceError(where, f"not valid JSON ({exc})")

    def _sessions(self) -> list[tuple[str, Any]]:
        """(id, parent id) of every session, in the file's order; a line
        that is not a session row fails the archive."""
        out = []
        for where, row in self._lines(SESSIONS):
            if isinstance(row, SourceError):
                raise row
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise SourceError(where, "a session row needs its id")
            out.append((row["id"], row.get("parent_session_id")))
        return out

    def records(self) -> Iterator[Record]:
        """The archive as threadkeep_jsonl records: each root session with
        its rows, then its branches with theirs, parents first."""
        sessions = self._sessions()
        place = {sid: i for i, (sid, _) in enumerate(sessions)}
        if len(place) != len(sessions):
            raise SourceError(f"{self.name}: {SESSIONS}", "a session id appears twice")
        parent = dict(sessions)
        root: dict[str, str] = {}
        depth: dict[str, int] = {}
        for sid, _ in sessions:
            # Up to the root. A session whose parent is not in the archive is
            # the root of its own group, which read_records then fails whole.
            chain = [sid]
            while (p := parent.get(chain[-1])) in parent and p not in chain:
                chain.append(p)
            root[sid], depth[sid] = chain[-1], len(chain) - 1
        members: dict[str, list[str]] = {}
        for sid, _ in sessions:
            members.setdefault(root[sid], []).append(sid)
        for group in members.values():
            group.sort(key=lambda s: (depth[s], place[s]))
        waiting = {r: len(group) for r, group in members.items() if len(group) > 1}

        tables = [
            name[: -len(".jsonl")]
            for name in self.files
            if name.endswith(".jsonl") and name != SESSIONS and name not in ACCOUNT
        ]
        with contextlib.ExitStack() as stack:
            streams = [_Rows(self, t, place, stack) for t in tables]
            session_rows = self._lines(SESSIONS)
            spill = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tk-import-")))
            for where, row in session_rows:
                sid = row["id"]
                bundle: list[Record] = [(where, {"type": "session", "data": row})]
                for rows in streams:
                    bundle.extend(rows.take(sid))
                r = root[sid]
                if r not in waiting:
                    yield from bundle
                    continue
                _spill(spill / f"{place[sid]}.jsonl", bundle)
                waiting[r] -= 1
                if waiting[r] == 0:  # the group's last session: all of it, in order
                    for member in members[r]:
                        yield from _unspill(spill / f"{place[member]}.jsonl")
            for rows in streams:
                rows.finish()

    def _skip(self, where: str, reason: str) -> None:
        self.skipped.append(SkippedItem(where, reason))


class _Rows:
    """One session-scoped table file, read in step with the sessions file."""

    def __init__(
        self, archive: Archive, table: str, place: dict[str, int], stack: contextlib.ExitStack
    ) -> None:
        self.archive, self.table, self.place = archive, table, place
        self._lines = archive._lines(f"{table}.jsonl")
        stack.callback(self._lines.close)
        self._head: tuple[str, Any] | None = next(self._lines, None)
        self._last = -1

    def take(self, sid: str) -> Iterator[Record]:
        """The records of session ``sid``'s rows (the next ones in the file)."""
        here = self.place[sid]
        while self._head is not None:
            where, row = self._head
            if isinstance(row, SourceError) or not isinstance(row, dict):
                # For read_records to fail the session it lands in.
                yield (
                    where,
                    row
                    if isinstance(row, SourceError)
                    else SourceError(where, "not a row (a JSON object)"),
                )
            else:
                at = self.place.get(row.get("session_id"))  # type: ignore[arg-type]
                if at is None or at < self._last:
                    self.archive._skip(where, self._orphan(row, at))
                elif at > here:
                    return  # a later session's row
                else:
                    self._last = at
                    yield where, self._record(row)
            self._head = next(self._lines, None)

    def _orphan(self, row: dict[str, Any], at: int | None) -> str:
        if at is None:
            return (
                f"a {self.table} row of session {row.get('session_id')!r}, which the "
                f"archive's {SESSIONS} does not hold (made while the export ran): not imported"
            )
        return f"a {self.table} row out of the sessions' order: not imported"

    def _record(self, row: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS.get(self.table)
        if kind is not None:
            return {"type": kind, "data": row}
        data = {k: v for k, v in row.items() if k not in _SCOPE}
        return {"type": "record", "table": self.table, "data": data}

    def finish(self) -> None:
        """Rows left after the last session: sessions the file does not hold."""
        while self._head is not None:
            where, row = self._head
            if isinstance(row, dict):
                self.archive._skip(where, self._orphan(row, self.place.get(row.get("session_id"))))  # type: ignore[arg-type]
            else:
                self.archive._skip(where, "not a row (not valid JSON): not imported")
            self._head = next(self._lines, None)


def _spill(path: Path, records: list[Record]) -> None:
    with path.open("wb") as f:
        for where, rec in records:
            if isinstance(rec, SourceError):
                rec = {"error": rec.reason}
            f.write(orjson.dumps([where, rec]) + b"\n")


def _unspill(path: Path) -> Iterator[Record]:
    with path.open("rb") as f:
        for raw in f:
            where, rec = orjson.loads(raw)
            if isinstance(rec, dict) and set(rec) == {"error"}:
                rec = SourceError(where, rec["error"])
            yield where, rec
    path.unlink()


def open_checked(path: Path) -> Archive:
    """The archive, verified whole.

    Raises:
        SourceError: not an archive, or damaged (names the file).
    """
    archive = Archive(path)
    try:
        archive.verify()
    except BaseException:
        archive.__exit__(None, None, None)
        raise
    return archive


def prepare(path: Path, tk: ImportOps | None) -> None:
    """Check the whole archive and, unless ``tk`` is None (a dry run), store
    its blobs in ``tk``'s blob store: before any row is read, so an upload
    row is imported with its bytes and a damaged archive writes nothing.

    Raises:
        SourceError: the archive is damaged.
    """
    with open_checked(path) as archive:
        if tk is not None:
            archive.store_blobs(tk.store_import_blob)


def read(path: Path, owner_id: str) -> Iterator[SourceItem]:
    """The archive's sessions, a root and its branches per item (see the
    module doc). Run :func:`prepare` first: this reads the files without
    checking their sha256 again."""
    try:
        archive = Archive(path)
    except SourceError as exc:
        yield Failed(exc.where, exc.reason)
        return
    with archive:
        yield from archive.account_notes()
        yield from read_records(archive.records(), blobs_in_source=archive.blobs)
        yield from archive.skipped

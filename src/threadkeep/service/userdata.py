"""A user's data, whole: export everything a user owns as one archive, and
erase a user completely (docs/privacy.md).

The archive is a zip file: one JSONL file per table, the bytes of every
upload under ``blobs/<sha256>``, and ``manifest.json`` (counts, schema
revision, sha256 of every file). It is written as a stream, a page of rows or
a chunk of a blob at a time, so neither the server nor the library ever holds
a whole user; the HTTP route streams the same bytes to the client.

An erasure deletes in bounded batches, each one transaction with a delete in
the change log for every row (so sync clients drop them), then the user's
blobs that no other upload uses, then every change-log row that still carries
the user's data, and last the tokens and the user row.
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from threadkeep.errors import BlobMissing, InvalidInput, StoreError, UserNotFound
from threadkeep.model.common import Actor, Committed, utcnow
from threadkeep.model.userdata import (
    ARCHIVE_FORMAT,
    ARCHIVE_VERSION,
    ArchiveFile,
    Progress,
    UserErasure,
    UserExport,
)
from threadkeep.own_files import atomic_file
from threadkeep.service import args
from threadkeep.service.base import check_actor
from threadkeep.service.uploads import UploadOps
from threadkeep.store import migrate
from threadkeep.store import search as search_q
from threadkeep.store import uploads as upload_q
from threadkeep.store import userdata as ud
from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx

#: Rows per page read for the archive, and per erase transaction.
PAGE = 500
#: Sessions per window: the session-scoped tables are read and erased a
#: window of sessions at a time.
WINDOW = 200
#: How often an erasure starts over when rows appeared while it ran (the user
#: is disabled first, so only library callers acting for it could add any).
ROUNDS = 3


class _Sink:
    """Where the zip writer puts its bytes until the generator hands them on.
    Not seekable (no ``seek``/``tell``): zipfile then writes each entry's sizes
    and CRC after its data, which is what lets it stream."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _Entry:
    """One archive file being written: counts and hashes what goes in."""

    def __init__(self, zf: zipfile.ZipFile, name: str) -> None:
        info = zipfile.ZipInfo(name, date_time=datetime.now(UTC).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        self._out = zf.open(info, "w", force_zip64=True)
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.rows = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.bytes += len(data)
        self._out.write(data)

    def row(self, row: dict[str, Any]) -> None:
        self.write(orjson.dumps(row) + b"\n")
        self.rows += 1

    def abandon(self) -> None:
        self._out.close()

    def close(self, *, jsonl: bool = True) -> ArchiveFile:
        self._out.close()
        return ArchiveFile(
            rows=self.rows if jsonl else None, bytes=self.bytes, sha256=self._hash.hexdigest()
        )


def _version() -> str:
    import threadkeep  # the package imports this module: not at import time

    return threadkeep.__version__


def _tick(progress: Progress | None, what: str, n: int) -> None:
    if progress is not None and n:
        progress(what, n)


class UserDataOps(UploadOps):
    """Export and erasure; built on uploads for the blob store."""

    # --- export -------------------------------------------------------------------

    def export_user(
        self, user_id: str, dest: str | Path, *, progress: Progress | None = None
    ) -> UserExport:
        """Write everything ``user_id`` owns into one zip archive at ``dest``: an
        operator's operation, not scoped to an actor (see :meth:`export_my_data`).

        The archive holds ``<table>.jsonl`` for the user row, the tokens
        (never their hashes), the sessions (the trash included), messages,
        tool and timeline events, uploads and every session-record table;
        ``blobs/<sha256>`` for the bytes of each upload; and ``manifest.json``
        with the row counts, the schema revision and the sha256 of every file.
        Written as a stream, a page at a time (docs/privacy.md).

        Args:
            dest: the archive's path; an existing file is replaced only once
                the new archive is complete.
            progress: called with (table or ``blobs``, how many just written).

        Raises:
            UserNotFound: no such user (nothing is written).
        """
        user_id = args.key("user_id", user_id)
        if not isinstance(dest, str | Path) or not str(dest):
            raise InvalidInput("dest", "must be a file path")
        path = Path(dest).expanduser()
        if path.is_dir():
            raise InvalidInput("dest", f"{path} is a directory; name the archive file")
        if not path.parent.is_dir():
            raise InvalidInput("dest", f"the directory {path.parent} does not exist")
        self._require_user(user_id)
        result: dict[str, Any] = {}
        # The archive is often the user's only copy (before an erasure): its
        # bytes and its name are durable before this returns.
        with atomic_file(path) as f:
            for chunk in self._archive(user_id, progress, result):
                f.write(chunk)
        return UserExport(
            user_id=user_id,
            path=str(path),
            counts=result["counts"],
            files=result["files"],
            missing_blobs=result["missing_blobs"],
            archive_bytes=path.stat().st_size,
        )

    def export_my_data(
        self, actor: Actor, dest: str | Path, *, progress: Progress | None = None
    ) -> UserExport:
        """The actor's own archive (what :meth:`export_user` writes) at ``dest``."""
        return self.export_user(check_actor(actor), dest, progress=progress)

    def stream_my_data(self, actor: Actor) -> Iterator[bytes]:
        """The actor's own archive as a stream of bytes (for ``GET /v1/me/export``).

        Raises:
            UserNotFound: at once, before the first chunk, when the user is gone.
        """
        owner = check_actor(actor)
        self._require_user(owner)
        return self._archive(owner, None, {})

    def _require_user(self, user_id: str) -> None:
        if self.engine.read(lambda c: ud.user_row(c, user_id)) is None:
            raise UserNotFound(user_id)

    def _archive(
        self, owner: str, progress: Progress | None, result: dict[str, Any]
    ) -> Iterator[bytes]:
        """The zip archive of ``owner``'s data, chunk by chunk. Fills ``result``
        with counts, files and missing blobs once the last chunk is out."""
        sink = _Sink()
        zf = zipfile.ZipFile(sink, "w", allowZip64=True)
        files: dict[str, ArchiveFile] = {}
        counts: dict[str, int] = {}
        shas: dict[str, None] = {}  # the upload blobs, in order, once each

        opened: list[_Entry] = []  # the file being written, to abandon on failure

        def table_file(name: str, pages: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
            entry = _Entry(zf, f"{name}.jsonl")
            opened.append(entry)
            for rows in pages:
                for r in rows:
                    entry.row(r)
                    if name == "uploads":
                        shas[r["sha256"]] = None
                _tick(progress, name, len(rows))
                yield sink.drain()
            files[f"{name}.jsonl"] = entry.close()
            opened.remove(entry)
            counts[name] = entry.rows
            yield sink.drain()

        read = self.engine.read
        exported_at = utcnow()
        revision = read(migrate.database_revision)

        def user_pages() -> Iterator[list[dict[str, Any]]]:
            row = read(lambda c: ud.user_row(c, owner))
            if row is None:  # erased while this export ran
                raise UserNotFound(owner)
            yield [row]

        def token_pages() -> Iterator[list[dict[str, Any]]]:
            after: str | None = None
            while rows := read(partial(ud.token_rows, user_id=owner, after=after, limit=PAGE)):
                yield [row_json(r._mapping) for r in rows]
                after = rows[-1].id

        def session_pages() -> Iterator[list[dict[str, Any]]]:
            after: str | None = None
            while rows := read(partial(ud.session_rows, owner_id=owner, after=after, limit=PAGE)):
                yield [row_json(r._mapping) for r in rows]
                after = rows[-1].id

        def scoped_pages(table: Any) -> Iterator[list[dict[str, Any]]]:
            after: str | None = None
            while window := read(
                partial(ud.session_ids, owner_id=owner, after=after, limit=WINDOW)
            ):
                key: tuple[Any, ...] | None = None
                while True:
                    rows, key = read(
                        partial(
                            ud.session_table_rows,
                            table=table,
                            owner_id=owner,
                            session_ids=window,
                            after=key,
                            limit=PAGE,
                        )
                    )
                    if rows:
                        yield [row_json(r._mapping) for r in rows]
                    if key is None:
                        break
                after = window[-1]

        try:
            yield from table_file("users", user_pages())
            yield from table_file("api_tokens", token_pages())
            yield from table_file("sessions", session_pages())
            for table in ud.SESSION_TABLES:
                yield from table_file(str(table.name), scoped_pages(table))

            missing: list[str] = []
            for sha256 in shas:
                try:
                    chunks = self.blobs.open(sha256)
                except BlobMissing:
                    missing.append(sha256)
                    continue
                entry = _Entry(zf, f"blobs/{sha256}")
                opened.append(entry)
                for chunk in chunks:
                    entry.write(chunk)
                    yield sink.drain()
                got = entry.close(jsonl=False)
                opened.remove(entry)
                if got.sha256 != sha256:
                    raise StoreError(
                        f"the blob store returned bytes for {sha256} whose sha256 is "
                        f"{got.sha256}: the store is damaged; nothing was exported"
                    )
                files[f"blobs/{sha256}"] = got
                _tick(progress, "blobs", 1)

            manifest = {
                "format": ARCHIVE_FORMAT,
                "format_version": ARCHIVE_VERSION,
                "user_id": owner,
                "exported_at": exported_at.isoformat(),
                "threadkeep_version": _version(),
                "schema_revision": revision,
                "counts": counts,
                "blobs": len(shas) - len(missing),
                "missing_blobs": missing,
                "files": {name: f.model_dump(exclude_none=True) for name, f in files.items()},
            }
            info = zipfile.ZipInfo("manifest.json", date_time=exported_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
            zf.close()
            yield sink.drain()
            result.update(counts=counts, files=files, missing_blobs=missing)
        except BaseException:
            # A failed (or abandoned) export: close the file being written and
            # the archive, so nothing is left for the garbage collector to close
            # half-way (zipfile refuses that loudly), then let the error through.
            for entry in opened:
                with contextlib.suppress(Exception):
                    entry.abandon()
            with contextlib.suppress(Exception):
                zf.close()
            raise

    # --- erasure ------------------------------------------------------------------

    def user_row_counts(self, user_id: str) -> dict[str, int]:
        """How many rows ``user_id`` owns, per table (``changes``: the change-log
        rows that carry a payload). Zero everywhere for an erased user."""
        user_id = args.key("user_id", user_id)
        return self.engine.read(lambda c: ud.count_owned(c, user_id))

    def erase_user(
        self, user_id: str, *, progress: Progress | None = None
    ) -> Committed[UserErasure]:
        """Erase a user completely: an operator's operation (docs/privacy.md).

        In order: the user is disabled (its tokens stop working); every row it
        owns is deleted in batches of at most 500, each batch one transaction
        logging a delete per row, so sync clients drop them; the blobs of its
        uploads that no other user's upload uses are deleted from the blob
        store; every change-log row that carried its data is deleted (the
        deletes stay: they hold only keys); last, its tokens and its row.
        Afterwards the id answers not-found everywhere. An erasure that was
        interrupted is finished by running it again.

        Args:
            progress: called with (table, ``blobs`` or ``changes``, how many
                just deleted).

        Returns:
            What was deleted, with the txid of the last transaction.

        Raises:
            UserNotFound: no such user (nothing changes); also when it was
                erased already.
        """
        user_id = args.key("user_id", user_id)

        def disable(tx: WriteTx) -> None:
            if not ud.disable_user(tx.conn, user_id):
                raise UserNotFound(user_id)

        self.engine.write(disable)
        # Blobs touched after this moment are spared: another user storing the
        # same bytes meanwhile keeps them (blobs/contract.py, the age rule).
        cutoff = utcnow()
        rows: dict[str, int] = {}
        shas: set[str] = set()
        deleted: list[str] = []
        scrubbed = 0

        def count(name: str, n: int) -> None:
            rows[name] = rows.get(name, 0) + n
            _tick(progress, name, n)

        for _ in range(ROUNDS):
            self._erase_rows(user_id, count, shas)
            shas |= self._logged_upload_shas(user_id)
            deleted += self._erase_blobs(shas, cutoff, progress)
            scrubbed += self._scrub(user_id, progress)
            done = self.engine.write(lambda tx: self._erase_user_row(tx, user_id))
            if done.value is None:
                continue  # sessions appeared meanwhile: another round
            n_tokens, n_changes = done.value
            scrubbed += n_changes
            # SQLite's FTS5 drops a deleted row's terms only as its segments
            # merge: merge them now, so no word of the user stays in the index.
            self.engine.write(lambda tx: search_q.optimize(tx.conn))
            rows["api_tokens"] = n_tokens
            rows["users"] = 1
            erasure = UserErasure(
                user_id=user_id,
                rows=rows,
                blobs_deleted=sorted(deleted),
                blobs_kept=sorted(shas - set(deleted)),
                changes_scrubbed=scrubbed,
            )
            return Committed(erasure, done.txid)
        raise StoreError(
            f"user {user_id} kept getting new sessions while being erased: stop what "
            "writes for it and run the erasure again"
        )

    def _erase_rows(self, owner: str, count: Callable[[str, int], None], shas: set[str]) -> None:
        read, write = self.engine.read, self.engine.write
        for table in ud.SESSION_TABLES:
            after: str | None = None
            while window := read(
                partial(ud.session_ids, owner_id=owner, after=after, limit=WINDOW)
            ):
                while True:
                    erase = partial(
                        ud.erase_rows, table=table, owner_id=owner, session_ids=window, limit=PAGE
                    )
                    n, got = write(erase).value
                    count(str(table.name), n)
                    shas.update(got)
                    if n < PAGE:
                        break
                after = window[-1]
        while counts := write(lambda tx: ud.erase_leaf_sessions(tx, owner, PAGE)).value:
            for name, n in counts.items():
                count(name, n)
        if read(lambda c: ud.has_sessions(c, owner)):
            # Every session is someone's parent: only a branch owned by another
            # user could do that, which the service never creates.
            raise StoreError(
                f"user {owner}'s sessions could not be deleted: a session of another user "
                "is a branch of one of them"
            )

    def _logged_upload_shas(self, owner: str) -> set[str]:
        """The sha256 of every upload the change log still remembers for the
        owner: the blobs of uploads an interrupted erasure already deleted."""
        out: set[str] = set()
        after = 0
        while got := self.engine.read(
            partial(ud.upload_shas_in_log, owner_id=owner, after=after, limit=PAGE)
        ):
            for r in got:
                sha = (r.row or {}).get("sha256")
                if isinstance(sha, str):
                    out.add(sha)
            after = got[-1].id
        return out

    def _erase_blobs(
        self, shas: set[str], cutoff: datetime, progress: Progress | None
    ) -> list[str]:
        def discard(tx: WriteTx, sha256: str) -> bool:
            # Under the blob's lock, no upload row for it can commit between
            # the check that none uses it and the delete; a writer that stored
            # the bytes before, and writes its row after, finds them gone and
            # is refused (store/uploads.py lock_blob).
            upload_q.lock_blob(tx.conn, sha256)
            blobs = self.blobs.in_transaction(tx.conn)
            return blobs.discard(sha256, lambda s: upload_q.is_referenced(tx.conn, s), cutoff)

        deleted = []
        for sha256 in sorted(shas):
            if self.engine.write(partial(discard, sha256=sha256)).value:
                deleted.append(sha256)
                _tick(progress, "blobs", 1)
        return deleted

    def _scrub(self, owner: str, progress: Progress | None) -> int:
        total = 0
        while n := self.engine.write(lambda tx: ud.scrub_changes(tx.conn, owner, PAGE)).value:
            total += n
            _tick(progress, "changes", n)
        return total

    @staticmethod
    def _erase_user_row(tx: WriteTx, owner: str) -> tuple[int, int] | None:
        """The last transaction: (tokens deleted, change rows scrubbed), or None
        when the user has sessions again and another round is needed."""
        if not ud.lock_user(tx.conn, owner):
            raise UserNotFound(owner)  # erased by a concurrent erasure
        if ud.has_sessions(tx.conn, owner):
            return None
        scrubbed = ud.scrub_changes(tx.conn, owner, None)
        tokens, _ = ud.delete_user(tx.conn, owner)
        return tokens, scrubbed

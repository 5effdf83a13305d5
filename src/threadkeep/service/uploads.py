"""Uploads: files attached to a session, bytes in the blob store.

The order of an upload is what makes it crash-safe: the bytes are written
first, durably, and only then the row, in its own transaction with its
change-log row. A crash between the two leaves a blob no row names (collected
later by :meth:`UploadOps.collect_garbage`), never a row without bytes.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from threadkeep.blobs import BlobStore, check_sha256, open_blob_store
from threadkeep.blobs.contract import Source as Source  # re-exported for aio.py
from threadkeep.blobs.contract import check_source
from threadkeep.config import BlobSettings
from threadkeep.errors import BlobGone, InvalidInput
from threadkeep.model.common import Actor, Committed, utcnow
from threadkeep.model.ids import new_id
from threadkeep.model.uploads import (
    DEFAULT_MEDIA_TYPE,
    Upload,
    UploadContent,
    check_filename,
    check_media_type,
)
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor
from threadkeep.store import sessions as session_q
from threadkeep.store import uploads as upload_q
from threadkeep.store.contract import WriteTx


class UploadOps(ServiceBase):
    blob_settings: BlobSettings
    _blob_store: BlobStore | None
    _blob_lock: threading.Lock

    @property
    def blobs(self) -> BlobStore:
        """The blob store the settings name (opened on first use)."""
        if self._blob_store is None:
            with self._blob_lock:
                if self._blob_store is None:
                    self._blob_store = open_blob_store(
                        self.blob_settings, self.engine.sa_engine, self.engine.url
                    )
        return self._blob_store

    def upload(
        self,
        actor: Actor,
        session_id: str,
        data: Source,
        *,
        filename: str,
        media_type: str = DEFAULT_MEDIA_TYPE,
        sha256: str | None = None,
    ) -> Committed[Upload]:
        """Attach a file to a session, streaming its bytes into the blob store.

        Args:
            data: the bytes, as an iterable of ``bytes`` chunks or a binary file
                object; read once, a chunk at a time, never held whole.
            filename: the file's name as the user knows it (not a path).
            media_type: e.g. ``image/png``.
            sha256: the digest the bytes must have; when they do not, nothing
                is stored.

        Raises:
            SessionNotFound: no such session for this actor (checked before any
                byte is read).
            TooLarge: more than ``limits.max_upload_bytes`` bytes.
            ChecksumMismatch: the bytes do not have ``sha256``.
        """
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        name = check_filename(filename)
        media = check_media_type(media_type)
        expected = None if sha256 is None else check_sha256("sha256", sha256)
        check_source(data)
        self.engine.read(lambda c: session_q.get_live_row(c, owner, session_id))
        # Bytes first, durably; the row only once they are there.
        blob = self.blobs.put(
            data, max_bytes=self.limits.max_upload_bytes, expected_sha256=expected
        )
        fields: dict[str, Any] = {
            "id": new_id(),
            "filename": name,
            "media_type": media,
            "size": blob.size,
            "sha256": blob.sha256,
        }

        def insert(tx: WriteTx) -> Upload:
            self._hold_blobs(tx, [blob.sha256])
            return upload_q.insert_upload(tx, owner, session_id, fields)

        return self.engine.write(insert)

    def _hold_blobs(self, tx: WriteTx, shas: list[str]) -> None:
        """Keep these blobs until ``tx`` ends, or refuse it: called before
        ``tx`` writes any row naming them (and before any change row, which
        the log's order needs of a lock; store/changes.py).

        An erasure of another user with the same file may have deleted the
        bytes since they were stored. Under each blob's lock (taken in one
        order) the bytes are either still there, and stay until the rows
        commit, or gone, and nothing is written (store/uploads.py lock_blob).

        Raises:
            BlobGone: a blob was deleted meanwhile; send its bytes again.
        """
        for sha in sorted(shas):
            upload_q.lock_blob(tx.conn, sha)
        blobs = self.blobs.in_transaction(tx.conn)
        for sha in shas:
            if not blobs.exists(sha):
                raise BlobGone(sha)

    def get_upload(self, actor: Actor, upload_id: str) -> Upload:
        """An upload's metadata."""
        owner = check_actor(actor)
        upload_id = args.key("upload_id", upload_id)
        return self.engine.read(
            lambda c: upload_q.get_upload(c, owner, upload_id), single_statement=True
        )

    def list_uploads(self, actor: Actor, session_id: str) -> list[Upload]:
        """A session's uploads, oldest first."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        return self.engine.read(lambda c: upload_q.list_uploads(c, owner, session_id))

    def open_upload(self, actor: Actor, upload_id: str) -> UploadContent:
        """An upload's metadata and its bytes, as a stream of chunks.

        Raises:
            UploadNotFound: no such upload for this actor.
            BlobMissing: the row is there but the blob store lacks its bytes
                (the wrong blob store configured, or bytes deleted by hand).
        """
        found = self.get_upload(actor, upload_id)
        return UploadContent(found, self.blobs.open(found.sha256))

    def delete_upload(self, actor: Actor, upload_id: str) -> Committed[Upload]:
        """Delete an upload's row; its bytes go at the next garbage collection
        once no other upload has the same content."""
        owner = check_actor(actor)
        upload_id = args.key("upload_id", upload_id)
        return self.engine.write(lambda tx: upload_q.delete_upload(tx, owner, upload_id))

    def collect_garbage(self, *, grace_seconds: float | None = None) -> list[str]:
        """Delete the blobs no upload uses any more (and leftovers of interrupted
        uploads) that are older than the grace period; returns their sha256.

        Args:
            grace_seconds: spare blobs stored or stored again more recently
                than this (default: ``blobs.gc_grace_seconds``, an hour). The
                grace is what protects an upload whose bytes are stored but
                whose row is not committed yet.
        """
        grace = self.blob_settings.gc_grace_seconds if grace_seconds is None else grace_seconds
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise InvalidInput("grace_seconds", "must be a number of seconds, 0 or more")
        cutoff = utcnow() - timedelta(seconds=grace)

        def referenced(sha256: str) -> bool:
            return self.engine.read(
                lambda c: upload_q.is_referenced(c, sha256), single_statement=True
            )

        return self.blobs.collect(referenced, cutoff)

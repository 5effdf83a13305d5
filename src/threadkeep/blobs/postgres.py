"""Blobs in the PostgreSQL database itself: one thing to back up, and every
server instance sees the same bytes.

The bytes are rows of at most 1 MiB in ``blob_chunks``, written and read one
chunk at a time (so neither the server nor the database client holds a whole
file), and each blob is one row in ``blobs``; the SQL is in store/blobs.py.
A put is one transaction: a crash leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from threadkeep.blobs.contract import CHUNK, BlobInfo, BlobStore, Hashing, Referenced, Source
from threadkeep.errors import StoreError
from threadkeep.store import blobs as blob_q


class PostgresBlobStore(BlobStore):
    name = "postgres"

    def __init__(self, engine: sa.Engine, *, conn: sa.Connection | None = None) -> None:
        if engine.dialect.name != "postgresql":
            raise StoreError(
                "the postgres blob store keeps bytes in a PostgreSQL database, and this "
                f"store is {engine.dialect.name}: set blobs.backend to 'fs' or 's3' "
                "(docs/blobs.md)"
            )
        self.engine = engine
        # Where the small calls (exists, touch, the delete) run: a caller's
        # transaction (in_transaction), or a connection of their own.
        self._bind: blob_q.Bind = conn if conn is not None else engine

    def in_transaction(self, conn: Any) -> PostgresBlobStore:
        return PostgresBlobStore(self.engine, conn=conn)

    def put(
        self, source: Source, *, max_bytes: int, expected_sha256: str | None = None
    ) -> BlobInfo:
        hashing = Hashing(source, max_bytes, expected_sha256)

        def digest() -> tuple[str, int]:
            assert hashing.sha256 is not None  # the chunks were read to the end
            return hashing.sha256, hashing.size

        created = blob_q.store_blob(self.engine, hashing.regrouped(CHUNK), digest)
        sha256, size = digest()
        return BlobInfo(sha256, size, created)

    def open(self, sha256: str) -> Iterator[bytes]:
        return blob_q.open_blob(self.engine, sha256)

    def exists(self, sha256: str) -> bool:
        return blob_q.blob_exists(self._bind, sha256)

    def touch(self, sha256: str) -> int | None:
        return blob_q.touch_blob(self._bind, sha256)

    def list_blobs(self) -> Iterator[tuple[str, datetime]]:
        return iter(blob_q.list_blobs(self.engine))

    def collect(self, referenced: Referenced, cutoff: datetime) -> list[str]:
        deleted = []
        for sha256, touched in blob_q.list_blobs(self.engine):
            if touched >= cutoff or referenced(sha256):
                continue
            # Asked again at the last moment; the age is re-checked by the
            # delete statement itself.
            if referenced(sha256):
                continue
            if blob_q.delete_blob_if_older(self._bind, sha256, cutoff):
                deleted.append(sha256)
        return deleted

    def discard(self, sha256: str, referenced: Referenced, cutoff: datetime) -> bool:
        # The age is checked by the delete statement itself.
        if referenced(sha256):
            return False
        return blob_q.delete_blob_if_older(self._bind, sha256, cutoff)

    def __repr__(self) -> str:
        return f"PostgresBlobStore({self.engine.url.render_as_string(hide_password=True)!r})"

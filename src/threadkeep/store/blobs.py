"""The SQL of the PostgreSQL blob store (blobs/postgres.py calls these).

A put runs in one transaction: the chunks go in under a fresh ``data_id`` as
they arrive, then one row in ``blobs`` names them by sha256. When that sha256
is already stored, the new chunks are deleted again in the same transaction
and the existing blob is touched instead; two puts of the same bytes at once
serialise on the primary key. A crash mid-put rolls everything back: there
are no half-written blobs to sweep.

Every statement runs inside ``translate_errors``, as the store's own do: a
full disk is :class:`~threadkeep.errors.StorageFull` here too, not a driver
error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from threadkeep.errors import BlobMissing, StoreError
from threadkeep.model.common import utcnow
from threadkeep.model.ids import new_id
from threadkeep.store.tables import blob_chunks, blobs
from threadkeep.store.translate import translate_errors

_INSERT_CHUNK = blob_chunks.insert()

# Where a statement runs: an engine (a connection and transaction of its
# own), or the caller's connection, inside the caller's transaction.
Bind = sa.Engine | sa.Connection


@contextmanager
def _connection(bind: Bind) -> Iterator[sa.Connection]:
    if isinstance(bind, sa.Connection):
        yield bind  # the caller's transaction commits it, or not
        return
    with translate_errors(), bind.connect() as conn, conn.begin():
        yield conn


def store_blob(
    engine: sa.Engine, chunks: Iterable[bytes], digest: Callable[[], tuple[str, int]]
) -> bool:
    """Write ``chunks`` (verified by iterating them to the end), then claim the
    sha256 and size that ``digest`` returns once they are all in. Returns whether
    the blob was new (False: it was there already, and is now touched)."""
    data_id = new_id()
    with translate_errors(), engine.connect() as conn, conn.begin():
        for idx, chunk in enumerate(chunks):
            conn.execute(_INSERT_CHUNK, {"data_id": data_id, "idx": idx, "data": chunk})
        sha256, size = digest()
        # Claim the sha256, or touch the blob already stored (and drop our
        # copy). A concurrent collect can delete that blob between the two
        # statements; the touch then finds nothing and the claim is tried again.
        for _ in range(3):
            now = utcnow()
            claimed = conn.execute(
                pg_insert(blobs)
                .values(sha256=sha256, data_id=data_id, size=size, created_at=now, touched_at=now)
                .on_conflict_do_nothing(index_elements=["sha256"])
                .returning(blobs.c.sha256)
            ).first()
            if claimed is not None:
                return True
            touched = conn.execute(
                blobs.update()
                .where(blobs.c.sha256 == sha256)
                .values(touched_at=now)
                .returning(blobs.c.sha256)
            ).first()
            if touched is not None:
                conn.execute(blob_chunks.delete().where(blob_chunks.c.data_id == data_id))
                return False
        # Inside the transaction: raising rolls the chunks back.
        raise StoreError(f"could not store blob {sha256}: it kept being collected; retry")


def open_blob(engine: sa.Engine, sha256: str) -> Iterator[bytes]:
    """The chunks of a blob, one query each: no connection is held between
    chunks, so a slow reader keeps nothing from the pool."""
    with translate_errors(), engine.connect() as conn:
        row = conn.execute(sa.select(blobs.c.data_id).where(blobs.c.sha256 == sha256)).first()
    if row is None:
        raise BlobMissing(sha256)
    return _chunks(engine, sha256, row.data_id)


def _chunks(engine: sa.Engine, sha256: str, data_id: str) -> Iterator[bytes]:
    c = blob_chunks.c
    q = sa.select(c.data).where(c.data_id == sa.bindparam("d"), c.idx == sa.bindparam("i"))
    count = sa.select(sa.func.count()).where(c.data_id == data_id)
    with translate_errors(), engine.connect() as conn:
        n = conn.execute(count).scalar_one()
    for idx in range(n):
        with translate_errors(), engine.connect() as conn:
            data = conn.execute(q, {"d": data_id, "i": idx}).scalar()
        if data is None:
            raise BlobMissing(sha256)  # collected while being read
        yield bytes(data)


def blob_exists(bind: Bind, sha256: str) -> bool:
    with _connection(bind) as conn:
        q = sa.select(blobs.c.sha256).where(blobs.c.sha256 == sha256)
        return conn.execute(q).first() is not None


def touch_blob(bind: Bind, sha256: str) -> int | None:
    """Make the blob young; its size, or None when there is none. One
    statement, so a concurrent ``delete_blob_if_older`` either deleted it
    first or finds it young."""
    with _connection(bind) as conn:
        return conn.execute(
            blobs.update()
            .where(blobs.c.sha256 == sha256)
            .values(touched_at=utcnow())
            .returning(blobs.c.size)
        ).scalar()


def list_blobs(engine: sa.Engine) -> list[tuple[str, datetime]]:
    with translate_errors(), engine.connect() as conn:
        q = sa.select(blobs.c.sha256, blobs.c.touched_at).order_by(blobs.c.sha256)
        return [(r.sha256, r.touched_at) for r in conn.execute(q)]


def delete_blob_if_older(bind: Bind, sha256: str, cutoff: datetime) -> bool:
    """Delete the blob and its chunks if it was not touched since ``cutoff``, as
    one statement's decision: a put touching it concurrently either commits
    first (the row no longer matches) or waits for this delete, finds no blob,
    and stores the bytes anew."""
    with _connection(bind) as conn:
        data_id = conn.execute(
            blobs.delete()
            .where(blobs.c.sha256 == sha256, blobs.c.touched_at < cutoff)
            .returning(blobs.c.data_id)
        ).scalar()
        if data_id is None:
            return False
        conn.execute(blob_chunks.delete().where(blob_chunks.c.data_id == data_id))
    return True

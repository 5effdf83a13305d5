"""Content-addressed bytes: the blob store behind uploads (docs/blobs.md).

``open_blob_store`` builds the backend the settings name. The S3 backend is
imported only when chosen (boto3 is heavy to import).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from threadkeep.blobs.contract import BlobInfo, BlobStore, check_sha256
from threadkeep.config import BlobSettings, data_dir
from threadkeep.errors import StoreError
from threadkeep.store import pg_url


def default_path(database_url: str) -> Path:
    """Where the fs backend keeps blobs when no path is set: next to the SQLite
    file (``threadkeep.db`` -> ``threadkeep.db-blobs/``, like its -wal file), else
    under the data dir, one directory per database (and schema)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        db = Path(url.database).expanduser()
        return db.with_name(db.name + "-blobs")
    name = f"{url.host or 'local'}-{url.port or 5432}-{url.database or 'db'}"
    schema = pg_url.schema_of(url)
    if schema is not None:
        # Two stores in two schemas of one database are two stores: one's
        # cleanup must never remove bytes that only the other names.
        name += f"-{schema}"
    return data_dir() / "blobs" / name


def fs_path(settings: BlobSettings, database_url: str) -> Path | None:
    """The directory of the fs backend, if ``settings`` choose it for this database."""
    backend = settings.backend
    if backend == "auto":
        backend = "fs" if sa.make_url(database_url).get_backend_name() == "sqlite" else "postgres"
    if backend != "fs":
        return None
    return Path(settings.path).expanduser() if settings.path else default_path(database_url)


def open_blob_store(settings: BlobSettings, engine: sa.Engine, database_url: str) -> BlobStore:
    """The blob store ``settings`` name, for the database of ``engine``."""
    backend = settings.backend
    if backend == "auto":
        backend = "postgres" if engine.dialect.name == "postgresql" else "fs"
    if backend == "fs":
        from threadkeep.blobs.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(settings.path or default_path(database_url))
    if backend == "postgres":
        from threadkeep.blobs.postgres import PostgresBlobStore

        return PostgresBlobStore(engine)
    from threadkeep.blobs.s3 import S3BlobStore

    if not settings.s3_bucket:
        raise StoreError(
            "blobs.backend is 's3' but no bucket is set: set THREADKEEP_BLOBS__S3_BUCKET "
            "(docs/blobs.md)"
        )
    secret = settings.s3_secret_access_key
    return S3BlobStore(
        settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
    )


__all__ = ["BlobInfo", "BlobStore", "check_sha256", "default_path", "open_blob_store"]

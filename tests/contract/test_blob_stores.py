"""The blob store contract, once, run against every backend: the directory on
disk, PostgreSQL, and S3 (a local moto server)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import create_pg_database, drop_pg_database, s3_blob_settings
from threadkeep.blobs import BlobStore, open_blob_store
from threadkeep.blobs.filesystem import FilesystemBlobStore
from threadkeep.config import BlobSettings
from threadkeep.errors import BlobMissing, ChecksumMismatch, InvalidInput, StoreError, TooLarge
from threadkeep.store import open_engine

BIG = 1 << 40
BACKENDS = ("fs", "postgres", "s3")


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[sa.Engine]:
    """One migrated PostgreSQL database for the module (the blob tables are
    emptied before each test: a database per test would triple the run time)."""
    url = create_pg_database()
    engine = open_engine(url)
    try:
        yield engine.sa_engine
    finally:
        engine.close()
        drop_pg_database(url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    s: BlobStore
    if request.param == "fs":
        s = FilesystemBlobStore(tmp_path / "blobs")
    elif request.param == "s3":
        settings = s3_blob_settings(request.getfixturevalue("s3_endpoint"))
        s = open_blob_store(settings, sa.create_engine("sqlite://"), "sqlite://")
    else:
        engine: sa.Engine = request.getfixturevalue("pg_engine")
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM blob_chunks"))
            conn.execute(sa.text("DELETE FROM blobs"))
        s = open_blob_store(BlobSettings(backend="postgres"), engine, str(engine.url))
    try:
        yield s
    finally:
        s.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(store: BlobStore, key: str) -> bytes:
    return b"".join(store.open(key))


def now() -> datetime:
    return datetime.now(UTC)


def test_bytes_go_in_as_chunks_or_a_file_and_come_back_whole(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, an uneven end
    info = store.put([data[:100], data[100:]], max_bytes=BIG)
    assert (info.sha256, info.size, info.created) == (sha(data), len(data), True)
    assert read(store, info.sha256) == data
    assert store.exists(info.sha256)
    again = store.put(io.BytesIO(data), max_bytes=BIG, expected_sha256=sha(data))
    assert (again.sha256, again.created) == (sha(data), False)


def test_empty_bytes_are_a_blob_too(store: BlobStore) -> None:
    info = store.put([], max_bytes=BIG)
    assert (info.sha256, info.size) == (sha(b""), 0)
    assert read(store, info.sha256) == b""


def test_identical_bytes_are_stored_once(store: BlobStore) -> None:
    for _ in range(3):
        store.put([b"same bytes"], max_bytes=BIG)
    store.put([b"other bytes"], max_bytes=BIG)
    assert sorted(k for k, _ in store.list_blobs()) == sorted(
        [sha(b"same bytes"), sha(b"other bytes")]
    )


def test_a_wrong_expected_sha256_stores_nothing(store: BlobStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(ChecksumMismatch) as err:
        store.put([b"the bytes"], max_bytes=BIG, expected_sha256=wrong)
    assert err.value.expected == wrong and err.value.actual == sha(b"the bytes")
    assert "nothing was stored" in str(err.value)
    assert list(store.list_blobs()) == []
    assert not store.exists(sha(b"the bytes"))


def test_more_than_the_limit_stores_nothing(store: BlobStore) -> None:
    with pytest.raises(TooLarge) as err:
        store.put([b"x" * 600, b"x" * 600], max_bytes=1000)
    assert err.value.limit == 1000
    assert list(store.list_blobs()) == []
    exactly = store.put([b"x" * 1000], max_bytes=1000)
    assert exactly.size == 1000


def test_a_source_that_fails_midway_stores_nothing(store: BlobStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"a" * 1000
        raise ConnectionError("the client went away")

    with pytest.raises(ConnectionError):
        store.put(broken(), max_bytes=BIG)
    assert list(store.list_blobs()) == []


def test_bad_sources_are_refused_clearly(store: BlobStore) -> None:
    with pytest.raises(InvalidInput, match="iterable of bytes"):
        store.put(b"raw bytes", max_bytes=BIG)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="chunks must be bytes"):
        store.put(["text"], max_bytes=BIG)  # type: ignore[list-item]
    assert list(store.list_blobs()) == []


def test_a_missing_blob_raises_at_open(store: BlobStore) -> None:
    with pytest.raises(BlobMissing):
        store.open(sha(b"never stored"))
    assert not store.exists(sha(b"never stored"))


def test_collect_deletes_only_old_unreferenced_blobs(store: BlobStore) -> None:
    kept = store.put([b"referenced"], max_bytes=BIG).sha256
    orphan = store.put([b"orphan"], max_bytes=BIG).sha256
    # Young blobs are spared whatever their references: an upload may be
    # between its bytes and its row.
    assert store.collect(lambda s: s == kept, now() - timedelta(hours=1)) == []
    assert store.collect(lambda s: s == kept, now() + timedelta(seconds=1)) == [orphan]
    assert read(store, kept) == b"referenced"
    assert not store.exists(orphan)
    with pytest.raises(BlobMissing):
        store.open(orphan)


def test_storing_bytes_again_makes_the_blob_young(store: BlobStore) -> None:
    """The guard against a concurrent upload of the same bytes: the put that
    finds them already there refreshes their age, so a collection with a cutoff
    before that put spares them."""
    key = store.put([b"shared"], max_bytes=BIG).sha256
    time.sleep(0.05)
    cutoff = now()
    time.sleep(0.05)
    assert store.put([b"shared"], max_bytes=BIG).created is False
    assert store.collect(lambda s: False, cutoff) == []
    assert read(store, key) == b"shared"


def test_touching_a_blob_makes_it_young_without_its_bytes(store: BlobStore) -> None:
    """What an import of an upload row does: the bytes are already stored, so
    it refreshes their age (a collection with an earlier cutoff spares them)
    and learns their size, without sending them again."""
    key = store.put([b"imported"], max_bytes=BIG).sha256
    time.sleep(0.05)
    cutoff = now()
    time.sleep(0.05)
    assert store.touch(key) == len(b"imported")
    assert store.collect(lambda s: False, cutoff) == []
    assert read(store, key) == b"imported"
    # Untouched, the same collection takes it: the touch is what spared it.
    assert store.collect(lambda s: False, now() + timedelta(seconds=1)) == [key]
    assert store.touch(key) is None
    assert store.touch("0" * 64) is None
    assert not store.exists("0" * 64)  # a touch stores nothing
    assert [s for s, _ in store.list_blobs()] == []


def test_collect_rechecks_references_at_the_last_moment(store: BlobStore) -> None:
    """A row that commits between the listing and the delete saves the blob."""
    key = store.put([b"late row"], max_bytes=BIG).sha256
    answers = iter([False, True])  # unreferenced when listed, referenced at delete
    assert store.collect(lambda s: next(answers), now() + timedelta(seconds=1)) == []
    assert read(store, key) == b"late row"


def test_discard_deletes_one_unreferenced_old_blob_and_nothing_else(store: BlobStore) -> None:
    """What erasing a user uses: one blob, the same age and reference rules as
    collect, and no sweeping of other blobs."""
    mine = store.put([b"erase me"], max_bytes=BIG).sha256
    other = store.put([b"someone else's orphan"], max_bytes=BIG).sha256
    shared = store.put([b"shared with a live upload"], max_bytes=BIG).sha256
    later = now() + timedelta(seconds=1)
    assert store.discard(mine, lambda s: False, now() - timedelta(hours=1)) is False  # young
    assert store.discard(shared, lambda s: s == shared, later) is False  # referenced
    assert store.exists(mine) and store.exists(shared)
    assert store.discard(mine, lambda s: False, later) is True
    assert not store.exists(mine)
    assert store.discard(mine, lambda s: False, later) is False  # gone already
    assert store.discard("0" * 64, lambda s: False, later) is False  # never stored
    assert read(store, other) == b"someone else's orphan"
    assert read(store, shared) == b"shared with a live upload"


def test_fs_blobs_fan_out_and_leftovers_are_swept(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "b")
    key = store.put([b"fan out"], max_bytes=BIG).sha256
    assert (tmp_path / "b" / key[:2] / key[2:4] / key).read_bytes() == b"fan out"
    leftover = tmp_path / "b" / "tmp" / "put-crashed"
    leftover.write_bytes(b"half a file")
    assert list(store.list_blobs()) != [] and leftover.exists()
    store.collect(lambda s: True, now() - timedelta(hours=1))
    assert leftover.exists()  # young: maybe a put in progress
    store.collect(lambda s: True, now() + timedelta(seconds=1))
    assert not leftover.exists()
    assert store.exists(key)


def test_the_postgres_backend_refuses_a_sqlite_store(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(StoreError, match=r"set blobs\.backend to 'fs' or 's3'"):
        open_blob_store(BlobSettings(backend="postgres"), engine, str(engine.url))
    engine.dispose()


def test_s3_without_a_bucket_says_which_setting_is_missing() -> None:
    engine = sa.create_engine("sqlite://")
    with pytest.raises(StoreError, match="THREADKEEP_BLOBS__S3_BUCKET"):
        open_blob_store(BlobSettings(backend="s3"), engine, "sqlite://")
    engine.dispose()


def test_the_default_backend_follows_the_engine(db_url: str, tmp_path: Path) -> None:
    """auto: a directory next to the SQLite file, or the PostgreSQL database itself."""
    from threadkeep import Threadkeep
    from threadkeep.blobs.postgres import PostgresBlobStore

    with Threadkeep.open(db_url) as tk:
        if tk.dialect == "sqlite":
            assert isinstance(tk.blobs, FilesystemBlobStore)
            assert tk.blobs.root == tmp_path / "threadkeep.db-blobs"
        else:
            assert isinstance(tk.blobs, PostgresBlobStore)


def test_s3_is_configured_from_threadkeep_env_variables(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadkeep import Actor, Threadkeep
    from threadkeep.blobs.s3 import S3BlobStore
    from threadkeep.config import load_settings

    bucket = s3_blob_settings(s3_endpoint).s3_bucket
    for name, value in {
        "BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
        "S3_PREFIX": "app1/",
    }.items():
        monkeypatch.setenv(f"THREADKEEP_BLOBS__{name}", str(value))
    settings = load_settings()
    assert "test" not in repr(settings.blobs.s3_secret_access_key)  # never printed
    with Threadkeep.open(f"sqlite:///{tmp_path / 'x.db'}", settings=settings) as tk:
        assert isinstance(tk.blobs, S3BlobStore)
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me).value
        up = tk.upload(me, s.id, [b"to the bucket"], filename="f").value
        assert tk.open_upload(me, up.id).read() == b"to the bucket"
        keys = [o["Key"] for o in tk.blobs.client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == [f"app1/blobs/{up.sha256}"]

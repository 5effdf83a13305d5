"""A full disk: writes fail with StorageFull (HTTP 507), nothing of a failed
write is stored, everything acknowledged before it stays, reads go on, and
writes work again once space is freed.

Run on a real small filesystem: a tmpfs mounted for the test (SQLite's file,
and a PostgreSQL tablespace holding a database's tables). Mounting needs
root; elsewhere these tests skip, and under CI=true they fail.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from conftest import _in_ci
from private_pg import PrivatePostgres, find_bindir
from threadkeep import Actor, StorageFull, Threadkeep
from threadkeep.config import BlobSettings, load_settings
from threadkeep.store import tables

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))
from api_helpers import api_client, assert_problem, new_caller

TEXT = "x" * 3000  # a few WAL pages per append: the disk fills in seconds


def _small_disk(where: Path, megabytes: int) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        failed = "no mount command"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0777", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        failed = "" if done.returncode == 0 else done.stderr.strip() or str(done.returncode)
    if failed:
        why = (
            f"a full disk is tested on a small tmpfs, which needs root to mount ({failed}); "
            "run the suite as root to include it"
        )
        if _in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return where


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = _small_disk(tmp_path / "disk", 4)
    try:
        yield disk
    finally:
        _unmount(disk)


def _filler(disk: Path, kilobytes: int) -> Path:
    """Space taken now, to free later."""
    path = disk / "filler"
    path.write_bytes(b"\0" * (kilobytes * 1024))
    return path


def _opened(url: str, **kwargs: Any) -> tuple[Threadkeep, Actor, str]:
    """A store at ``url``, a user of it and a session of that user."""
    tk = Threadkeep.open(url, **kwargs)
    me = Actor(tk.create_user("full").value.id)
    return tk, me, tk.create_session(me).value.id


def _room_again(
    tk: Threadkeep, url: str, me: Actor, sid: str, acked: list[str], refused: list[str]
) -> None:
    """Once space was freed: the next append takes the next seq, and after a
    reopen the history is what was acknowledged, with it."""
    room = {"role": "user", "content": "room again", "client_id": "after"}
    assert tk.append_message(me, sid, room).value.seq == len(acked) + 1
    tk.close()
    reopened = Threadkeep.open(url)
    _check_stored(reopened, me, sid, [*acked, "after"], refused)
    reopened.close()


def _append_until_full(
    tk: Threadkeep, actor: Actor, sid: str, prefix: str, limit: int = 20_000
) -> tuple[list[str], list[str], StorageFull]:
    """Append until the disk is full, then a few more. Returns the client ids
    acknowledged, those refused, and the first refusal."""
    acked: list[str] = []
    refused: list[str] = []
    first: StorageFull | None = None
    for i in range(limit):
        cid = f"{prefix}-{i}"
        try:
            tk.append_message(actor, sid, {"role": "user", "content": TEXT, "client_id": cid})
        except StorageFull as exc:
            refused.append(cid)
            first = first or exc
            if len(refused) >= 3:
                break
        else:
            acked.append(cid)  # after a refusal too: a write may still fit
    assert first is not None, f"the disk never filled in {limit} appends"
    return acked, refused, first


def _check_stored(
    tk: Threadkeep, actor: Actor, sid: str, acked: list[str], refused: list[str]
) -> None:
    """Every acknowledged append stored once, in one contiguous history with
    its change row; nothing of a refused one anywhere."""
    history = tk.get_history(actor, sid)
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    stored = [m.client_id for m in history]
    assert sorted(stored) == sorted(acked)
    assert not set(refused) & set(stored)
    ids = {m.id for m in history}
    with tk.engine.sa_engine.connect() as conn:
        logged = conn.execute(
            sa.select(tables.changes.c.row_key).where(
                tables.changes.c.table_name == "messages",
                tables.changes.c.session_id == sid,
            )
        ).scalars()
        assert sorted(logged) == sorted(ids)


def test_sqlite_on_a_full_disk_refuses_writes_and_keeps_every_acknowledged_one(
    small_disk: Path,
) -> None:
    filler = _filler(small_disk, 1024)
    url = f"sqlite:///{small_disk / 'tk.db'}"
    tk, me, sid = _opened(url)

    acked, refused, first = _append_until_full(tk, me, sid, "one")
    assert "disk is full" in str(first) and "nothing was written" in str(first)
    assert len(acked) > 5
    _check_stored(tk, me, sid, acked, refused)  # reads go on while full

    filler.unlink()
    _room_again(tk, url, me, sid, acked, refused)
    with sqlite3.connect(small_disk / "tk.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_concurrent_writers_on_a_full_disk_are_each_told_and_nothing_refused_is_kept(
    small_disk: Path,
) -> None:
    """Several writers share each commit (group commit): when it fails, every
    writer in it is refused, and none of their rows is stored."""
    _filler(small_disk, 1024)
    tk, me, sid = _opened(f"sqlite:///{small_disk / 'tk.db'}")
    results: dict[int, tuple[list[str], list[str]]] = {}
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            acked, refused, _ = _append_until_full(tk, me, sid, f"w{n}")
            results[n] = (acked, refused)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    acked = [c for a, _ in results.values() for c in a]
    refused = [c for _, r in results.values() for c in r]
    assert len(results) == 4 and refused
    _check_stored(tk, me, sid, acked, refused)
    tk.close()


def test_the_api_answers_507_on_a_full_disk_and_stores_nothing(small_disk: Path) -> None:
    _filler(small_disk, 1024)
    tk, me, sid = _opened(f"sqlite:///{small_disk / 'tk.db'}")
    token = tk.create_token(me, "t").value.token
    _append_until_full(tk, me, sid, "fill")
    before = tk.count_messages(me, sid)

    with api_client(tk) as api:
        r = api.post(
            f"/v1/sessions/{sid}/messages",
            json={"messages": [{"role": "user", "content": TEXT, "client_id": "api-1"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    body = assert_problem(r, 507)
    assert body["type"].endswith("storage-full")
    assert "disk is full" in body["detail"] and "nothing was written" in body["detail"]
    assert tk.count_messages(me, sid) == before
    assert "api-1" not in {m.client_id for m in tk.get_history(me, sid)}
    tk.close()


def test_an_upload_to_a_full_blob_disk_is_refused_and_leaves_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    """The database has room, the upload bytes' directory (blobs.backend =
    fs) does not."""
    blobs = small_disk / "blobs"
    settings = load_settings(blobs=BlobSettings(backend="fs", path=str(blobs)))
    tk, me, sid = _opened(f"sqlite:///{tmp_path / 'tk.db'}", settings=settings)
    big = os.urandom(5 * 1024 * 1024)  # more than the 4 MB disk holds

    with pytest.raises(StorageFull, match="disk is full"):
        tk.upload(me, sid, [big[i : i + 65536] for i in range(0, len(big), 65536)], filename="a")
    assert tk.list_uploads(me, sid) == []
    assert [p for p in blobs.rglob("*") if p.is_file()] == []  # no blob, no temp file

    small = b"fits now" * 1000
    done = tk.upload(me, sid, [small], filename="b").value
    assert tk.open_upload(me, done.id).read() == small
    tk.close()


def test_an_archive_import_whose_spool_finds_the_disk_full_answers_507(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/me/import spools the archive to a temporary file first; the
    database has room, the temporary directory does not."""
    tk = Threadkeep.open(f"sqlite:///{tmp_path / 'tk.db'}")
    me, them = new_caller(tk), new_caller(tk)
    sid = tk.create_session(me.actor).value.id
    noise = [{"role": "user", "content": os.urandom(30_000).hex()} for _ in range(10)]
    tk.append_messages(me.actor, sid, noise)  # an archive that does not compress away
    with api_client(tk) as api:
        archive = api.get("/v1/me/export", headers=me.headers).content
        assert len(archive) > 300_000
        _filler(small_disk, 4 * 1024 - 128)  # leave about 128 KB
        monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
        r = api.post(
            "/v1/me/import",
            content=archive,
            headers={**them.headers, "Content-Type": "application/zip"},
        )
    body = assert_problem(r, 507)
    assert "disk is full" in body["detail"]
    assert tk.list_sessions(them.actor).items == []
    assert [p.name for p in small_disk.iterdir()] == ["filler"]  # the spool is gone
    tk.close()


# --- PostgreSQL: a database whose tables live in a tablespace on the small disk ----
#
# On a server of the test's own (tests/private_pg.py): while the tablespace is
# full the server's checkpoints fail, and so does every CREATE DATABASE on it,
# which on the shared test server broke the tests running beside this one.


@pytest.fixture
def pg_small_disk() -> Iterator[tuple[str, Path]]:
    bindir = find_bindir()
    if bindir is None:
        why = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
        if _in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    # Under /tmp itself: the server's user must reach it, and pytest's own
    # directories are private to the user running the tests.
    disk = _small_disk(Path(tempfile.mkdtemp(prefix="tk-pgdisk-")), 24)
    try:
        shutil.chown(disk, "postgres", "postgres")
        with PrivatePostgres(bindir) as server:
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(f"CREATE TABLESPACE small LOCATION '{disk}'")
                conn.execute("CREATE DATABASE full_disk TABLESPACE small")
            yield server.url.rsplit("/", 1)[0] + "/full_disk", disk
    finally:
        _unmount(disk)
        disk.rmdir()


def test_postgresql_on_a_full_disk_refuses_writes_and_keeps_every_acknowledged_one(
    pg_small_disk: tuple[str, Path],
) -> None:
    url, disk = pg_small_disk
    tk, me, sid = _opened(url)
    try:
        free = shutil.disk_usage(disk).free
        filler = _filler(disk, max(0, free // 1024 - 1536))  # leave about 1.5 MB

        acked, refused, first = _append_until_full(tk, me, sid, "pg")
        assert "disk is full" in str(first)
        assert len(acked) > 5
        _check_stored(tk, me, sid, acked, refused)
        # Upload bytes live in the database here (blobs.backend = auto): refused alike.
        with pytest.raises(StorageFull):
            tk.upload(me, sid, [os.urandom(65536) for _ in range(32)], filename="2 MB")

        filler.unlink()
        # Read once there is room: on a full disk even a read can fail, when
        # the server must write out a dirty page (another process's, such as
        # autovacuum's statistics) to make room for what it reads.
        assert tk.list_uploads(me, sid) == []
    except BaseException:
        tk.close()  # _room_again closes it on the way that passes
        raise
    _room_again(tk, url, me, sid, acked, refused)


def test_a_new_store_on_a_full_disk_is_refused_as_full(small_disk: Path) -> None:
    """Not a traceback from deep in the migration: the same StorageFull a
    write gets, and after space is freed the store opens."""
    filler = _filler(small_disk, 4 * 1024)  # all of it: the write stops at the size
    url = f"sqlite:///{small_disk}/new/tk.db"
    with pytest.raises(StorageFull):
        Threadkeep.open(url)
    filler.unlink()
    tk, me, sid = _opened(url)
    assert tk.append_message(me, sid, {"role": "user", "content": "hello"}).value.seq == 1
    tk.close()

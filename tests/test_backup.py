"""Backup and restore on both engines: a backup taken while another thread
writes, restored into an empty data dir / a fresh database, holds everything
(sessions, messages, the session record, uploads with their bytes), is
consistent, and sends every sync handle issued before it back to a refetch."""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import (
    create_pg_database,
    drop_pg_database,
    row_counts,
    running_in_threads,
    s3_blob_settings,
    skip_behind_a_pooler,
)
from random_writes import make_world, random_writers
from replay_checks import assert_log_rebuilds, assert_views_agree
from threadkeep import Actor, Threadkeep
from threadkeep.backup import MANIFEST, backup_store, restore_store, verify_backup
from threadkeep.config import Settings, load_settings
from threadkeep.errors import BackupCorrupt, BackupError, RestoreTargetNotEmpty
from threadkeep.store import tables
from threadkeep.sync.shapes import Shape

sys.path.insert(0, str(Path(__file__).parent / "api"))

from api_helpers import api_client

BIG = bytes(range(256)) * 12_000  # 3 MB: several chunks in every blob store


pytestmark = pytest.mark.usefixtures("isolated_settings")


@pytest.fixture(autouse=True)
def _direct(request: pytest.FixtureRequest) -> None:
    if "db_url" in request.fixturenames:
        skip_behind_a_pooler(
            request.getfixturevalue("db_url"),
            "backups are refused (tests/test_pgbouncer.py tests that)",
        )


@pytest.fixture
def target(engine_name: str, tmp_path: Path) -> Iterator[Settings]:
    """The restore target: a SQLite file in an empty data dir, or a fresh,
    empty PostgreSQL database; default blob store for each."""
    if engine_name == "sqlite":
        empty = tmp_path / "restored-data"
        yield load_settings(database_url=f"sqlite:///{empty / 'threadkeep.db'}")
        return
    url = create_pg_database()
    try:
        yield load_settings(database_url=url)
    finally:
        drop_pg_database(url)


def fill(tk: Threadkeep) -> dict[str, object]:
    """A user with a session holding one of everything; what to find again."""
    me = Actor(tk.create_user("ada").value.id)
    s = tk.create_session(me, title="the plan", tags=["x"]).value
    tk.append_messages(
        me, s.id, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    )
    tk.replace_todos(me, s.id, [{"content": "write it", "status": "in_progress"}])
    tk.create_snapshot(me, s.id, {"state": {"panel": 3}, "starred": True})
    tk.record_analytics_event(me, s.id, {"event_type": "tokens", "input_tokens": 7})
    tk.set_summary(me, s.id, {"summary": "done"})
    small = tk.upload(me, s.id, [b"small file"], filename="a.txt").value
    big = tk.upload(me, s.id, [BIG], filename="big.bin").value
    return {
        "me": me,
        "session": s.id,
        "uploads": {small.id: b"small file", big.id: BIG},
    }


def found_everything(tk: Threadkeep, want: dict[str, object]) -> None:
    me = want["me"]
    assert isinstance(me, Actor)
    sid = str(want["session"])
    s = tk.get_session(me, sid)
    assert s.title == "the plan" and s.tags == ["x"]
    assert [m.content for m in tk.get_messages(me, sid)] == ["hi", "hello"]
    assert [t.content for t in tk.list_todos(me, sid)] == ["write it"]
    assert [x.state for x in tk.list_snapshots(me, sid)] == [{"panel": 3}]
    assert [e.input_tokens for e in tk.list_analytics_events(me, sid)] == [7]
    assert tk.get_summary(me, sid).summary == "done"
    uploads = want["uploads"]
    assert isinstance(uploads, dict)
    for upload_id, data in uploads.items():
        assert tk.open_upload(me, upload_id).read() == data


def test_a_backup_taken_while_writing_restores_everything_and_stale_handles_refetch(
    db_url: str, target: Settings, tmp_path: Path
) -> None:
    tk = Threadkeep.open(db_url)
    try:
        want = fill(tk)
        me = want["me"]
        assert isinstance(me, Actor)
        token = tk.create_token(me, "ui").value.token
        headers = {"Authorization": f"Bearer {token}"}
        with api_client(tk) as api:
            r = api.get("/v1/shape", params={"table": "messages", "offset": "-1"}, headers=headers)
            assert r.status_code == 200
            handle, offset = r.headers["electric-handle"], r.headers["electric-offset"]
        busy = tk.create_session(me, title="busy").value.id
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            while not stop.is_set():
                tk.append_messages(me, busy, [{"role": "user", "content": f"w{written[0]}"}])
                written[0] += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while written[0] < 20:  # the writer is well under way
                stop.wait(0.01)
            manifest = backup_store(tk, tmp_path / "backup")
        finally:
            stop.set()
            thread.join()
        assert written[0] > manifest.counts["messages"] - 2 > 0
    finally:
        tk.close()

    done = restore_store(tmp_path / "backup", settings=target)

    assert done.blobs_restored == (2 if manifest.engine == "sqlite" else 0)
    with Threadkeep.open(settings=target) as restored:
        found_everything(restored, want)
        # One consistent moment: the busy session's messages are contiguous
        # and its head is the last of them; none is half there.
        got = restored.get_messages(me, busy)
        assert [m.seq for m in got] == list(range(1, len(got) + 1))
        assert restored.get_session(me, busy).head_seq == len(got) >= 20
        assert row_counts(restored)["messages"] == manifest.counts["messages"]
        with api_client(restored) as api:
            stale = api.get(
                "/v1/shape",
                params={"table": "messages", "offset": offset, "handle": handle},
                headers=headers,
            )
            assert stale.status_code == 409
            assert stale.json() == [{"headers": {"control": "must-refetch"}}]
            fresh = api.get(
                "/v1/shape", params={"table": "messages", "offset": "-1"}, headers=headers
            )
            assert fresh.status_code == 200 and fresh.headers["electric-handle"] != handle


def test_restore_refuses_a_target_with_data_unless_forced_and_a_damaged_backup(
    db_url: str, target: Settings, tmp_path: Path
) -> None:
    with Threadkeep.open(db_url) as tk:
        want = fill(tk)
        backup_store(tk, tmp_path / "backup")
        with pytest.raises(BackupError, match="not empty"):
            backup_store(tk, tmp_path / "backup")
    with Threadkeep.open(settings=target) as other:
        other.create_user("somebody else")
        before = row_counts(other)
    with pytest.raises(RestoreTargetNotEmpty, match="--force"):
        restore_store(tmp_path / "backup", settings=target)
    with Threadkeep.open(settings=target) as other:
        assert row_counts(other) == before
    # A damaged backup is refused before anything is written, forced or not.
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    damaged = tmp_path / "backup" / manifest["database_file"]
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(BackupCorrupt, match="sha256"):
        restore_store(tmp_path / "backup", settings=target, force=True)
    with Threadkeep.open(settings=target) as other:
        assert row_counts(other) == before
    damaged.write_bytes(original)
    verify_backup(tmp_path / "backup")

    restore_store(tmp_path / "backup", settings=target, force=True)

    with Threadkeep.open(settings=target) as restored:
        found_everything(restored, want)
        assert [u.name for u in restored.list_users()] == ["ada"]


def test_a_directory_without_a_manifest_is_not_a_backup(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "database.sqlite").write_bytes(b"x")
    with pytest.raises(BackupCorrupt, match=r"no manifest\.json"):
        restore_store(tmp_path / "half", settings=load_settings())


def test_a_sqlite_copy_that_keeps_restarting_under_writes_finishes_in_one_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write between every two steps restarts the copy each time; after a few
    restarts the copy is made in one step (one read transaction), whole."""
    from threadkeep.store import backup as backup_q

    monkeypatch.setattr(backup_q, "_STEP_PAGES", 1)
    with Threadkeep.open(f"sqlite:///{tmp_path / 'src.db'}") as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        tk.append_messages(me, sid, [{"role": "user", "content": "x" * 2000}] * 50)
        steps: list[tuple[int, int]] = []

        def step(done: int, total: int) -> None:
            steps.append((done, total))
            if done < total:  # another connection writes between two steps
                tk.append_messages(me, sid, [{"role": "user", "content": "y" * 2000}])

        backup_q.sqlite_copy(tmp_path / "src.db", tmp_path / "copy.db", step)
    assert steps[-1][0] == steps[-1][1] > 50
    left = [total - done for done, total in steps]
    restarts = sum(1 for a, b in itertools.pairwise(left) if b > a)
    assert restarts >= 3  # and then it finished anyway
    with Threadkeep.open(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        got = copy.get_messages(me, sid)
        assert [m.seq for m in got] == list(range(1, len(got) + 1)) and len(got) >= 50
        assert copy.get_session(me, sid).head_seq == len(got)


def test_with_s3_blobs_the_backup_says_the_bucket_is_backed_up_separately(
    s3_endpoint: str, tmp_path: Path
) -> None:
    blobs = s3_blob_settings(s3_endpoint)
    source = load_settings(database_url=f"sqlite:///{tmp_path / 'src.db'}", blobs=blobs)
    with Threadkeep.open(settings=source) as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        up = tk.upload(me, sid, [b"in the bucket"], filename="b.txt").value
        manifest = backup_store(tk, tmp_path / "backup")
    assert manifest.blobs == "not-included" and manifest.blob_backend == "s3"
    assert not (tmp_path / "backup" / "blobs").exists()
    # Restored next to the same bucket, the uploads read their bytes from it.
    target = load_settings(database_url=f"sqlite:///{tmp_path / 'new' / 'tk.db'}", blobs=blobs)
    done = restore_store(tmp_path / "backup", settings=target)
    assert done.blobs_restored == 0
    with Threadkeep.open(settings=target) as restored:
        assert restored.open_upload(me, up.id).read() == b"in the bucket"


def test_a_backup_taken_during_random_writes_of_every_kind_restores_a_consistent_store(
    db_url: str, target: Settings, tmp_path: Path
) -> None:
    """Two threads run random writes of every kind (tests/random_writes.py:
    uploads, rewinds, purges, imports, retention...) while the backup is
    taken. The restored store is the database at one moment: the log,
    followed from before the writes, rebuilds every synced table; every
    upload it holds has its bytes; search and histories agree."""
    tk = Threadkeep.open(db_url)
    try:
        first = make_world(tk, tmp_path / "files")
        me, writing = first.me, first.tk  # the blob store the writes use
        start = {Shape(t, me.user_id): writing.shape_snapshot(me, t) for t in tables.SYNCED_TABLES}
        with running_in_threads(*random_writers(first)):
            time.sleep(0.5)  # the writers are well under way
            backup_store(writing, tmp_path / "backup")
    finally:
        tk.close()

    restore_store(tmp_path / "backup", settings=target)
    with Threadkeep.open(settings=target) as restored:
        assert_log_rebuilds(restored, me, start)
        for row in restored.shape_snapshot(me, "uploads").rows:
            got = b"".join(restored.open_upload(me, row["id"]))
            assert hashlib.sha256(got).hexdigest() == row["sha256"]
        assert_views_agree(restored, me)


@pytest.mark.parametrize("query", ["", "?schema=chat", "?options=-c%20statement_timeout%3D0"])
def test_pg_tools_commit_durably_whatever_the_databases_default(query: str) -> None:
    """pg_dump and pg_restore run with synchronous_commit on, like every
    threadkeep connection, even where the database's default is off; also
    when the URL sets libpq options of its own (a schema does), which make
    libpq ignore PGOPTIONS. Checked through libpq itself, with psql and the
    connection string and environment pg_restore gets."""
    import subprocess

    from threadkeep.store import backup as backup_q
    from threadkeep.store import pg_url

    url = create_pg_database()
    try:
        name = sa.make_url(url).database
        url = sa.make_url(url).difference_update_query(["schema"]).render_as_string(False)
        url += query
        conninfo, env = backup_q.libpq(url)
        psql = backup_q.pg_tool("psql")
        subprocess.run(
            [psql, conninfo, "-c", f'ALTER DATABASE "{name}" SET synchronous_commit = off'],
            check=True,
            capture_output=True,
        )
        # The URL's own connection string, without the tools' environment.
        plain = {k: v for k, v in env.items() if k != "PGOPTIONS"}
        shown = [
            subprocess.run(
                [psql, c, "-Atc", "SHOW synchronous_commit"],
                check=True,
                capture_output=True,
                text=True,
                env=e,
            ).stdout.strip()
            for c, e in ((pg_url.conninfo(url, with_password=False), plain), (conninfo, env))
        ]
        assert shown == ["off", "on"]
    finally:
        drop_pg_database(url)

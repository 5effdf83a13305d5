"""``threadkeep cleanup``, ``backup`` and ``restore`` on the command line (both
engines), and the retention schedule inside the server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from conftest import (
    create_pg_database,
    drop_pg_database,
    empty_database,
    row_counts,
    skip_behind_a_pooler,
)
from threadkeep import Actor, Threadkeep
from threadkeep.api import create_app
from threadkeep.cli.main import app
from threadkeep.config import RetentionSettings, load_settings
from threadkeep.maintenance import MaintenanceRuntime
from threadkeep.model.common import utcnow
from threadkeep.store import tables

pytestmark = pytest.mark.usefixtures("isolated_settings")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="threadkeep")


def old_snapshot(tk: Threadkeep, me: Actor, sid: str, days: float = 45) -> str:
    snap = tk.create_snapshot(me, sid, {"state": {}}).value.id
    t = tables.snapshots
    with tk.engine.sa_engine.begin() as conn:
        when = utcnow() - timedelta(days=days)
        conn.execute(t.update().where(t.c.id == snap).values(created_at=when, updated_at=when))
    return snap


@pytest.fixture
def target_url(engine_name: str, tmp_path: Path) -> Iterator[str]:
    with empty_database(engine_name, tmp_path / "elsewhere" / "threadkeep.db") as url:
        yield url


def test_cleanup_lists_in_a_dry_run_then_deletes(db_url: str) -> None:
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        snap = old_snapshot(tk, me, sid)
        kept = tk.create_snapshot(me, sid, {"state": {}}).value.id
        stream = tk.start_message(me, sid, {"role": "assistant", "content": "cut"}).value.id
        m = tables.messages
        with tk.engine.sa_engine.begin() as conn:  # its writer died two days ago
            when = utcnow() - timedelta(days=2)
            conn.execute(m.update().where(m.c.id == stream).values(created_at=when))
        tk.sync_state()
        before = row_counts(tk)

    dry = run("cleanup", "--dry-run", "--json", "--database-url", db_url)

    assert dry.exit_code == 0, dry.output
    got = json.loads(dry.stdout)
    assert got["dry_run"] is True and got["snapshots"] == [snap]
    assert got["streams"] == [stream]
    assert got["counts"] == {
        "streams": 1,
        "snapshots": 1,
        "analytics_events": 0,
        "sessions": 0,
        "session_rows": 0,
        "blobs": 0,
    }
    with Threadkeep.open(db_url) as tk:
        assert row_counts(tk) == before

    done = run("cleanup", "--database-url", db_url)

    assert done.exit_code == 0, done.output
    assert "threadkeep cleanup: removed" in done.stdout and snap in done.stdout
    assert "non-starred snapshots after 30 days" in done.stdout
    assert "streams open after 24 hours finished" in done.stdout and stream in done.stdout
    with Threadkeep.open(db_url) as tk:
        assert [s.id for s in tk.list_snapshots(me, sid)] == [kept]
        got_stream = tk.get_message(me, stream)
        assert (got_stream.status, got_stream.content) == ("incomplete", "cut")


def test_backup_and_restore_on_the_command_line(
    db_url: str, target_url: str, tmp_path: Path
) -> None:
    skip_behind_a_pooler(db_url, "backups are refused (tests/test_pgbouncer.py tests that)")
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me, title="kept").value.id
        up = tk.upload(me, sid, [b"bytes"], filename="f.txt").value
    dest = str(tmp_path / "backup")

    made = run("backup", dest, "--database-url", db_url)

    assert made.exit_code == 0, made.output
    assert "backup written" in made.stdout and "1 sessions" in made.stdout
    restored = run("restore", dest, "--database-url", target_url)
    assert restored.exit_code == 0, restored.output
    assert "sync was reset" in restored.stdout
    with Threadkeep.open(target_url) as tk:
        assert tk.get_session(me, sid).title == "kept"
        assert tk.open_upload(me, up.id).read() == b"bytes"
    again = run("restore", dest, "--database-url", target_url)
    assert again.exit_code == 2
    assert "is not empty" in again.stderr and "--force" in again.stderr
    forced = run("restore", dest, "--database-url", target_url, "--force")
    assert forced.exit_code == 0, forced.output


def test_backup_without_pg_dump_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = create_pg_database()
    try:
        Threadkeep.open(url).close()
        monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
        result = run("backup", str(tmp_path / "backup"), "--database-url", url)
    finally:
        drop_pg_database(url)
    assert result.exit_code == 2
    assert "pg_dump is not installed" in result.stderr
    assert "postgresql-client" in result.stderr
    assert not (tmp_path / "backup").exists()  # nothing half-written is left


def test_the_server_applies_the_retention_rules_on_its_schedule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threadkeep.maintenance")
    settings = load_settings(retention=RetentionSettings(run_every_seconds=0.1))
    with Threadkeep.open(f"sqlite:///{tmp_path / 'tk.db'}", settings=settings) as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        old_snapshot(tk, me, sid)
        server = create_app(tk, settings)

        async def serve_a_while() -> None:
            async with server.router.lifespan_context(server):  # as uvicorn runs it
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if "retention removed" in caplog.text:  # logged after the run
                        return
                    await asyncio.sleep(0.05)

        asyncio.run(serve_a_while())
        assert tk.list_snapshots(me, sid) == []
    removed = [r for r in caplog.records if r.getMessage().startswith("retention removed 1 ")]
    assert removed and removed[0].removed["snapshots"] == 1  # type: ignore[attr-defined]


def test_the_first_run_comes_soon_after_start_up_not_an_interval_later(tmp_path: Path) -> None:
    """A server restarted more often than the interval must still apply the
    rules: the first run comes ``first_run_after`` the start (a minute by
    default), then every interval."""
    with Threadkeep.open(f"sqlite:///{tmp_path / 'tk.db'}") as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        old_snapshot(tk, me, sid)
        hourly = RetentionSettings(run_every_seconds=3600)
        assert MaintenanceRuntime(tk, hourly).first_run_after == 60
        often = RetentionSettings(run_every_seconds=5)
        assert MaintenanceRuntime(tk, often).first_run_after == 5  # never later than the interval
        runtime = MaintenanceRuntime(tk, hourly, first_run_after=0.05)

        async def start_and_wait() -> None:
            runtime.start()
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if not tk.list_snapshots(me, sid):
                        return
                    await asyncio.sleep(0.05)
            finally:
                await runtime.stop()

        asyncio.run(start_and_wait())
        assert tk.list_snapshots(me, sid) == []


def test_a_zero_interval_turns_the_schedule_off(tmp_path: Path) -> None:
    with Threadkeep.open(f"sqlite:///{tmp_path / 'tk.db'}") as tk:
        runtime = MaintenanceRuntime(tk, RetentionSettings(run_every_seconds=0))
        assert not runtime.scheduled
        settings = load_settings(retention=RetentionSettings(run_every_seconds=0))
        server = create_app(tk, settings)

        async def start_and_look() -> None:
            async with server.router.lifespan_context(server):
                assert server.state.maintenance._task is None

        asyncio.run(start_and_look())

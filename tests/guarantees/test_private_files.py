"""What threadkeep writes to disk is readable by its own account only.

The files hold people's conversations and uploads. Every directory
threadkeep makes is 0700 and every file 0600, under the usual umask of 022
that would otherwise leave them readable by every account on the machine;
directories that already existed keep their owner's mode. ``threadkeep
doctor`` warns about a database readable by others.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import skip_behind_a_pooler
from threadkeep import Actor, Threadkeep
from threadkeep.backup import backup_store, restore_store
from threadkeep.cli.main import app
from threadkeep.config import load_settings


@pytest.fixture(autouse=True)
def usual_umask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("THREADKEEP_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("THREADKEEP_BLOBS__BACKEND", "fs")
    monkeypatch.delenv("THREADKEEP_DATABASE_URL", raising=False)
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` (``root`` itself as "."),
    with its permission bits."""
    found = {".": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for p in sorted(root.rglob("*")):
        found[p.relative_to(root).as_posix()] = f"{stat.S_IMODE(p.lstat().st_mode):04o}"
    return found


def shared(root: Path) -> dict[str, str]:
    """What under ``root`` is not private: a file other than 0600, a
    directory other than 0700."""
    out = {}
    for name, mode in modes(root).items():
        want = "0700" if (root / name).is_dir() else "0600"
        if mode != want:
            out[name] = mode
    return out


def store_with_an_upload(url: str) -> tuple[Threadkeep, Actor]:
    tk = Threadkeep.open(url)
    actor = Actor(tk.create_user("ada").value.id)
    session = tk.create_session(actor, title="private").value.id
    tk.append_message(actor, session, {"role": "user", "content": "my medical question"})
    tk.upload(actor, session, [b"a scan of a letter"], filename="letter.pdf")
    return tk, actor


def test_a_new_store_its_wal_and_its_blobs_are_private(tmp_path: Path) -> None:
    root = tmp_path / "data"  # does not exist yet: threadkeep makes it
    tk, _ = store_with_an_upload(f"sqlite:///{root}/deep/tk.db")
    try:
        assert {"deep/tk.db", "deep/tk.db-wal", "deep/tk.db-shm"} <= set(modes(root))
        assert any("tk.db-blobs/" in name for name in modes(root))
        assert shared(root) == {}
    finally:
        tk.close()
    assert shared(root) == {}


def test_a_directory_the_user_made_keeps_its_mode(tmp_path: Path) -> None:
    mine = tmp_path / "srv"
    mine.mkdir(mode=0o755)
    tk, _ = store_with_an_upload(f"sqlite:///{mine}/tk.db")
    tk.close()
    found = modes(mine)
    assert found["."] == "0755"
    assert found["tk.db"] == "0600"
    assert {name: m for name, m in shared(mine).items() if name != "."} == {}


def test_exports_backups_and_restores_are_private(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    tk, actor = store_with_an_upload(f"sqlite:///{store}/tk.db")
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    try:
        tk.export_user(actor.user_id, out / "ada.zip")
        backup_store(tk, out / "backups" / "monday")
    finally:
        tk.close()
    restore_store(
        out / "backups" / "monday",
        settings=load_settings(database_url=f"sqlite:///{out}/restored/tk.db"),
    )
    url = ["--database-url", f"sqlite:///{store}/tk.db"]
    runner = CliRunner()
    for args in (
        ["export", "--user", actor.user_id, "--output", str(out / "ada.jsonl")],
        ["export", "--all-users", "--output", str(out / "everyone")],
    ):
        done = runner.invoke(app, [*args, *url])
        assert done.exit_code == 0, done.output
    source = tmp_path / "history.json"
    source.write_text(json.dumps({"id": 1, "messages": [{"role": "user", "content": "hi"}]}))
    done = runner.invoke(
        app,
        ["import", str(source), "--format", "legacy-json", "--report", str(out / "r.json"), *url],
    )
    assert done.exit_code == 0, done.output
    names = set(modes(out))
    for made in (
        "ada.zip",
        "backups/monday/manifest.json",
        "backups/monday/database.sqlite",
        "restored/tk.db",
        "ada.jsonl",
        "r.json",
    ):
        assert made in names, sorted(names)
    assert any(n.startswith("backups/monday/blobs/") for n in names)
    assert any(n.startswith("restored/tk.db-blobs/") for n in names)
    assert any(n.startswith("everyone/") for n in names)
    assert shared(out) == {}


def test_a_backup_is_private_on_either_engine(db_url: str, tmp_path: Path) -> None:
    """PostgreSQL's is written by pg_dump, into a file made private first."""
    skip_behind_a_pooler(db_url, "backups need the server's own address")
    tk, _ = store_with_an_upload(db_url)
    try:
        backup_store(tk, tmp_path / "monday")
    finally:
        tk.close()
    made = modes(tmp_path / "monday")
    assert {"database.sqlite", "database.dump"} & set(made), made
    assert shared(tmp_path / "monday") == {}


def doctor_check(db: Path, name: str) -> dict[str, str]:
    """``threadkeep doctor``'s check ``name`` for the SQLite database ``db``."""
    done = CliRunner().invoke(app, ["doctor", "--json", "--database-url", f"sqlite:///{db}"])
    (check,) = [c for c in json.loads(done.stdout)["checks"] if c["name"] == name]
    return check


def test_doctor_warns_when_the_database_is_readable_by_others(tmp_path: Path) -> None:
    db = tmp_path / "tk.db"
    Threadkeep.open(f"sqlite:///{db}").close()
    assert doctor_check(db, "file modes")["status"] == "ok"
    db.chmod(0o644)  # as an older threadkeep, or a copy, left it
    check = doctor_check(db, "file modes")
    assert check["status"] == "warn"
    assert "tk.db (0644)" in check["detail"]
    assert f"chmod 600 {db} {db}-wal {db}-shm" in check["hint"]


def test_doctor_warns_when_the_blob_directory_is_open_to_others(tmp_path: Path) -> None:
    db = tmp_path / "tk.db"
    tk, _ = store_with_an_upload(f"sqlite:///{db}")
    tk.close()
    blobs = tmp_path / "tk.db-blobs"
    assert doctor_check(db, "blob dir mode")["status"] == "ok"
    blobs.chmod(0o755)
    check = doctor_check(db, "blob dir mode")
    assert check["status"] == "warn"
    assert f"{blobs} (0755)" in check["detail"]
    assert f"chmod -R go-rwx {blobs}" in check["hint"]

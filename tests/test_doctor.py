"""``threadkeep doctor``: one line per check, exit 1 when any fails."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from conftest import write_past_the_index
from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app
from threadkeep.store import sqlite_support


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("THREADKEEP_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("THREADKEEP_DATA_DIR", str(tmp_path))
    for name in ("THREADKEEP_DATABASE_URL", "THREADKEEP_HOST", "THREADKEEP_PORT"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["doctor", *args], prog_name="threadkeep")


def checks(*args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = run(*args, "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    body = json.loads(result.stdout)
    assert body["ok"] == (result.exit_code == 0)
    return result.exit_code, {c["name"]: c for c in body["checks"]}


def set_up(url: str) -> None:
    with Threadkeep.open(url) as tk:
        user = tk.create_user("ada").value
        tk.create_token(Actor(user.id), "laptop")


def test_a_healthy_deployment_passes(db_url: str) -> None:
    set_up(db_url)

    code, found = checks("--database-url", db_url)

    assert code == 0, found
    assert {c["status"] for c in found.values()} == {"ok"}, found
    for name in ("settings", "bind", "database", "schema", "users", "tokens"):
        assert found[name]["status"] == "ok"
    assert found["search index"]["detail"] == "matches the tables (0 rows indexed)"
    if db_url.startswith("sqlite"):
        assert found["sqlite"]["detail"].endswith("with FTS5's trigram tokenizer")
        assert found["journal_mode"]["detail"] == "wal"
        assert found["synchronous"]["detail"] == "full"
        assert found["disk space"]["status"] == "ok"
    else:
        assert "server version" in found["postgresql"]["detail"]
        assert found["fsync"]["status"] == found["synchronous_commit"]["status"] == "ok"
        assert found["pool"]["status"] == "ok"
    text = run("--database-url", db_url)
    assert text.exit_code == 0
    assert "0 failed" in text.stdout
    assert all(line.startswith("ok ") for line in text.stdout.splitlines()[:-1])


def test_an_unmigrated_database_fails_with_the_migrate_hint(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        sqlite3.connect(tmp_path / "threadkeep.db").close()  # an empty file: no schema

    code, found = checks("--database-url", db_url)

    assert code == 1
    assert found["schema"]["status"] == "fail"
    assert "threadkeep migrate" in found["schema"]["hint"]
    assert "users" not in found  # nothing to ask an empty database
    text = run("--database-url", db_url)
    assert text.exit_code == 1
    assert "fail schema" in " ".join(text.stdout.split()) and "threadkeep migrate" in text.stdout


def test_a_missing_sqlite_file_fails_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"

    code, found = checks("--database-url", f"sqlite:///{path}")

    assert code == 1
    assert found["database"]["status"] == "fail"
    assert "threadkeep migrate" in found["database"]["hint"]
    assert not path.exists()


def test_a_sqlite_too_old_fails_first_and_names_the_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_support.sqlite3, "sqlite_version_info", (3, 31, 1))
    path = tmp_path / "t.db"

    code, found = checks("--database-url", f"sqlite:///{path}")

    assert code == 1
    assert found["sqlite"]["status"] == "fail"
    assert "3.35.0 or newer, and this Python uses 3.31.1" in found["sqlite"]["detail"]
    assert "PostgreSQL" in found["sqlite"]["hint"]
    assert "database" not in found and not path.exists()


def test_no_active_token_fails_with_the_token_create_hint(db_url: str) -> None:
    with Threadkeep.open(db_url) as tk:
        user = tk.create_user("ada").value
        token = tk.create_token(Actor(user.id), "old").value
        tk.revoke_token(Actor(user.id), token.id)

    code, found = checks("--database-url", db_url)

    assert code == 1
    assert found["users"]["status"] == "ok"
    assert found["tokens"]["status"] == "fail"
    assert "threadkeep token create" in found["tokens"]["hint"]


def test_a_file_switched_out_of_wal_is_reported(tmp_path: Path) -> None:
    """threadkeep puts the file back in WAL mode whenever it opens it, so the
    mode in force is always wal; what doctor can usefully report is that
    something had switched the file out of it (the mode in its header before
    doctor opened it), with a warning, not a failure."""
    path = tmp_path / "threadkeep.db"
    url = f"sqlite:///{path}"
    set_up(url)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    conn.close()

    code, found = checks("--database-url", url)

    assert code == 0
    assert found["journal_mode"]["status"] == "warn"
    assert "delete" in found["journal_mode"]["detail"]
    assert found["journal_mode"]["hint"]
    with sqlite3.connect(path) as conn:  # back in WAL mode
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    code, found = checks("--database-url", url)
    assert found["journal_mode"]["status"] == "ok"


def test_an_unreachable_postgresql_fails_with_a_clear_hint() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing"

    result = run("--database-url", url)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = next(ln for ln in result.stdout.splitlines() if " database " in f" {ln} ")
    assert line.startswith("fail") and "Connection refused" in line
    assert "database server is running" in line
    code, found = checks("--database-url", url)
    assert code == 1 and found["database"]["status"] == "fail"


def test_a_public_bind_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'threadkeep.db'}"
    set_up(url)
    monkeypatch.setenv("THREADKEEP_HOST", "0.0.0.0")

    code, found = checks("--database-url", url)

    assert code == 0
    assert found["bind"]["status"] == "warn" and "127.0.0.1" in found["bind"]["hint"]


def test_invalid_settings_fail_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADKEEP_PORT", "not-a-port")

    code, found = checks()

    assert code == 1
    assert found["settings"]["status"] == "fail" and "port" in found["settings"]["detail"]


def test_a_search_index_behind_its_table_fails_until_reindex_rebuilds_it(db_url: str) -> None:
    set_up(db_url)
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.list_users()[0].id)
        sid = tk.create_session(me, title="notes").value.id
        tk.append_message(me, sid, {"role": "user", "content": "indexed"})
        lost = write_past_the_index(tk, me, sid, "written by an older process")

    def reindex(*args: str) -> Result:
        return CliRunner().invoke(
            app, ["reindex", "--database-url", db_url, *args], prog_name="threadkeep"
        )

    if not db_url.startswith("sqlite"):
        # Its search index is a column of each row; the title trigrams behind
        # the list's title filter are a table that SQL written past
        # threadkeep can leave behind.
        with Threadkeep.open(db_url) as tk, tk.engine.sa_engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM search_title_grams")
        code, found = checks("--database-url", db_url)
        assert code == 1
        assert found["search index"]["status"] == "fail"
        assert found["search index"]["detail"].startswith(
            "session titles (the list's title filter): 0 of 1 indexed, 1 missing"
        )
        checked = reindex("--check")
        assert checked.exit_code == 1, checked.output
        done = reindex()
        assert done.exit_code == 0, done.output
        assert "1 of 1 indexed" in done.stdout
        assert checks("--database-url", db_url)[1]["search index"]["status"] == "ok"
        return

    code, found = checks("--database-url", db_url)
    assert code == 1
    assert found["search index"]["status"] == "fail"
    assert found["search index"]["detail"].startswith("messages: 1 of 2 indexed, 1 missing")
    assert "threadkeep reindex" in found["search index"]["hint"]

    checked = reindex("--check")
    assert checked.exit_code == 1, checked.output
    assert "messages: 1 of 2 indexed, 1 missing" in checked.stdout
    as_json = json.loads(reindex("--check", "--json").stdout)
    assert as_json["ok"] is False and as_json["rebuilt"] is False
    assert as_json["indexes"][0] == {
        "kind": "messages",
        "index": "search_messages",
        "expected": 2,
        "missing": 1,
        "stale": 0,
    }

    done = reindex()
    assert done.exit_code == 0, done.output
    assert "rebuilt the search index" in done.stdout
    assert "messages: 2 of 2 indexed" in done.stdout
    assert reindex("--check").exit_code == 0
    assert checks("--database-url", db_url)[0] == 0
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.list_users()[0].id)
        assert [h.id for h in tk.search(me, "older process").items] == [lost]


def test_a_schema_whose_search_path_does_not_reach_the_server_fails(
    pg_db: str, request: pytest.FixtureRequest
) -> None:
    """With ?schema=, doctor checks that connections really use it (a pooler
    can drop the search path on the way)."""
    url = sa.make_url(pg_db).update_query_dict({"schema": "chat"})
    url_text = url.render_as_string(hide_password=False)
    set_up(url_text)
    code, found = checks("--database-url", url_text)
    assert code == 0, found
    assert found["schema search path"]["status"] == "ok"
    assert found["schema search path"]["detail"] == "connections use schema 'chat'"
    request.getfixturevalue("search_path_lost")
    code, found = checks("--database-url", url_text)
    assert code == 1
    assert found["schema search path"]["status"] == "fail"
    assert "connections use 'public'" in found["schema search path"]["detail"]

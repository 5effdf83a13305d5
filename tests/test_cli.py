"""The ``threadkeep`` command line, against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

import threadkeep
from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app
from threadkeep.store import backup as backup_q
from threadkeep.store import migrate as migrations

HEAD = migrations.code_head()


pytestmark = pytest.mark.usefixtures("isolated_settings")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="threadkeep")


def raw_engine(url: str) -> sa.Engine:
    """A plain SQLAlchemy engine: reads the database whatever its revision."""
    return backup_q.raw_engine(url)


def revision(url: str) -> str | None:
    engine = raw_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.database_revision(conn)
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = raw_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def stamp(url: str, version: str) -> None:
    """Pretend a newer threadkeep migrated this database."""
    engine = raw_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": version})
    finally:
        engine.dispose()


# --- migrate -------------------------------------------------------------------


def test_migrate_creates_the_schema_and_reports_both_revisions(db_url: str) -> None:
    result = run("migrate", "--database-url", db_url)

    assert result.exit_code == 0, result.output
    assert "revision before: none (empty database)" in result.stdout
    assert f"revision after:  {HEAD} (head)" in result.stdout
    assert revision(db_url) == HEAD
    assert {"users", "sessions", "messages", "changes", "alembic_version"} <= table_names(db_url)
    # The schema is one the library can use without migrating again.
    with Threadkeep.open(db_url, migrate=False) as tk:
        me = Actor(tk.create_user("ada").value.id)
        session = tk.create_session(me, title="after migrate").value
        assert tk.get_session(me, session.id).title == "after migrate"


def test_migrate_twice_changes_nothing_the_second_time(db_url: str) -> None:
    assert run("migrate", "--database-url", db_url).exit_code == 0
    with Threadkeep.open(db_url, migrate=False) as tk:
        tk.create_user("ada", id="ada")

    again = run("migrate", "--database-url", db_url)

    assert again.exit_code == 0, again.output
    assert f"revision before: {HEAD} (head)" in again.stdout
    assert "nothing to do" in again.stdout
    assert revision(db_url) == HEAD
    with Threadkeep.open(db_url, migrate=False) as tk:
        assert [u.id for u in tk.list_users()] == ["ada"]


def test_check_exits_1_on_an_empty_database_and_0_after_migrate(db_url: str) -> None:
    if db_url.startswith("postgresql"):
        # An existing but empty database (SQLite: see the missing-file test).
        before = run("migrate", "--check", "--database-url", db_url)
        assert before.exit_code == 1, before.output
        assert "not up to date" in before.stdout
        assert "threadkeep migrate" in before.stdout
        assert revision(db_url) is None
        assert "alembic_version" not in table_names(db_url)
    else:
        before = run("migrate", "--check", "--database-url", db_url)
        assert before.exit_code == 1, before.output
        assert "not migrated" in before.stdout

    assert run("migrate", "--database-url", db_url).exit_code == 0
    after = run("migrate", "--check", "--database-url", db_url)

    assert after.exit_code == 0, after.output
    assert "up to date" in after.stdout


def test_check_on_an_empty_sqlite_file_exits_1_and_leaves_it_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    engine = raw_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
    engine.dispose()

    result = run("migrate", "--check", "--database-url", f"sqlite:///{path}")

    assert result.exit_code == 1, result.output
    assert "revision: none (empty database)" in result.stdout
    assert table_names(f"sqlite:///{path}") == {"unrelated"}


def test_check_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "missing.db"

    result = run("migrate", "--check", "--database-url", f"sqlite:///{path}")

    assert result.exit_code == 1, result.output
    assert "does not exist" in result.stdout
    assert not path.exists()
    assert not path.parent.exists()


@pytest.mark.parametrize("check", [False, True], ids=["migrate", "check"])
def test_database_newer_than_the_code_exits_2_naming_both_revisions(
    db_url: str, check: bool
) -> None:
    assert run("migrate", "--database-url", db_url).exit_code == 0
    stamp(db_url, "9999")

    result = run("migrate", *(["--check"] if check else []), "--database-url", db_url)

    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("Error: ")
    assert "'9999'" in message
    assert f"'{HEAD}'" in message
    assert "docs/rollback.md" in message
    assert "Traceback" not in result.output
    assert revision(db_url) == "9999"  # untouched


def test_database_url_flag_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = tmp_path / "env.db"
    from_flag = tmp_path / "flag.db"
    monkeypatch.setenv("THREADKEEP_DATABASE_URL", f"sqlite:///{from_env}")

    assert run("migrate", "--database-url", f"sqlite:///{from_flag}").exit_code == 0
    assert from_flag.exists()
    assert not from_env.exists()

    assert run("migrate").exit_code == 0
    assert revision(f"sqlite:///{from_env}") == HEAD


def test_database_url_comes_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-toml.db"
    config = tmp_path / "config.toml"
    config.write_text(f'database_url = "sqlite:///{path}"\n')
    monkeypatch.setenv("THREADKEEP_CONFIG", str(config))

    result = run("migrate")

    assert result.exit_code == 0, result.output
    assert revision(f"sqlite:///{path}") == HEAD


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://localhost/chats", "unsupported database URL"),
        ("sqlite:///:memory:", "needs a SQLite file"),
        ("postgresql://postgres@127.0.0.1:1/nowhere", "database server is running"),
        # /proc/sys takes no new files, even from root.
        ("sqlite:////proc/sys/threadkeep/tk.db", "cannot create the SQLite database"),
        ("sqlite:////proc/sys/tk.db", "cannot create the SQLite database"),
    ],
    ids=["unsupported", "in-memory", "unreachable", "directory cannot be made", "no new files"],
)
def test_a_bad_database_url_is_one_red_line_and_exit_2(url: str, expected: str) -> None:
    result = run("migrate", "--database-url", url)

    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_invalid_setting_names_the_setting_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADKEEP_PORT", "not-a-port")

    result = run("migrate", "--database-url", f"sqlite:///{tmp_path / 'x.db'}")

    assert result.exit_code == 2, result.output
    assert "invalid setting port" in result.stderr
    assert "THREADKEEP_PORT" in result.stderr


def test_a_config_file_that_is_not_toml_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("database_url = \n")
    monkeypatch.setenv("THREADKEEP_CONFIG", str(config))

    result = run("migrate")

    assert result.exit_code == 2, result.output
    assert "not valid TOML" in result.stderr


def test_the_installed_command_prints_no_traceback(db_url: str) -> None:
    """The real process: entry point, stderr, exit code."""
    assert run("migrate", "--database-url", db_url).exit_code == 0
    stamp(db_url, "9999")

    proc = subprocess.run(
        [sys.executable, "-m", "threadkeep.cli", "migrate", "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "'9999'" in proc.stderr
    assert f"'{HEAD}'" in proc.stderr


# --- version and help ------------------------------------------------------------


def test_version_prints_the_package_version_and_schema_head() -> None:
    result = run("version")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"threadkeep {threadkeep.__version__} (schema revision {HEAD})"


def test_no_arguments_shows_the_help() -> None:
    result = run()

    assert "migrate" in result.output
    assert "version" in result.output


# Commands that read a store: a mistyped path must not become a new, empty
# store that the command then reports on as if all were well.
READERS = {
    "backup": ["backup", "{tmp}/bk"],
    "export": ["export", "--all-users", "--output", "{tmp}/out.jsonl"],
    "token list": ["token", "list"],
    "token revoke": ["token", "revoke", "tok-1"],
    "user list": ["user", "list"],
    "user export": ["user", "export", "u1", "{tmp}/u1.zip"],
    "user erase": ["user", "erase", "u1", "--yes"],
    "cleanup": ["cleanup", "--dry-run"],
    "copy": ["copy", "sqlite:///{tmp}/copy.db"],
    "reindex": ["reindex"],
    "reindex --check": ["reindex", "--check"],
}


@pytest.mark.parametrize("command", list(READERS))
def test_a_command_that_reads_a_missing_sqlite_file_fails_and_makes_none(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "typo.db"
    args = [a.format(tmp=tmp_path) for a in READERS[command]]
    done = run(*args, "--database-url", f"sqlite:///{path}")
    assert done.exit_code == 2, done.output
    assert "typo.db does not exist" in done.output, done.output
    assert "threadkeep migrate" in done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nor the data dir

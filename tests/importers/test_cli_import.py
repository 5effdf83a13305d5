"""``threadkeep import`` and ``threadkeep export`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from conftest import row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app

DATA = Path(__file__).parent / "data"


pytestmark = pytest.mark.usefixtures("isolated_settings")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="threadkeep")


def test_dry_run_then_import_then_again_with_report_and_verify(db_url: str, tmp_path: Path) -> None:
    src = str(DATA / "claude-project")
    dry = run("import", src, "--dry-run", "--database-url", db_url)
    assert dry.exit_code == 0, dry.output
    assert "would create 2 session(s)" in dry.output and "nothing was written" in dry.output
    with Threadkeep.open(db_url) as tk:
        assert row_counts(tk)["messages"] == 0
    report = tmp_path / "report.json"
    done = run("import", src, "--verify", "--report", str(report), "--database-url", db_url)
    assert done.exit_code == 0, done.output
    assert "created 2 session(s) (3 with branches), 19 messages" in done.output
    assert "verify: source and database counts match" in done.output
    body = json.loads(report.read_text())
    assert body["summary"]["created"] == 2 and body["summary"]["verified"] is True
    assert any("line 26" in s["where"] for s in body["skipped"])
    again = run("import", src, "--database-url", db_url)
    assert again.exit_code == 0
    assert "unchanged: 2 session(s) were already imported" in again.output


def test_a_failed_session_exits_1_and_names_file_and_record(db_url: str) -> None:
    result = run("import", str(DATA / "legacy"), "--database-url", db_url)
    assert result.exit_code == 1
    assert "failed: chat-43.json[1] messages[1]: unknown role 'wizard'" in result.output


def test_an_ambiguous_or_unknown_source_asks_for_format(db_url: str, tmp_path: Path) -> None:
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    result = run("import", str(odd), "--database-url", db_url)
    assert result.exit_code == 2
    assert "give --format" in result.output


def test_export_to_a_file_and_back_into_another_database(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert run("import", str(DATA / "chatgpt"), "--database-url", first).exit_code == 1
    out = tmp_path / "all.jsonl"
    exported = run("export", "-o", str(out), "--database-url", first)
    assert exported.exit_code == 0, exported.output
    assert "exported 2 session(s), 6 messages" in exported.output
    back = run("import", str(out), "--verify", "--database-url", second)
    assert back.exit_code == 0, back.output
    with Threadkeep.open(second) as tk:
        (user,) = tk.list_users()
        assert len(tk.list_sessions(Actor(user.id)).items) == 2
    md = run("export", "--format", "markdown", "--database-url", first)
    assert "## Mortgage maths" in md.output
    per_user = run("export", "--all-users", "-o", str(tmp_path / "users"), "--database-url", first)
    assert per_user.exit_code == 0
    assert (tmp_path / "users" / "local.jsonl").exists()


def test_an_export_that_fails_midway_leaves_the_earlier_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is written beside its name and renamed when whole: a failed
    export never leaves a file that looks like a finished one."""
    from threadkeep.cli import imports as cli_imports
    from threadkeep.errors import StoreError

    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert run("import", str(DATA / "chatgpt"), "--database-url", url).exit_code == 1
    out = tmp_path / "all.jsonl"
    out.write_text("yesterday's export\n")
    real = cli_imports.export

    def fails_after_the_first_session(tk, actor, stream, **kwargs):  # type: ignore[no-untyped-def]
        def on_session(session, counts):  # type: ignore[no-untyped-def]
            raise StoreError("the database went away")

        return real(tk, actor, stream, **{**kwargs, "on_session": on_session})

    monkeypatch.setattr(cli_imports, "export", fails_after_the_first_session)
    failed = run("export", "-o", str(out), "--database-url", url)
    assert failed.exit_code != 0
    assert "the database went away" in failed.output
    assert out.read_text() == "yesterday's export\n"
    # No partial file beside it (the database's own files aside).
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("a.db")] == ["all.jsonl"]


def test_an_export_to_a_device_writes_it_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert run("import", str(DATA / "chatgpt"), "--database-url", url).exit_code == 1
    done = run("export", "-o", "/dev/null", "--database-url", url)
    assert done.exit_code == 0, done.output
    assert "exported 2 session(s), 6 messages" in done.output
    assert "to /dev/null" in done.output and not Path("/dev/.null.partial").exists()

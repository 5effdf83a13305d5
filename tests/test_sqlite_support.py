"""A Python whose SQLite is too old, or built without FTS5's trigram
tokenizer, gets one clear error before any file is made, not a syntax error
inside the first write."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from threadkeep import Threadkeep
from threadkeep.cli.main import app
from threadkeep.errors import StoreError
from threadkeep.store import sqlite_support


@pytest.mark.parametrize(
    ("version", "fts5", "says"),
    [
        ((3, 31, 1), True, "SQLite 3.35.0 or newer, and this Python uses 3.31.1"),
        ((3, 34, 1), False, "SQLite 3.35.0 or newer, and this Python uses 3.34.1"),
        (
            (3, 40, 1),
            False,
            "SQLite with FTS5 and its trigram tokenizer, which this Python's 3.40.1 lacks",
        ),
    ],
)
def test_what_is_missing_is_named(version: tuple[int, ...], fts5: bool, says: str) -> None:
    assert sqlite_support.problem(version, fts5) == says


def test_the_sqlite_here_is_enough() -> None:
    assert sqlite_support.problem((3, 35, 0), True) is None
    sqlite_support.require()  # the real library of this Python


def test_opening_with_an_old_sqlite_fails_clearly_and_makes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_support.sqlite3, "sqlite_version_info", (3, 31, 1))
    db = tmp_path / "sub" / "t.db"
    with pytest.raises(StoreError, match=r"needs SQLite 3\.35\.0 or newer.*PostgreSQL"):
        Threadkeep.open(f"sqlite:///{db}")
    assert not db.parent.exists()
    done = CliRunner().invoke(app, ["migrate", "--database-url", f"sqlite:///{db}"])
    assert done.exit_code == 2, done.output
    assert "3.31.1" in done.output and "Traceback" not in done.output
    assert not db.parent.exists()

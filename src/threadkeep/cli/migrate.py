"""``threadkeep migrate``: bring the database schema up to date, or check it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console

from threadkeep.cli.errors import EXIT_CHECK_FAILED, reported_errors
from threadkeep.config import load_settings
from threadkeep.store import migrate as migrations
from threadkeep.store import open_engine, shown_url
from threadkeep.store.translate import translate_errors

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help=(
            "The database: sqlite:///path/to/file.db or postgresql://user@host/dbname. "
            "Default: THREADKEEP_DATABASE_URL, then the config file, then a SQLite "
            "file in the user's data directory."
        ),
        show_default=False,
    ),
]


def _revision(rev: str | None, head: str) -> str:
    if rev is None:
        return "none (empty database)"
    return f"{rev} (head)" if rev == head else rev


def missing_sqlite_file(url: str) -> Path | None:
    """The file a sqlite:/// URL names, when it does not exist yet."""
    if not url.startswith("sqlite"):
        return None
    database = sa.make_url(url).database
    if not database or database == ":memory:":
        return None  # open_engine explains what is wrong with it
    path = Path(database).expanduser()
    return None if path.exists() else path


def migrate(
    database_url: DatabaseUrl = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help=(
                "Change nothing: exit 0 when the schema is up to date, 1 when "
                "`threadkeep migrate` has work to do, 2 when the database is newer "
                "than this threadkeep."
            ),
        ),
    ] = False,
) -> None:
    """Apply the schema migrations the database lacks (safe to run again).

    Take a backup first (docs/backup.md): migrations are forward-only, and going
    back means restoring that backup (docs/rollback.md).
    """
    out = Console(highlight=False, soft_wrap=True)
    with reported_errors():
        url = load_settings(database_url=database_url).database_url
        head = migrations.code_head()
        out.print(f"database: {shown_url(url)}", markup=False)
        if check:
            missing = missing_sqlite_file(url)
            if missing is not None:
                out.print(
                    f"[yellow]not migrated:[/] {missing} does not exist; "
                    f"run `threadkeep migrate` to create it at revision {head}"
                )
                raise typer.Exit(EXIT_CHECK_FAILED)
        with translate_errors():
            engine = open_engine(url, migrate=False)  # raises SchemaTooNew
            try:
                if check:
                    with engine.sa_engine.connect() as conn:
                        current = migrations.database_revision(conn)
                    out.print(f"revision: {_revision(current, head)}")
                    if current != head:
                        out.print(
                            f"[yellow]not up to date:[/] code head is {head}; "
                            "run `threadkeep migrate`"
                        )
                        raise typer.Exit(EXIT_CHECK_FAILED)
                    out.print("[green]up to date[/]")
                    return
                before = migrations.upgrade(engine.sa_engine)
                with engine.sa_engine.connect() as conn:
                    after = migrations.database_revision(conn)
            finally:
                engine.close()
        out.print(f"revision before: {_revision(before, head)}")
        out.print(f"revision after:  {_revision(after, head)}")
        if before == after:
            out.print("[green]already up to date; nothing to do[/]")
        else:
            out.print("[green]migrated[/]")

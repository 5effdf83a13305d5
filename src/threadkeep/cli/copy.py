"""``threadkeep copy TARGET``: the whole store into a new database (docs/postgresql.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from threadkeep.cli.backup import progress_bars
from threadkeep.cli.errors import reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import open_store
from threadkeep.config import load_settings
from threadkeep.copy_store import copy_store
from threadkeep.store import shown_url
from threadkeep.store.translate import translate_errors


def copy(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET_URL",
            help=(
                "The new database: postgresql://user@host/dbname (create it first: "
                "createdb) or sqlite:///path/to/new.db. It must hold no threadkeep data."
            ),
        ),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Copy the whole store (every row and every upload's bytes) into a new database.

    The way from the embedded SQLite file to PostgreSQL, or between any two
    databases threadkeep runs on. The source is read in one snapshot, so a
    server may keep writing to it; the copy is the store at that moment. The
    target is written in one transaction and read back against the source
    before it commits: it holds the whole store or nothing. Upload bytes go
    into the target's blob store (blobs.* settings; by default the fs store
    beside a SQLite file, the postgres store in a PostgreSQL database).
    Sync clients of the source refetch when they first reach the target.
    """
    out = Console(highlight=False, soft_wrap=True)
    with reported_errors():
        target_settings = load_settings(database_url=target)
        tk = open_store(database_url, existing=True)
        try:
            out.print(f"copying {shown_url(tk.engine.url)} into {shown_url(target)}", markup=False)
            with progress_bars(out) as progress, translate_errors():
                done = copy_store(tk, target_settings, progress=progress)
        finally:
            tk.close()
    counts = done.counts
    out.print(
        f"[green]copied[/] {counts['users']} users, {counts['sessions']} sessions, "
        f"{counts['messages']} messages, {counts['uploads']} uploads "
        f"({done.blobs_copied} blobs) and {counts['changes']} change-log rows; "
        "every table read back identical"
    )
    if done.missing_blobs:
        out.print(
            f"[yellow]warning:[/] {len(done.missing_blobs)} uploads' bytes were already "
            f"missing from the source's blob store: {', '.join(done.missing_blobs[:3])}"
        )
    out.print(f"point threadkeep at the copy: THREADKEEP_DATABASE_URL={shown_url(target)}")


def register(app: typer.Typer) -> None:
    """Add ``threadkeep copy`` to the root command."""
    app.command("copy")(copy)

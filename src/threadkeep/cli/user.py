"""``threadkeep user create/list/export/erase``: the users of a store, and a
user's data, whole (docs/privacy.md).

All act on the database directly, as an operator (whoever may open the
database is an administrator), so they need no token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from threadkeep.cli.errors import EXIT_CHECK_FAILED, reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import open_store

app = typer.Typer(
    name="user",
    help=(
        "The users of a store, and a user's data, whole: create or list users, "
        "export everything a user owns as one archive, or erase the user "
        "completely (docs/privacy.md)."
    ),
    no_args_is_help=True,
)

UserId = Annotated[str, typer.Argument(metavar="USER_ID", help="The user's id.")]


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A display name (1-200 characters).")],
    id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="ID",
            help="A chosen id (to restore an erased user's archive under its old id). "
            "Default: a new UUID.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user and print its id. Give it sessions with `threadkeep import
    --user ID` (a user archive, say) and tokens with `threadkeep token create
    --user ID`."""
    with reported_errors():
        tk = open_store(database_url)
        try:
            user = tk.create_user(name, id=id).value
        finally:
            tk.close()
    typer.echo(user.id)


@app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """List the users: id, name, when created, and whether disabled (an
    erasure disables a user first)."""
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            users = tk.list_users()
        finally:
            tk.close()
    table = Table("id", "name", "created", "disabled", box=None, pad_edge=False)
    for u in users:
        created = u.created_at.isoformat(timespec="seconds")
        table.add_row(u.id, u.name, created, "yes" if u.disabled else "")
    Console(highlight=False, soft_wrap=True).print(table)


@app.command("export")
def export(
    user_id: UserId,
    dest: Annotated[
        Path,
        typer.Argument(
            metavar="DEST", help="The archive file to write (a .zip); replaced if it exists."
        ),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Export everything USER_ID owns into one zip archive at DEST: a JSONL file per
    table (tokens without their hashes, sessions with the trash), the bytes of every
    upload under blobs/, and manifest.json with counts and a sha256 per file."""
    out = Console(highlight=False, soft_wrap=True, stderr=True)
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            counts = tk.user_row_counts(user_id)
            total = sum(v for k, v in counts.items() if k != "changes")
            with _bar(out) as bar:
                task = bar.add_task(f"exporting {user_id}", total=total or None)
                done = tk.export_user(
                    user_id,
                    dest,
                    progress=lambda what, n: bar.advance(task, n if what != "blobs" else 0),
                )
                bar.update(task, completed=total)
        finally:
            tk.close()
    rows = sum(done.counts.values())
    blobs = sum(1 for name in done.files if name.startswith("blobs/"))
    Console(highlight=False, soft_wrap=True).print(
        f"exported user {user_id}: {rows} rows and {blobs} blobs to {done.path} "
        f"({done.archive_bytes} bytes)",
        markup=False,
    )
    if done.missing_blobs:
        out.print(
            f"warning: {len(done.missing_blobs)} upload(s) have no bytes in the blob store "
            "(listed in manifest.json); check blobs.backend (docs/blobs.md)",
            markup=False,
        )


@app.command("erase")
def erase(
    user_id: UserId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase USER_ID completely: every row it owns (sync clients receive deletes),
    the blobs no other user's upload shares, the change-log rows that carried its
    data, its tokens and the user itself. Cannot be undone: export first."""
    err = Console(highlight=False, soft_wrap=True, stderr=True)
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            user = tk.get_user(user_id)  # UserNotFound before any question
            counts = tk.user_row_counts(user_id)
            if not yes:
                summary = ", ".join(
                    f"{n} {name}" for name, n in counts.items() if n and name != "users"
                )
                err.print(
                    f"This erases user {user.id} ({user.name!r}) and everything it owns"
                    f"{': ' + summary if summary else ''}. It cannot be undone.",
                    markup=False,
                )
                if not typer.confirm("Erase?", default=False, err=True):
                    err.print("nothing was erased", markup=False)
                    raise typer.Exit(EXIT_CHECK_FAILED)
            total = sum(v for k, v in counts.items() if k not in ("users", "api_tokens"))
            with _bar(err) as bar:
                task = bar.add_task(f"erasing {user_id}", total=total or None)
                erased = tk.erase_user(
                    user_id,
                    progress=lambda what, n: bar.advance(task, n if what != "blobs" else 0),
                ).value
                bar.update(task, completed=total)
        finally:
            tk.close()
    rows = sum(erased.rows.values())
    Console(highlight=False, soft_wrap=True).print(
        f"erased user {user_id}: {rows} rows, {len(erased.blobs_deleted)} blobs "
        f"({len(erased.blobs_kept)} shared with other users kept), "
        f"{erased.changes_scrubbed} change-log rows with its data",
        markup=False,
    )


def register(root: typer.Typer) -> None:
    """Add ``threadkeep user ...`` to the root command."""
    root.add_typer(app, name="user")

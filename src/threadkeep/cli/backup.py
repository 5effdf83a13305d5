"""``threadkeep backup DEST`` and ``threadkeep restore SRC`` (docs/backup.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from threadkeep.backup import Progress as ProgressFn
from threadkeep.backup import backup_store, restore_store
from threadkeep.cli.errors import reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import open_store
from threadkeep.config import load_settings
from threadkeep.store import shown_url
from threadkeep.store.translate import translate_errors

_PHASES = {
    "verify": "sha256",
    "database": "database",
    "blobs": "blobs",
    "rows": "rows",
    "compare": "read back",
}
_IN_BYTES = {"verify", "blobs"}


class _Amount(ProgressColumn):
    """Bytes for the phases counted in bytes; pages or tables for the database."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()
        self._items = MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        column = self._bytes if task.fields.get("phase") in _IN_BYTES else self._items
        return column.render(task)


@contextmanager
def progress_bars(out: Console) -> Iterator[ProgressFn]:
    """Rich progress bars, one per phase, fed by a backup's, a restore's or a
    copy's progress calls."""
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        _Amount(),
        TimeRemainingColumn(),
        console=out,
        transient=False,
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(
                    _PHASES.get(phase, phase), total=total or 1, phase=phase
                )
            bars.update(tasks[phase], completed=done if total else 1, total=total or 1)

        yield update


def _counts(counts: dict[str, int]) -> str:
    shown = ("users", "sessions", "messages", "uploads", "upload_blobs")
    return ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in shown if k in counts)


def backup(
    dest: Annotated[
        Path,
        typer.Argument(help="A new (or empty) directory to write the backup into."),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Back up the database and the blob store into a new directory.

    Safe while `threadkeep serve` runs: SQLite is copied with its online backup
    API, PostgreSQL with pg_dump (custom format; install the PostgreSQL client
    tools). Upload bytes from the fs blob store are copied too; the postgres
    blob store is inside the dump; an S3 bucket must be backed up separately.
    A manifest.json lists the schema revision, the row counts and the sha256 of
    every file. Restore with `threadkeep restore`.
    """
    out = Console(highlight=False, soft_wrap=True)
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            out.print(f"backing up {shown_url(tk.engine.url)} into {dest}", markup=False)
            with progress_bars(out) as progress, translate_errors():
                manifest = backup_store(tk, dest, progress=progress)
        finally:
            tk.close()
    out.print(
        f"[green]backup written:[/] {dest} (schema revision {manifest.schema_revision}; "
        f"{_counts(manifest.counts)})"
    )
    if manifest.blobs == "in-database":
        out.print("upload bytes: inside the database dump (postgres blob store)")
    elif manifest.blobs == "not-included":
        out.print(
            "[yellow]upload bytes are NOT in this backup:[/] they are in an S3 bucket; "
            "back the bucket up separately (versioning or replication, docs/blobs.md)"
        )
    if manifest.missing_blobs:
        out.print(
            f"[yellow]warning:[/] {len(manifest.missing_blobs)} uploads' bytes were already "
            f"missing from the blob store: {', '.join(manifest.missing_blobs[:3])}"
        )


def restore(
    src: Annotated[
        Path,
        typer.Argument(help="A directory written by `threadkeep backup`."),
    ],
    database_url: DatabaseUrl = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Overwrite a database (or fs blob store) that already holds data.",
        ),
    ] = False,
) -> None:
    """Restore a backup into the database and blob store (stop the server first).

    Every file is checked against the backup's manifest before anything is
    written. The target must be empty unless --force is given; for PostgreSQL
    it must exist (createdb). Afterwards sync is reset: every client refetches
    its shapes (409 must-refetch), since what they hold may not match the
    restored data.
    """
    out = Console(highlight=False, soft_wrap=True)
    with reported_errors():
        settings = load_settings(database_url=database_url)
        out.print(f"restoring {src} into {shown_url(settings.database_url)}", markup=False)
        with progress_bars(out) as progress, translate_errors():
            done = restore_store(src, settings=settings, force=force, progress=progress)
    m = done.manifest
    out.print(
        f"[green]restored[/] the backup of {m.created_at} (schema revision "
        f"{m.schema_revision}; {_counts(m.counts)}; {done.blobs_restored} blob files)"
    )
    out.print("sync was reset: connected clients refetch their shapes")
    if m.blobs == "not-included":
        out.print(
            "[yellow]upload bytes were not in this backup[/] (S3): point blobs.* at the "
            "bucket, or restore the bucket from its own backup"
        )


def register(app: typer.Typer) -> None:
    """Add ``threadkeep backup`` and ``threadkeep restore`` to the root command."""
    app.command("backup")(backup)
    app.command("restore")(restore)

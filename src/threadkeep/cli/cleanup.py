"""``threadkeep cleanup``: apply the retention rules now (docs/retention.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from threadkeep.cli.errors import reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import open_store
from threadkeep.config import RetentionSettings
from threadkeep.model.retention import RetentionResult

_SHOWN_IDS = 3


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    more = len(ids) - _SHOWN_IDS
    return f"{shown} and {more} more" if more > 0 else shown


def _days(days: float, what: str) -> str:
    return f"{what} after {days:g} days" if days > 0 else f"{what} kept (rule off)"


def _rules(rules: RetentionSettings, grace: float) -> str:
    blobs = f"unused blobs after {grace:g} s" if rules.collect_blobs else "blobs not collected"
    streams = (
        f"streams open after {rules.stream_hours:g} hours finished"
        if rules.stream_hours > 0
        else "open streams left (rule off)"
    )
    return "; ".join(
        (
            streams,
            _days(rules.snapshot_days, "non-starred snapshots"),
            _days(rules.analytics_days, "analytics events"),
            _days(rules.trash_days, "sessions in the trash"),
            blobs,
        )
    )


def render(result: RetentionResult, out: Console) -> None:
    verb = "would remove (dry run, nothing deleted)" if result.dry_run else "removed"
    table = Table(title=f"threadkeep cleanup: {verb}", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("ids")
    table.add_row("streams finished", str(len(result.streams)), _ids(result.streams))
    table.add_row("snapshots", str(len(result.snapshots)), _ids(result.snapshots))
    table.add_row(
        "analytics events", str(len(result.analytics_events)), _ids(result.analytics_events)
    )
    table.add_row("sessions in the trash", str(len(result.sessions)), _ids(result.sessions))
    for name, n in result.session_rows.items():
        table.add_row(f"  {name} in them", str(n), "")
    table.add_row("blobs", str(len(result.blobs)), _ids(result.blobs))
    out.print(table)
    if result.kept_with_branches:
        out.print(
            f"kept {len(result.kept_with_branches)} expired sessions in the trash: a branch "
            f"that is not expired still shares their history ({_ids(result.kept_with_branches)})",
            markup=False,
        )
    if not result.dry_run:
        out.print(f"{result.transactions} transactions; sync clients receive the deletes")


def cleanup(
    database_url: DatabaseUrl = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Delete nothing; list what a run would delete now."),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the result as one JSON object (every id)."),
    ] = False,
) -> None:
    """Apply the retention rules now: delete what has expired.

    Finishes as incomplete the messages left streaming (by default for 24
    hours; their text is kept). Deletes non-starred snapshots, analytics
    events and sessions long in the trash (purged with everything in them),
    then the blobs no upload uses. The rules are the \\[retention] settings
    (THREADKEEP_RETENTION__*): by default 30, 90 and 30 days. Sync clients
    receive every delete. `threadkeep serve` applies the same rules on a
    schedule (retention.run_every_seconds).
    """
    out = Console(highlight=False, soft_wrap=True)
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            if not as_json:
                out.print(
                    f"rules: {_rules(tk.retention_settings, tk.blob_settings.gc_grace_seconds)}",
                    markup=False,
                )
            result = tk.apply_retention(dry_run=dry_run)
        finally:
            tk.close()
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    render(result, out)


def register(app: typer.Typer) -> None:
    """Add ``threadkeep cleanup`` to the root command."""
    app.command("cleanup")(cleanup)

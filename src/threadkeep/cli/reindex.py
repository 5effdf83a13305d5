"""``threadkeep reindex``: check, or rebuild, the SQLite search index.

The index is kept inside every write, so it only drifts when something writes
the tables without keeping it: a threadkeep older than schema revision 0007
still running after another process migrated the file, or a tool writing SQL
directly (docs/rollback.md). A message missing from the index cannot be
found, and a purge of its session fails until the index is rebuilt.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from threadkeep.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import open_store
from threadkeep.model.search import SearchIndexCheck

_NAMES = {
    "search_messages": "messages",
    "search_sessions": "session titles",
    "search_titles": "session titles (the list's title filter)",
    "search_title_grams": "session titles (the list's title filter)",
    "search_tool_events": "tool events",
}


def describe(check: SearchIndexCheck) -> str:
    """One line: what the index holds against what it should."""
    what = _NAMES.get(check.index, check.index)
    line = f"{what}: {check.expected - check.missing:,} of {check.expected:,} indexed"
    if check.missing:
        line += f", {check.missing:,} missing"
    if check.stale:
        line += f", {check.stale:,} stale entries"
    return line


def reindex(
    database_url: DatabaseUrl = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Only compare the index with the tables; change nothing."),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print {"ok": ..., "indexes": [...]} instead.'),
    ] = False,
) -> None:
    """Check or rebuild the search index.

    Without --check, rebuilds the index of message text, session titles and
    tool events from the tables, in one transaction (other writers wait: stop
    `threadkeep serve` first on a large database), then checks it. With
    --check, only compares. Exit code 1 when the index (after a rebuild, the
    rebuilt one) does not match the tables. PostgreSQL computes its search
    index from each row; what it has to check or rebuild is the title
    trigrams behind the list's title filter.
    """
    out = Console(highlight=False, soft_wrap=True)
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            found = tk.check_search_index() if check else tk.rebuild_search_index()
        finally:
            tk.close()
    ok = all(c.ok for c in found)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": ok,
                    "rebuilt": bool(found) and not check,
                    "indexes": [c.model_dump(mode="json") for c in found],
                }
            )
        )
    elif not found:
        out.print("PostgreSQL: the search index is computed from each row; nothing to do")
    else:
        if not check:
            out.print("rebuilt the search index")
        for c in found:
            out.print(describe(c), markup=False)
        if not ok and check:
            out.print("run `threadkeep reindex` to rebuild it (docs/search.md)", markup=False)
    raise typer.Exit(EXIT_OK if ok else EXIT_CHECK_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``threadkeep reindex`` to the root command."""
    app.command("reindex")(reindex)

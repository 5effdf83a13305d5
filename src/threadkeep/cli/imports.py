"""``threadkeep import`` and ``threadkeep export``: histories in and out."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from threadkeep.cli.errors import EXIT_CHECK_FAILED, reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import ensure_local_user, open_store
from threadkeep.errors import InvalidInput
from threadkeep.exporters import FORMATS as EXPORT_FORMATS
from threadkeep.exporters import ExportCounts, export
from threadkeep.importers import FORMATS, detect, import_source
from threadkeep.importers.run import ImportReport, SessionResult
from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor
from threadkeep.model.imports import ImportCounts
from threadkeep.model.sessions import Session
from threadkeep.own_files import atomic_file, make_dirs

UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        metavar="ID",
        help="The user who owns the sessions. Default: the only user (a new 'local' "
        "user on an empty database).",
        show_default=False,
    ),
]


def _actor(tk: Threadkeep, user: str | None) -> Actor:
    if user is None:
        return Actor(ensure_local_user(tk)[0].id)
    return Actor(tk.get_user(user).id)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("[bold]{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def import_(
    path: Annotated[Path, typer.Argument(help="The file or directory to import.")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"The source format: {', '.join(FORMATS)}. Default: detected, when "
            "only one format fits.",
            show_default=False,
        ),
    ] = None,
    user: UserOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Read and check everything, report what would be created, write nothing.",
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="After importing, compare the source's counts of "
            "sessions, messages and events with the database's, per session.",
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="Write the full report as JSON to "
            "FILE: every session, failure (file and line) and skipped record.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Import chat histories: legacy JSON, localStorage dumps, Claude Code,
    ChatGPT, Open WebUI, a threadkeep export, or a threadkeep user archive
    (the zip of `threadkeep user export`, checked whole before anything is
    written, its uploads' bytes included).

    Each source session is written in one transaction: a bad record fails
    that session (the report names its file and line) and the others go on.
    Importing the same source again changes nothing (ids are derived from
    it); a source that grew since gets only what is new. Exit code 1 when a
    session failed or --verify found a difference.
    """
    console = Console(stderr=True, highlight=False)
    with reported_errors():
        if format is not None and format not in FORMATS:
            raise InvalidInput("--format", f"must be one of {', '.join(FORMATS)}")
        fmt = format or detect(path)
        if not path.exists():
            raise InvalidInput("path", f"{path} does not exist")
        with open_store(database_url) as tk:
            actor = _actor(tk, user)
            started = time.monotonic()
            with _progress(console) as bar:
                verb = "checking" if dry_run else "importing"
                task = bar.add_task(f"{verb} {fmt}", total=None, counts="", rate="")
                seen = {"sessions": 0, "messages": 0, "failed": 0}

                def on_session(r: SessionResult) -> None:
                    seen["sessions"] += 1
                    seen["messages"] += r.counts.messages
                    seen["failed"] += r.status == "failed"
                    rate = seen["messages"] / max(time.monotonic() - started, 1e-6)
                    bar.update(
                        task,
                        counts=f"{seen['sessions']} sessions, {seen['messages']} messages, "
                        f"{seen['failed']} failed",
                        rate=f"{rate:,.0f} msg/s",
                    )

                result = import_source(
                    tk,
                    actor,
                    path,
                    fmt,
                    dry_run=dry_run,
                    verify=verify and not dry_run,
                    on_session=on_session,
                )
                bar.update(task, total=1, completed=1)
        if report is not None:
            with atomic_file(report, "w", encoding="utf-8") as f:
                f.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
        _summary(Console(highlight=False), result)
    if not result.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _record_text(t: ImportCounts) -> str:
    """The session-record rows of a count, those there are: ", 3 todos, ..."."""
    names = {
        "todos": "todos",
        "repo_bindings": "repo bindings",
        "summaries": "summaries",
        "uploads": "uploads",
        "records": "other session-record rows",
    }
    got = t.as_dict()
    return "".join(f", {got[k]} {label}" for k, label in names.items() if got[k])


def _summary(console: Console, r: ImportReport) -> None:
    if r.dry_run:
        t = r.totals("would_create")
        console.print(
            f"dry run: would create {r.count('would_create')} session(s) ({t.sessions} with "
            f"branches), {t.messages} messages, {t.tool_events} tool events, "
            f"{t.timeline_events} timeline events{_record_text(t)}; nothing was written",
            soft_wrap=True,  # one line, whatever the terminal: easy to grep
        )
    else:
        t = r.totals("created")
        console.print(
            f"created {r.count('created')} session(s) ({t.sessions} with branches), "
            f"{t.messages} messages, {t.tool_events} tool events, "
            f"{t.timeline_events} timeline events{_record_text(t)}",
            soft_wrap=True,
        )
    for status, verb in (("updated", "updated"), ("would_update", "would add to")):
        if r.count(status):
            t = r.totals(status)
            console.print(
                f"{verb} {r.count(status)} session(s) imported before whose source grew: "
                f"{t.messages} messages, {t.tool_events} tool events, "
                f"{t.timeline_events} timeline events{_record_text(t)}",
                soft_wrap=True,
            )
    unchanged = r.count("unchanged")
    if unchanged:
        console.print(f"unchanged: {unchanged} session(s) were already imported")
    for where, reason in r.failed:
        console.print(f"[red]failed[/red]: {where}: {reason}", markup=True, soft_wrap=True)
    if r.skipped:
        console.print(f"skipped: {len(r.skipped)} record(s) or value(s):")
        for where, reason in r.skipped[:20]:
            console.print(f"  {where}: {reason}", soft_wrap=True, markup=False)
        if len(r.skipped) > 20:
            console.print(f"  ... and {len(r.skipped) - 20} more (see --report)")
    if r.verified is not None:
        bad = [s for s in r.sessions if s.source_counts != s.stored_counts and s.source_counts]
        if r.verified:
            console.print("verify: source and database counts match for every session")
        else:
            console.print(
                f"[red]verify: {len(bad)} session(s) differ, {len(r.failed)} source "
                "session(s) failed and are not in the database[/red]"
            )
            for s in bad:
                console.print(
                    f"  {s.source}: source {s.source_counts}, database {s.stored_counts}",
                    soft_wrap=True,
                    markup=False,
                )


def export_(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Where to write: a file, or "
            "with --all-users a directory (one file per user). Default: stdout.",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help=f"One of {', '.join(EXPORT_FORMATS)}. jsonl is "
            "lossless and re-importable; markdown is for people.",
        ),
    ] = "jsonl",
    session: Annotated[
        list[str] | None,
        typer.Option(
            "--session",
            metavar="ID",
            help="Export this session and its "
            "branches (repeatable). Default: every session of the user.",
            show_default=False,
        ),
    ] = None,
    user: UserOption = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Export every user, one file each.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Export sessions with their branches, messages and events (trash included)."""
    console = Console(stderr=True, highlight=False)
    with reported_errors():
        if format not in EXPORT_FORMATS:
            raise InvalidInput("--format", f"must be one of {', '.join(EXPORT_FORMATS)}")
        if all_users and (output is None or session or user):
            raise InvalidInput("--all-users", "needs --output DIR, and no --user or --session")
        with open_store(database_url, existing=True) as tk:
            if all_users:
                assert output is not None
                make_dirs(output)
                suffix = {"jsonl": ".jsonl", "json": ".json", "markdown": ".md"}[format]
                for u in tk.list_users():
                    _export_one(tk, Actor(u.id), output / f"{u.id}{suffix}", format, None, console)
                return
            actor = _actor(tk, user)
            _export_one(tk, actor, output, format, session or None, console)


def _export_one(
    tk: Threadkeep,
    actor: Actor,
    output: Path | None,
    format: str,
    sessions: list[str] | None,
    console: Console,
) -> None:
    started = time.monotonic()
    # To a file: whole or not at all, so a failed export never leaves a file
    # that looks like a finished one. (A pipe or a device is written as it is.)
    target: contextlib.AbstractContextManager[IO[str]]
    if output is None:
        target = contextlib.nullcontext(sys.stdout)
    elif output.exists() and not output.is_file():
        target = output.open("w", encoding="utf-8")
    else:
        target = atomic_file(output, "w", encoding="utf-8")
    with target as out, _progress(console) as bar:
        task = bar.add_task(f"exporting {actor.user_id}", total=None, counts="", rate="")

        def on_session(s: Session, c: ExportCounts) -> None:
            rate = c.messages / max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                counts=f"{c.sessions} sessions, {c.messages} messages",
                rate=f"{rate:,.0f} msg/s",
            )

        counts = export(tk, actor, out, format=format, session_ids=sessions, on_session=on_session)
        bar.update(task, total=1, completed=1)
    console.print(
        f"exported {counts.sessions} session(s), {counts.messages} messages, "
        f"{counts.tool_events} tool events, {counts.timeline_events} timeline events, "
        f"{counts.records} session-record and upload rows"
        + (f" to {output}" if output is not None else "")
    )


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("export")(export_)

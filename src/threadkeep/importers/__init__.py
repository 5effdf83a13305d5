"""Importers: bring existing histories into threadkeep.

Each format module turns its source into :class:`~threadkeep.model.imports.ImportedSession`
values (or :class:`Failed` / :class:`SkippedItem` report entries);
:func:`run_import` writes each session through the library, one transaction
per source session, and returns an :class:`ImportReport`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from threadkeep.errors import InvalidInput
from threadkeep.importers import (
    chatgpt,
    claude_code,
    legacy,
    openwebui,
    threadkeep_archive,
    threadkeep_jsonl,
)
from threadkeep.importers._common import Failed, SkippedItem, SourceError, SourceItem
from threadkeep.importers.run import ImportReport, Progress, run_import, verify_import
from threadkeep.model.common import Actor
from threadkeep.service.imports import ImportOps


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    looks_like: Callable[[Path], bool]
    read: Callable[[Path, str], Iterator[SourceItem]]
    #: Run before ``read``, with the store (None: a dry run, which writes
    #: nothing): what must be in place before the first session, such as an
    #: archive's file bytes. Raises SourceError to refuse the whole source.
    prepare: Callable[[Path, ImportOps | None], None] | None = None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "threadkeep",
            "threadkeep's own JSONL export (lossless)",
            threadkeep_jsonl.looks_like,
            threadkeep_jsonl.read,
        ),
        Format(
            "threadkeep-archive",
            "a threadkeep user archive: the zip of `threadkeep user export` or "
            "GET /v1/me/export (lossless, with uploads)",
            threadkeep_archive.looks_like,
            threadkeep_archive.read,
            threadkeep_archive.prepare,
        ),
        Format(
            "claude-code",
            "Claude Code transcripts: a project directory of *.jsonl files",
            claude_code.looks_like,
            claude_code.read,
        ),
        Format(
            "chatgpt",
            "ChatGPT data export: conversations.json (or the unzipped folder)",
            chatgpt.looks_like,
            chatgpt.read,
        ),
        Format(
            "open-webui",
            "Open WebUI chat export: chat-export-*.json",
            openwebui.looks_like,
            openwebui.read,
        ),
        Format(
            "legacy-json",
            "legacy JSON snapshots: a directory of chat-*.json files",
            legacy.looks_like,
            legacy.read,
        ),
        Format(
            "localstorage",
            "a browser localStorage dump: JSON object of key -> string",
            legacy.looks_like_local_storage,
            legacy.read_local_storage,
        ),
    )
}


def detect(path: Path) -> str:
    """The format of ``path``, when exactly one format claims it.

    Raises:
        InvalidInput: no format, or more than one, recognises it (say ``--format``).
    """
    if not path.exists():
        raise InvalidInput("path", f"{path} does not exist")
    hits = []
    for f in FORMATS.values():
        try:
            if f.looks_like(path):
                hits.append(f.name)
        except OSError:
            continue
    if len(hits) == 1:
        return hits[0]
    names = ", ".join(FORMATS)
    if not hits:
        raise InvalidInput("format", f"cannot tell the format of {path}; give --format ({names})")
    raise InvalidInput(
        "format", f"{path} could be {' or '.join(hits)}; give --format to choose one"
    )


def import_source(
    tk: ImportOps,
    actor: Actor,
    path: Path,
    format: str,
    *,
    dry_run: bool = False,
    verify: bool = False,
    on_session: Progress | None = None,
) -> ImportReport:
    """Import ``path`` in ``format`` for ``actor``: the format's preparation
    (an archive is checked whole and its file bytes stored), then every
    source session in its own transaction (:func:`run_import`). A source the
    preparation refuses is one failure in the report, and nothing is written."""
    fmt = FORMATS[format]
    if fmt.prepare is not None:
        try:
            fmt.prepare(path, None if dry_run else tk)
        except SourceError as exc:
            report = ImportReport(format, str(path), dry_run)
            report.failed.append((exc.where, exc.reason))
            return report
    return run_import(
        tk,
        actor,
        fmt.read(path, actor.user_id),
        format=format,
        path=str(path),
        dry_run=dry_run,
        verify=verify,
        on_session=on_session,
    )


__all__ = [
    "FORMATS",
    "Failed",
    "Format",
    "ImportReport",
    "SkippedItem",
    "detect",
    "import_source",
    "run_import",
    "verify_import",
]

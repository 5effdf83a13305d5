"""Running an import: one transaction per source session, a report of
everything created, unchanged, failed and skipped, and the count check."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from threadkeep.errors import InvalidInput, NotFound, ThreadkeepError
from threadkeep.importers._common import Failed, SkippedItem, SourceError, SourceItem
from threadkeep.model.common import Actor
from threadkeep.model.imports import ImportCounts, ImportedSession, ImportOutcome
from threadkeep.service.imports import ImportOps


@dataclass
class SessionResult:
    session_id: str
    source: str
    status: str  # created | updated | unchanged | would_create | would_update | failed
    counts: ImportCounts = field(default_factory=ImportCounts)
    error: str | None = None
    # Filled by verify: what the source holds, what the database holds.
    source_counts: ImportCounts | None = None
    stored_counts: ImportCounts | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session_id": self.session_id,
            "source": self.source,
            "status": self.status,
            "counts": self.counts.as_dict(),
        }
        if self.error is not None:
            out["error"] = self.error
        if self.source_counts is not None and self.stored_counts is not None:
            out["verify"] = {
                "source": self.source_counts.as_dict(),
                "database": self.stored_counts.as_dict(),
                "ok": self.source_counts.as_dict() == self.stored_counts.as_dict(),
            }
        return out


@dataclass
class ImportReport:
    format: str
    path: str
    dry_run: bool
    sessions: list[SessionResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    verified: bool | None = None

    def totals(self, status: str) -> ImportCounts:
        total = ImportCounts()
        for s in self.sessions:
            if s.status == status:
                total.add(s.counts)
        return total

    def count(self, status: str) -> int:
        return sum(1 for s in self.sessions if s.status == status)

    @property
    def ok(self) -> bool:
        return not self.failed and self.verified is not False

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "dry_run": self.dry_run,
            "summary": {
                "created": self.count("created"),
                "updated": self.count("updated"),
                "unchanged": self.count("unchanged"),
                "would_create": self.count("would_create"),
                "would_update": self.count("would_update"),
                "failed": len(self.failed),
                "skipped": len(self.skipped),
                "created_rows": self.totals("created").as_dict(),
                "updated_rows": self.totals("updated").as_dict(),
                "would_create_rows": self.totals("would_create").as_dict(),
                "would_update_rows": self.totals("would_update").as_dict(),
                "verified": self.verified,
            },
            "sessions": [s.as_dict() for s in self.sessions],
            "failed": [{"where": w, "reason": r} for w, r in self.failed],
            "skipped": [{"where": w, "reason": r} for w, r in self.skipped],
        }


Progress = Callable[[SessionResult], None]


def run_import(
    tk: ImportOps,
    actor: Actor,
    items: Iterable[SourceItem],
    *,
    format: str,
    path: str,
    dry_run: bool = False,
    verify: bool = False,
    on_session: Progress | None = None,
) -> ImportReport:
    """Import every source session in ``items``; a session that fails is
    reported (where and why) and the others go on."""
    report = ImportReport(format, path, dry_run)
    for item in items:
        if isinstance(item, SkippedItem):
            report.skipped.append((item.where, item.reason))
            continue
        if isinstance(item, Failed):
            report.failed.append((item.where, item.reason))
            result = SessionResult(item.session_id or "", item.where, "failed", error=item.reason)
            report.sessions.append(result)
            if on_session is not None:
                on_session(result)
            continue
        result = _one(tk, actor, item, dry_run, report)
        if verify and result.status in ("created", "updated", "unchanged"):
            _verify_one(tk, actor, item, result)
        report.sessions.append(result)
        if on_session is not None:
            on_session(result)
    if verify:
        report.verified = (
            all(
                s.source_counts == s.stored_counts
                for s in report.sessions
                if s.status in ("created", "unchanged")
            )
            and not report.failed
        )
    return report


def _one(
    tk: ImportOps, actor: Actor, s: ImportedSession, dry_run: bool, report: ImportReport
) -> SessionResult:
    try:
        outcome: ImportOutcome = tk.import_session(actor, s, dry_run=dry_run)
    except SourceError as exc:
        report.failed.append((exc.where, exc.reason))
        return SessionResult(s.id, s.source, "failed", error=str(exc))
    except (InvalidInput, NotFound) as exc:
        # The field of a record error names the file and line (or node).
        report.failed.append((s.source, str(exc)))
        return SessionResult(s.id, s.source, "failed", error=str(exc))
    except ThreadkeepError as exc:
        report.failed.append((s.source, f"{type(exc).__name__}: {exc}"))
        return SessionResult(s.id, s.source, "failed", error=str(exc))
    report.skipped.extend(outcome.skipped)
    if dry_run and outcome.status == "unchanged":
        # Imported before: a write would add what the source holds beyond
        # the database (a transcript that grew).
        try:
            src = source_counts(s)
        except ThreadkeepError as exc:
            report.failed.append((s.source, str(exc)))
            return SessionResult(outcome.session_id, s.source, "failed", error=str(exc))
        db = stored_counts(tk, actor, s)
        if src != db:
            more = ImportCounts(
                max(0, src.sessions - db.sessions),
                max(0, src.messages - db.messages),
                max(0, src.tool_events - db.tool_events),
                max(0, src.timeline_events - db.timeline_events),
            )
            return SessionResult(outcome.session_id, s.source, "would_update", more)
    return SessionResult(outcome.session_id, s.source, outcome.status, outcome.counts)


def source_counts(s: ImportedSession) -> ImportCounts:
    """What the source session holds, counted the way the import writes it."""
    counts = ImportCounts()
    for one in [s, *s.branches]:
        counts.sessions += 1
        for m in one.messages:
            counts.messages += 1
            counts.tool_events += len(m.tool_events)
            counts.timeline_events += len(m.events)
        counts.tool_events += len(one.tool_events)
        counts.timeline_events += len(one.events)
    return counts


def stored_counts(tk: Any, actor: Actor, s: ImportedSession) -> ImportCounts:
    """What the database holds for the session and its branches (own rows)."""
    counts = ImportCounts()
    for one in [s, *s.branches]:
        try:
            row = tk.get_session(actor, one.id)
        except NotFound:
            continue
        counts.sessions += 1
        counts.messages += row.head_seq - (row.fork_seq or 0)
        counts.tool_events += len(tk.list_tool_events(actor, one.id))
        counts.timeline_events += len(tk.list_timeline_events(actor, one.id))
    return counts


def _verify_one(tk: ImportOps, actor: Actor, s: ImportedSession, result: SessionResult) -> None:
    try:
        result.source_counts = source_counts(s)
    except SourceError as exc:
        result.error = str(exc)
        result.source_counts = ImportCounts()
    result.stored_counts = stored_counts(tk, actor, s)


def verify_import(report: ImportReport) -> list[SessionResult]:
    """The sessions whose source and database counts differ."""
    return [
        s
        for s in report.sessions
        if s.source_counts is not None and s.source_counts != s.stored_counts
    ]

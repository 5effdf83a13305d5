"""What a retention run removed (or, in a dry run, would remove)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RetentionResult:
    """The outcome of :meth:`threadkeep.Threadkeep.apply_retention`.

    Every list holds ids (sha256 for blobs), in the order they went. In a dry
    run nothing was deleted and the lists say what a real run would delete now.

    Attributes:
        streams: messages left streaming past ``stream_hours``, finished
            ``incomplete`` with their text (not deleted).
        snapshots: non-starred snapshots past ``snapshot_days``.
        analytics_events: analytics events past ``analytics_days``.
        sessions: sessions in the trash past ``trash_days``, purged whole.
        session_rows: rows purged with those sessions, per table (messages,
            uploads, todos...), the sessions themselves not counted.
        blobs: blobs no upload uses any more, collected.
        kept_with_branches: expired trashed sessions that were kept because a
            branch still shares their history (a live one, or one not expired).
        transactions: how many transactions the run committed.
        txids: their txids (sync clients see each batch as one transaction).
    """

    dry_run: bool
    started_at: datetime
    streams: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    analytics_events: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    session_rows: dict[str, int] = field(default_factory=dict)
    blobs: list[str] = field(default_factory=list)
    kept_with_branches: list[str] = field(default_factory=list)
    transactions: int = 0
    txids: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many of each kind went (or would go)."""
        return {
            "streams": len(self.streams),
            "snapshots": len(self.snapshots),
            "analytics_events": len(self.analytics_events),
            "sessions": len(self.sessions),
            "session_rows": sum(self.session_rows.values()),
            "blobs": len(self.blobs),
        }

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``threadkeep cleanup --json`` prints it)."""
        return {
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "counts": self.counts(),
            "streams": self.streams,
            "snapshots": self.snapshots,
            "analytics_events": self.analytics_events,
            "sessions": self.sessions,
            "session_rows": self.session_rows,
            "blobs": self.blobs,
            "kept_with_branches": self.kept_with_branches,
            "transactions": self.transactions,
            "txids": self.txids,
        }

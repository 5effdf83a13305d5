"""Retention: delete what the rules say has expired (docs/retention.md).

Run by ``threadkeep cleanup`` and on a schedule inside ``threadkeep serve``.
Not scoped to an actor: it is an operator's job over the whole store. What it
deletes reaches sync clients as deletes: every batch is one transaction with
a change-log delete row for each row it removed.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from functools import partial

import sqlalchemy as sa

from threadkeep.config import RetentionSettings
from threadkeep.errors import InvalidInput, InvalidState, MessageNotFound
from threadkeep.model.common import utcnow
from threadkeep.model.messages import MessageStatus
from threadkeep.model.retention import RetentionResult
from threadkeep.service.uploads import UploadOps
from threadkeep.store import retention as retention_q
from threadkeep.store import streaming as streaming_q
from threadkeep.store.tables import analytics_events, snapshots


class RetentionOps(UploadOps):
    retention_settings: RetentionSettings

    def apply_retention(
        self, *, dry_run: bool = False, rules: RetentionSettings | None = None
    ) -> RetentionResult:
        """Delete what has expired: non-starred snapshots, old analytics events,
        sessions long in the trash (purged whole), and unused blobs. First,
        finish ``incomplete`` the messages left streaming for longer than
        ``rules.stream_hours`` (their writer died; their text is kept).

        Starred snapshots, rows younger than their rule, and sessions that are
        not in the trash are never touched. Deletes go in batches of
        ``rules.batch_size`` rows (a purged session is one transaction), each
        committed with its change-log deletes, so sync clients drop the rows.

        Args:
            dry_run: delete nothing; the result lists what a real run would
                delete now.
            rules: the rules to apply (default: the ``[retention]`` settings
                this store was opened with).

        Returns:
            What went (or would go): ids per kind, rows purged per table.
        """
        if not isinstance(dry_run, bool):
            raise InvalidInput("dry_run", "must be true or false")
        if rules is not None and not isinstance(rules, RetentionSettings):
            raise InvalidInput("rules", "must be a RetentionSettings")
        rules = rules or self.retention_settings
        now = utcnow()
        result = RetentionResult(dry_run=dry_run, started_at=now)
        if rules.stream_hours > 0:
            cutoff = now - timedelta(hours=rules.stream_hours)
            result.streams.extend(self._finish_abandoned_streams(cutoff, rules, result))
        for table, days, found in (
            (snapshots, rules.snapshot_days, result.snapshots),
            (analytics_events, rules.analytics_days, result.analytics_events),
        ):
            if days > 0:
                found.extend(self._expire_rows(table, now - timedelta(days=days), rules, result))
        purged: set[str] = set()
        if rules.trash_days > 0:
            purged = self._purge_trash(now - timedelta(days=rules.trash_days), result)
        if rules.collect_blobs:
            result.blobs.extend(self._unused_blobs(purged) if dry_run else self.collect_garbage())
        return result

    def _expire_rows(
        self, table: sa.Table, cutoff: datetime, rules: RetentionSettings, result: RetentionResult
    ) -> list[str]:
        out: list[str] = []
        after: str | None = None
        while True:
            # Keyset paging on the id: every batch looks past the previous one,
            # so a row that stopped being expired cannot be looked at twice.
            ids = self.engine.read(
                partial(
                    retention_q.expired_ids,
                    table=table,
                    cutoff=cutoff,
                    limit=rules.batch_size,
                    after=after,
                ),
                single_statement=True,
            )
            if not ids:
                return out
            after = ids[-1]
            if result.dry_run:
                out.extend(ids)
                continue
            done = self.engine.write(
                partial(retention_q.delete_expired, table=table, ids=ids, cutoff=cutoff)
            )
            out.extend(done.value)
            result.txids.append(done.txid)
            result.transactions += 1

    def _finish_abandoned_streams(
        self, cutoff: datetime, rules: RetentionSettings, result: RetentionResult
    ) -> list[str]:
        """Finish ``incomplete`` the messages streaming since before ``cutoff``,
        text kept. Each is finished as its writer would have finished it (the
        same guarded UPDATE, logged, indexed for search), in its own write: a
        writer still alive that finishes it first wins, and it is skipped."""
        out: list[str] = []
        after: tuple[datetime, str] | None = None
        while True:
            found = self.engine.read(
                partial(
                    retention_q.abandoned_streams,
                    cutoff=cutoff,
                    limit=rules.batch_size,
                    after=after,
                ),
                single_statement=True,
            )
            if not found:
                return out
            after = found[-1][:2]
            for _, message_id, owner_id in found:
                if result.dry_run:
                    out.append(message_id)
                    continue
                try:
                    done = self.engine.write(
                        partial(
                            streaming_q.finish,
                            owner_id=owner_id,
                            message_id=message_id,
                            status=MessageStatus.INCOMPLETE,
                            fields={},
                            max_bytes=self.limits.max_message_bytes,
                        )
                    )
                except (InvalidState, MessageNotFound):
                    continue  # finished or purged since the look
                out.append(message_id)
                result.txids.append(done.txid)
                result.transactions += 1

    def _purge_trash(self, cutoff: datetime, result: RetentionResult) -> set[str]:
        """Purge the sessions in the trash since before ``cutoff``. A session
        with branches can only go after them, so branches go first, and a
        session a live (or younger) branch depends on is kept."""
        expired = self.engine.read(lambda c: retention_q.expired_trash(c, cutoff))
        if not expired:
            return set()
        branches = self.engine.read(lambda c: retention_q.branches_of(c, expired))
        order: list[str] = []
        chosen: set[str] = set()
        pending = list(expired)
        while True:  # leaves first; then whoever's branches are all chosen
            ready = [s for s in pending if all(b in chosen for b in branches.get(s, ()))]
            if not ready:
                break
            order.extend(ready)
            chosen.update(ready)
            pending = [s for s in pending if s not in chosen]
        result.kept_with_branches.extend(pending)
        if result.dry_run:
            result.sessions.extend(order)
            result.session_rows.update(self._rows_in_sessions(order))
            return chosen
        rows: Counter[str] = Counter()
        purged: set[str] = set()
        for sid in order:
            done = self.engine.write(
                partial(retention_q.purge_expired_session, session_id=sid, cutoff=cutoff)
            )
            if done.value is None:  # restored, purged or branched meanwhile
                continue
            rows.update(done.value)
            purged.add(sid)
            result.sessions.append(sid)
            result.txids.append(done.txid)
            result.transactions += 1
        result.session_rows.update(sorted(rows.items()))
        return purged

    def _rows_in_sessions(self, session_ids: list[str]) -> dict[str, int]:
        return self.engine.read(lambda c: retention_q.rows_in_sessions(c, session_ids))

    def _unused_blobs(self, purged: set[str]) -> list[str]:
        """What a garbage collection would delete once ``purged`` are gone."""
        cutoff = utcnow() - timedelta(seconds=self.blob_settings.gc_grace_seconds)
        out = []
        for sha256, touched in self.blobs.list_blobs():
            if touched >= cutoff:
                continue
            holders = self.engine.read(
                partial(retention_q.sessions_of_blob, sha256=sha256), single_statement=True
            )
            if holders <= purged:
                out.append(sha256)
        return out

"""What the service layer may ask of a store, whatever the engine.

A store runs *write functions* and *read functions*. A write function gets a
:class:`WriteTx`: a connection inside an open transaction, the time of the
write, and a buffer for change-log rows. The engine commits the function's
statements together with its change-log rows, atomically, and returns the
function's result with the transaction id (:class:`Committed`).

The engines differ in how they get there (SQLite: one writer, group commit;
PostgreSQL: a pool, row locks, offsets assigned after commit) and in a few SQL
fragments; those differences live in ``sqlite.py`` and ``postgres.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from threadkeep.model.common import Committed

T = TypeVar("T")


@dataclass
class ChangeRow:
    table: str
    key: str
    op: str
    row: dict[str, Any] | None
    owner_id: str
    session_id: str | None


@dataclass
class WriteTx:
    """The context of one operation's transaction."""

    conn: sa.Connection
    now: datetime
    store: StoreEngine
    changes: list[ChangeRow] = field(default_factory=list)
    # Set by an operation that wrote nothing because it replays an earlier one
    # (an idempotent retry): the engine then answers with the original txid.
    replay_txid: int | None = None
    # SQLite knows the txid before the operation runs; PostgreSQL writes it
    # with a SQL expression (StoreEngine.txid_sql) and leaves this None.
    txid: int | None = None

    # Set by the engine: writes buffered change rows now, inside the open
    # transaction, with their final offsets (see flush_changes).
    spill: Callable[[list[ChangeRow]], None] | None = None
    # Ids of messages this operation inserted that the engine must still enter
    # into its search index, in this transaction, before any operation that
    # may change them (engines whose database keeps the index itself leave it
    # empty; see StoreEngine.indexes_by_itself and StoreEngine.write).
    unindexed: list[str] = field(default_factory=list)

    def log(
        self,
        table: str,
        key: str,
        op: str,
        row: dict[str, Any] | None,
        owner_id: str,
        session_id: str | None,
    ) -> None:
        """Record a row change; it is written to ``changes`` in this transaction."""
        self.changes.append(ChangeRow(table, key, op, row, owner_id, session_id))

    def flush_changes(self) -> None:
        """Write the change rows logged so far now, still in this transaction,
        and forget them: a long operation (an import of a huge session) then
        holds one chunk of change rows in memory, not all of them. Commits
        and rolls back with the rest of the transaction."""
        if self.spill is not None and self.changes:
            self.spill(self.changes)
            self.changes = []


WriteFn = Callable[[WriteTx], T]
ReadFn = Callable[[sa.Connection], T]


class StoreEngine(abc.ABC):
    """One database, one engine. Service code holds one of these."""

    dialect: str
    url: str
    # PostgreSQL: the schema the URL gives threadkeep (store/pg_url.py); None
    # for the connection's default (``public``) and on SQLite.
    schema: str | None = None
    # PostgreSQL through a transaction pooler (``?pgbouncer=true``,
    # store/pg_connect.py).
    pooled: bool = False
    # Called (with no arguments, on the committing thread) after every durable
    # commit: sync wakes its live readers from here. Must be cheap and must not
    # raise; a listener that does is ignored, the write has already succeeded.
    _commit_listeners: tuple[Callable[[], None], ...] = ()

    def add_commit_listener(self, fn: Callable[[], None]) -> None:
        self._commit_listeners = (*self._commit_listeners, fn)

    def remove_commit_listener(self, fn: Callable[[], None]) -> None:
        self._commit_listeners = tuple(f for f in self._commit_listeners if f is not fn)

    def _committed(self) -> None:
        for fn in self._commit_listeners:
            try:
                fn()
            except Exception:
                pass

    def change_channel(self) -> Any:
        """A cross-process commit notifier (``store/notify.py``), or None when
        the engine has none (SQLite: other processes are seen by polling)."""
        return None

    def snapshot_read(self, fn: ReadFn[T]) -> T:
        """Run ``fn`` on a snapshot in which the change log is numbered exactly
        up to the data it shows: every change visible in the snapshot has an
        offset, and every change committed after it will get a larger one. A
        sync snapshot read this way, followed by ``offset > last_offset``, neither
        misses nor repeats a change. SQLite numbers at commit, so a plain read
        is such a snapshot."""
        return self.read(fn)

    @abc.abstractmethod
    def write(self, fn: WriteFn[T], *, only_inserts: bool = False) -> Committed[T]:
        """Run ``fn`` in a write transaction with its change-log rows; commit durably.

        ``only_inserts``: the caller promises that ``fn`` writes new rows (and
        bumps counters) but never updates or deletes a message. An engine
        that indexes new messages itself may then index those of several such
        operations of one commit together (SQLite: one FTS5 segment per
        commit instead of one per operation)."""

    @abc.abstractmethod
    def read(self, fn: ReadFn[T], *, single_statement: bool = False) -> T:
        """Run ``fn`` on a consistent snapshot. With ``single_statement`` the
        caller promises ``fn`` runs one statement, which is a snapshot by itself:
        the engine may then skip opening a transaction (two round trips on
        PostgreSQL)."""

    @abc.abstractmethod
    def prepare_changes_read(self) -> None:
        """Make every committed change readable by offset (PostgreSQL assigns offsets
        after commit; SQLite has nothing to do)."""

    @abc.abstractmethod
    def fold(self, column: sa.ColumnElement[Any], sigma: bool = True) -> sa.ColumnElement[str]:
        """``column`` case-folded (Unicode-aware). The title filter folds both
        the titles and the text it looks for with it, so a title is found by
        its own text in any case. SQLite's is Python's ``str.casefold``;
        PostgreSQL (before 18) has no case folding, and its is ``lower()``
        with final sigma folded, which keeps ``ß`` and ligatures as they are.
        ``sigma=False``: the text holds no sigma, so an engine may skip
        folding final sigma, which only such a text could tell apart."""

    @abc.abstractmethod
    def carries_tag(self, session: sa.ColumnCollection[str, Any]) -> sa.ColumnElement[bool]:
        """SQL that is true when the session row ``session`` carries the tag
        bound as ``tag`` (its owner bound as ``owner``), tested as the list
        walks past the row: whichever of the row's own ``tags`` and
        ``session_tags`` is the cheaper test on this engine."""

    #: Whether the database keeps the message search index by itself, inside
    #: the writing statement (PostgreSQL: a generated column). When False, code
    #: that inserts messages records their ids in ``WriteTx.unindexed`` and the
    #: engine indexes them with one statement: still in the same transaction,
    #: but not row by row (see revision 0007).
    indexes_by_itself = True

    #: Whether the planner knows that a subquery's rows come out in the order
    #: of its ORDER BY, so that a query over the first rows of the session
    #: list need not sort them again. PostgreSQL does; SQLite (3.40) sorts
    #: them again, and there the list's tag walk is bounded another way
    #: (store/sessions.py ``_walk_window``).
    keeps_subquery_order = True

    #: Whether :meth:`append_at_once` is implemented.
    supports_append_at_once = False

    def append_at_once(
        self, owner_id: str, session_id: str, rows: list[dict[str, Any]], now: datetime
    ) -> tuple[int, int] | None:
        """Optionally, a plain append of message ``rows`` (as
        store/messages.py ``message_rows`` makes them; seq is allocated here, in
        the order given) done whole in one go, with the change-log rows the
        general path would write. Returns (head_seq after it, txid), or None
        when nothing was written (no such live session, a clash): the caller
        then takes the general path, which raises the precise error."""
        return None

    @property
    @abc.abstractmethod
    def txid_sql(self) -> sa.ColumnElement[int]:
        """What to write in a ``txid`` column: a bind parameter named ``txid``
        (filled from WriteTx.txid) or the engine's own transaction-id expression."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection. Idempotent."""

    @property
    @abc.abstractmethod
    def sa_engine(self) -> sa.Engine:
        """The SQLAlchemy engine (migrations and tests use it)."""

    def __enter__(self) -> StoreEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

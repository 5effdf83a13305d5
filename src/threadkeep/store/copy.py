"""The SQL half of ``threadkeep copy`` (the rest is in ``threadkeep/copy_store.py``):
read every table of one database in one snapshot, write it into another in
one transaction, and prove the two hold the same rows before committing.

Rows go through the SQLAlchemy tables, so each value is read into Python by
the source engine's types and written by the target's: the same code moves
SQLite to PostgreSQL, PostgreSQL to SQLite, or either to a new database of
its own kind. Two engines never store the same row in the same bytes (jsonb
reorders keys, SQLite keeps JSON as text), so what is compared is the rows
as Python reads them back: a digest per table, independent of row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from threadkeep.errors import CopyError
from threadkeep.model.jsontext import dumps
from threadkeep.model.sync import SyncState
from threadkeep.store import pg_connect, search
from threadkeep.store.backup import Report, row_counts, sa_url
from threadkeep.store.changes import pending_in_commit_order
from threadkeep.store.sqlite_functions import add_functions
from threadkeep.store.sync import read_state, reset_epochs
from threadkeep.store.tables import DERIVED, changes, log_state, metadata, sessions

# Not copied as rows: the blob store's own tables (its bytes are copied
# through the blob stores, which may not keep them in the database at all),
# one server instance's sync positions, log_state, whose one row the
# migration made and finish() sets, and the tables the target's triggers
# fill from the copied rows (tables.DERIVED).
NOT_COPIED = frozenset({"blobs", "blob_chunks", "sync_readers", "log_state", *DERIVED})
COPIED = tuple(t for t in metadata.sorted_tables if t.name not in NOT_COPIED)

_CHUNK = 2_000  # rows per fetch and per INSERT batch
_MOD = 1 << 128


def _engine(url: str) -> sa.Engine:
    # Autocommit: the transactions are ours (BEGIN ... below), because
    # pysqlite would otherwise leave a run of SELECTs outside any transaction,
    # each seeing a different moment. JSON is written as threadkeep writes it.
    if sa.make_url(url).get_backend_name() != "sqlite":
        return pg_connect.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    engine = sa.create_engine(
        sa_url(url),
        poolclass=sa.NullPool,
        isolation_level="AUTOCOMMIT",
        json_serializer=dumps,
        hide_parameters=True,  # an error's text reaches logs; the values are messages
    )
    sa.event.listen(engine, "connect", add_functions)  # the title index's triggers
    return engine


def _begin(conn: sa.Connection, url: str, begin: str) -> None:
    """``begin`` and, through a transaction pooler, the settings a session
    would hold (store/pg_connect.py)."""
    conn.exec_driver_sql(begin)
    settings = pg_connect.transaction_settings(url)
    if settings is not None:
        conn.exec_driver_sql(settings)


@contextmanager
def snapshot(url: str) -> Iterator[sa.Connection]:
    """A read-only transaction on ``url``: every read through it sees the
    database at one moment, whatever commits meanwhile."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql("SELECT count(*) FROM log_state")  # takes the snapshot
            else:
                _begin(conn, url, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield conn
            finally:
                conn.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()


@contextmanager
def writing(url: str) -> Iterator[sa.Connection]:
    """One write transaction on ``url``, committed if the block returns and
    rolled back if it raises: a copy is wholly there or not at all. Durable
    at commit whatever the server's or the file's default, as every
    threadkeep write is (store/sqlite.py, store/postgres.py)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.exec_driver_sql("PRAGMA synchronous=FULL")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                _begin(conn, url, "BEGIN")
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
    finally:
        engine.dispose()


def holds_data(url: str) -> list[str]:
    """The tables of ``url`` that hold rows a copy would mix with its own.
    Not the blob store's: bytes put there by an earlier copy that failed
    later are orphans, and a new copy may put them again."""
    with snapshot(url) as conn:
        return [
            t.name
            for t in COPIED
            if conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first()
        ]


@dataclass
class Digest:
    """A table's rows, summed: equal digests mean equal multisets of rows
    (up to a 2^-128 chance). A sum, so row order does not matter: the engines
    sort text differently."""

    rows: int = 0
    total: int = 0

    def add(self, values: tuple[Any, ...]) -> None:
        data = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
        self.rows += 1
        self.total = (self.total + int.from_bytes(hashlib.sha256(data).digest()[:16])) % _MOD


def _ordered(table: sa.Table) -> sa.Select[Any]:
    """All of ``table``, parents before children where it refers to itself
    (a branch names the session it was forked from): by depth in the tree,
    then by key."""
    if table is not sessions:
        return sa.select(table).order_by(*table.primary_key.columns)
    s = sessions.c
    tree = (
        sa.select(s.id.label("id"), sa.literal(0).label("depth"))
        .where(s.parent_session_id.is_(None))
        .cte("tree", recursive=True)
    )
    child = sessions.alias("child")
    tree = tree.union_all(
        sa.select(child.c.id, tree.c.depth + 1).join(tree, child.c.parent_session_id == tree.c.id)
    )
    return sa.select(sessions).join(tree, tree.c.id == s.id).order_by(tree.c.depth, s.id)


def _batches(conn: sa.Connection, table: sa.Table) -> Iterator[Sequence[sa.Row[Any]]]:
    # Options on the statement: on the connection they would stick to it
    # (SQLAlchemy 2), and every later statement would open a server cursor.
    stmt = _ordered(table).execution_options(stream_results=True, yield_per=_CHUNK)
    yield from conn.execute(stmt).partitions(_CHUNK)


def copy_table(
    src: sa.Connection,
    dst: sa.Connection,
    table: sa.Table,
    report: Callable[[int], None],
    fix: Callable[[dict[str, Any]], None] | None = None,
) -> Digest:
    """Every row of ``table`` from ``src`` into ``dst``; the digest of what was
    written. ``fix`` may change a row before it is written (and digested)."""
    digest = Digest()
    keys = [c.key for c in table.columns]
    for batch in _batches(src, table):
        rows = [dict(zip(keys, row, strict=True)) for row in batch]
        for row in rows:
            if fix is not None:
                fix(row)
            digest.add(tuple(row[k] for k in keys))
        try:
            dst.execute(table.insert(), rows)
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise CopyError(
                f"the target refused a row of {table.name} ({reason}); nothing was copied"
            ) from exc
        report(len(rows))
    return digest


def table_digest(conn: sa.Connection, table: sa.Table) -> Digest:
    """The digest of ``table`` as ``conn`` reads it."""
    digest = Digest()
    for batch in _batches(conn, table):
        for row in batch:
            digest.add(tuple(row))
    return digest


def offsets_to_assign(src: sa.Connection, last_offset: int) -> dict[int, int]:
    """Offsets for the change rows that committed on PostgreSQL but were not
    numbered yet (store/changes.py), after ``last_offset`` and in the order
    the assigner would give them: {change id: offset}. SQLite never leaves a
    row unnumbered, and it would not know to number one later."""
    pending = pending_in_commit_order(src)
    return {change_id: last_offset + k for k, change_id in enumerate(pending, start=1)}


def number_change(numbered: dict[int, int]) -> Callable[[dict[str, Any]], None]:
    def fix(row: dict[str, Any]) -> None:
        if row["log_offset"] is None:
            row["log_offset"] = numbered[row["id"]]

    return fix


def finish(dst: sa.Connection, state: SyncState, last_offset: int, epoch: int) -> None:
    """Everything but the rows: the log's counters as the source had them
    (``state``), the target's sequences past the copied keys, SQLite's search
    index, and a new sync epoch, so that no handle issued by the source is
    served here."""
    dst.execute(
        log_state.update()
        .where(log_state.c.id == 1)
        .values(
            last_offset=last_offset,
            last_txid=state.last_txid,
            pruned_offset=state.pruned_offset,
        )
    )
    reset_epochs(dst, max(epoch, state.epoch + 1))
    if dst.dialect.name == "postgresql":
        for table in COPIED:
            col = table.autoincrement_column
            if col is None:
                continue
            dst.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence(:t, :c), "
                    f"coalesce((SELECT max({col.name}) FROM {table.name}), 0) + 1, false)"
                ),
                {"t": table.name, "c": col.name},
            )
    else:
        # SQLite's message index is filled by the append path, which a copy
        # goes around. PostgreSQL keeps its own indexes as the rows go in
        # (a generated column, the title trigrams' triggers): rebuilding
        # those would do that work again (about 15 s per 100,000 titles).
        search.rebuild(dst)


def search_index_ok(dst: sa.Connection) -> bool:
    """Whether the SQLite index that :func:`finish` rebuilt matches its
    tables. On PostgreSQL nothing was rebuilt: the title trigrams were
    written by this transaction's own triggers from the rows just compared,
    and checking them would compute every array again (about 0.1 ms a titled
    session). ``threadkeep doctor`` checks them."""
    if dst.dialect.name != "sqlite":
        return True
    return all(check.ok for check in search.check_index(dst))


def copy_rows(
    src: sa.Connection, dst: sa.Connection, report: Report, epoch: int
) -> dict[str, Digest]:
    """Every copied table from ``src`` into ``dst``, then finish(); the
    digest of what was written, per table."""
    counts = row_counts(src)
    total = sum(counts[t.name] for t in COPIED)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        report(done, total)

    report(0, total)
    state = read_state(src)
    numbered = offsets_to_assign(src, state.last_offset)
    out: dict[str, Digest] = {}
    for table in COPIED:
        fix = number_change(numbered) if table is changes and numbered else None
        out[table.name] = copy_table(src, dst, table, step, fix)
    finish(dst, state, state.last_offset + len(numbered), epoch)
    return out

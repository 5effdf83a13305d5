"""The engine-specific half of backup and restore (the rest is in
``threadkeep/backup.py``): SQLite's online backup API, ``pg_dump`` and
``pg_restore``, row counts, and whether a restore target holds data.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from threadkeep.errors import BackupError, BackupToolMissing
from threadkeep.store import pg_connect, pg_url
from threadkeep.store.sqlite_functions import add_functions
from threadkeep.store.tables import metadata, uploads

#: (done, total): pages for SQLite, tables for PostgreSQL.
Report = Callable[[int, int], None]

# Pages per backup step: small enough for a progress bar to move, large
# enough that a busy database rarely restarts the copy.
_STEP_PAGES = 1024
# After this many restarts (writes between steps) the copy is done in one
# step, which holds one read transaction for its whole length instead.
_MAX_RESTARTS = 3
# Tables whose rows do not make a database "hold data".
_BOOKKEEPING = {"alembic_version", "log_state", "sync_readers"}


def sqlite_path(url: str) -> Path:
    database = sa.make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database).expanduser()


class _Restarted(Exception):
    pass


def sqlite_copy(source: Path, target: Path, report: Report) -> None:
    """Copy the database ``source`` into ``target`` with SQLite's online backup
    API: consistent while other connections write (the copy restarts when
    they change a page it has copied), whole or not at all in ``target``."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    seen: dict[str, int] = {}

    def progress(status: int, remaining: int, total: int) -> None:
        if remaining > seen.get("remaining", remaining):
            seen["restarts"] = seen.get("restarts", 0) + 1
            if seen["restarts"] > _MAX_RESTARTS:
                raise _Restarted
        seen["remaining"] = remaining
        report(total - remaining, total)

    try:
        try:
            src.backup(dst, pages=_STEP_PAGES, progress=progress, sleep=0.05)
        except _Restarted:
            src.backup(dst, pages=-1)
        total = int(dst.execute("PRAGMA page_count").fetchone()[0])
        report(total, total)
        check = dst.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy of {source} failed SQLite's check: {check}")
    finally:
        dst.close()
        src.close()


# --- PostgreSQL -------------------------------------------------------------------


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupToolMissing(name)
    return found


def require_direct(url: str) -> None:
    """Refuse a URL that goes through a transaction pooler: pg_dump and
    pg_restore set session options at start-up, which PgBouncer refuses,
    and keep session state that a pooler does not (store/pg_connect.py)."""
    if sa.make_url(url).get_backend_name() == "sqlite" or not pg_url.through_pooler(url):
        return
    raise BackupError(
        "backups and restores need a direct connection to PostgreSQL, not a transaction "
        "pooler (the URL has ?pgbouncer=true): use the server's own host and port "
        "(docs/backup.md)"
    )


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A connection string for libpq tools and the environment that carries
    its password (kept out of the command line, which others see) and
    ``synchronous_commit=on``: a restore that says it is done is on disk,
    even where the server's or the database's default is off, as every
    threadkeep write is (store/postgres.py)."""
    u = sa.make_url(url)
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    # Both: a connection string with options of its own (a schema, or the
    # URL's ``options``) makes libpq ignore PGOPTIONS.
    durable = f"{env.get('PGOPTIONS', '')} -c synchronous_commit=on".strip()
    env["PGOPTIONS"] = durable
    return pg_url.conninfo(url, with_password=False, options=durable), env


def _run_tool(args: list[str], env: dict[str, str], marker: re.Pattern[str], on_item: Any) -> None:
    """Run pg_dump / pg_restore with --verbose; call ``on_item`` for each table
    it reports, and raise BackupError with its own words when it fails."""
    errors: list[str] = []
    with subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if marker.search(line):
                on_item()
            elif "error" in line.lower() or "fatal" in line.lower():
                errors.append(line.strip())
    if proc.returncode != 0:
        said = "; ".join(errors[-3:]) or f"exit code {proc.returncode}"
        raise BackupError(f"{Path(args[0]).name} failed: {said}")


_DUMPING = re.compile(r"dumping contents of table")
_RESTORING = re.compile(r"processing data for table")


def pg_dump(url: str, target: Path, snapshot: str | None, report: Report, tables: int) -> None:
    """``pg_dump --format=custom`` of the database into ``target``; with
    ``snapshot`` (an exported snapshot) it dumps exactly what that snapshot sees.
    A store with a schema of its own (``?schema=``) dumps that schema alone:
    the application sharing the database keeps its data out of threadkeep's
    backups, and out of the way of their restore."""
    tool = pg_tool("pg_dump")
    conninfo, env = libpq(url)
    args = [tool, "--format=custom", "--verbose", f"--file={target}"]
    schema = pg_url.schema_of(url)
    if schema is not None:
        args.append(f"--schema={schema}")
    if snapshot is not None:
        args.append(f"--snapshot={snapshot}")
    done = [0]

    def item() -> None:
        done[0] += 1
        report(min(done[0], tables), tables)

    _run_tool([*args, f"--dbname={conninfo}"], env, _DUMPING, item)
    report(tables, tables)


def pg_restore(url: str, source: Path, report: Report, tables: int) -> None:
    """Restore a custom-format dump into the database at ``url`` in one
    transaction: the tables the dump holds are dropped and created again
    (``--clean``), and a failure rolls all of it back, the drops included."""
    tool = pg_tool("pg_restore")
    conninfo, env = libpq(url)
    done = [0]

    def item() -> None:
        done[0] += 1
        report(min(done[0], tables), tables)

    args = [
        tool,
        "--verbose",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        "--clean",
        "--if-exists",
        f"--dbname={conninfo}",
        str(source),
    ]
    _run_tool(args, env, _RESTORING, item)
    report(tables, tables)


@contextmanager
def exported_snapshot(url: str) -> Iterator[tuple[str, sa.Connection]]:
    """A REPEATABLE READ transaction whose snapshot is exported: pg_dump given
    its name dumps exactly what this connection reads (counts, upload list)."""
    engine = raw_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                name = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
                yield str(name), conn
    finally:
        engine.dispose()


def sa_url(url: str) -> sa.URL:
    """``url`` as SQLAlchemy connects to it (store/pg_url.py for PostgreSQL)."""
    u = sa.make_url(url)
    return u if u.get_backend_name() == "sqlite" else pg_url.sa_url(u)


def raw_engine(url: str) -> sa.Engine:
    """A plain engine on ``url``, whatever the schema revision (no migration);
    on PostgreSQL as store/pg_connect.py connects, pooler or not."""
    if sa.make_url(url).get_backend_name() == "sqlite":
        engine = sa.create_engine(sa_url(url), poolclass=sa.NullPool, hide_parameters=True)
        sa.event.listen(engine, "connect", add_functions)  # the title index's triggers
        return engine
    return pg_connect.create_engine(url, poolclass=sa.NullPool)


# --- what a database holds -----------------------------------------------------------


def row_counts(conn: sa.Connection) -> dict[str, int]:
    """Rows per threadkeep table that exists in the database."""
    present = set(sa.inspect(conn).get_table_names())
    out: dict[str, int] = {}
    for table in metadata.sorted_tables:
        if table.name in present:
            out[table.name] = int(
                conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
    return out


def upload_blobs(conn: sa.Connection) -> list[tuple[str, int]]:
    """Every blob an upload names: (sha256, size), once each."""
    c = uploads.c
    if "uploads" not in sa.inspect(conn).get_table_names():
        return []
    q = sa.select(c.sha256, sa.func.max(c.size)).group_by(c.sha256).order_by(c.sha256)
    return [(str(h), int(n)) for h, n in conn.execute(q)]


def data_held(conn: sa.Connection) -> list[str]:
    """The tables holding rows (bookkeeping tables aside): empty means a restore
    loses nothing by writing here."""
    held = []
    for name in sorted(sa.inspect(conn).get_table_names()):
        if name in _BOOKKEEPING:
            continue
        quoted = conn.dialect.identifier_preparer.quote(name)
        if conn.execute(sa.text(f"SELECT 1 FROM {quoted} LIMIT 1")).first() is not None:
            held.append(name)
    return held


def drop_tables_not_in(conn: sa.Connection, keep: set[str]) -> list[str]:
    """Drop threadkeep's tables that are not in ``keep`` (those a dump of an
    older schema lacks: after the restore, migrating creates them again).
    Other applications' tables are left alone."""
    present = set(sa.inspect(conn).get_table_names())
    dropped = []
    for name in reversed([t.name for t in metadata.sorted_tables]):
        if name in present and name not in keep:
            dropped.append(name)
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {quoted} CASCADE"))
    return dropped

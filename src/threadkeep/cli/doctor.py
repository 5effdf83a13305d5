"""``threadkeep doctor``: check a deployment and say what to fix.

Each check prints one line, ``ok``, ``warn`` or ``fail``, with what it found
and, when it is not ok, how to fix it. The exit code is 1 when any check
fails, 0 otherwise (warnings included). Doctor changes nothing it need not:
it never migrates, never creates a missing SQLite file, and never writes a
row. (Opening a SQLite file with threadkeep puts it in WAL mode, as every
threadkeep process does.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape

from threadkeep.blobs import fs_path
from threadkeep.cli import reindex
from threadkeep.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, describe
from threadkeep.cli.errors import _one_line as one_line
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.config import Settings, data_dir, load_settings
from threadkeep.errors import SchemaInUse, SchemaTooNew, ThreadkeepError
from threadkeep.library import Threadkeep
from threadkeep.model.common import utcnow
from threadkeep.store import diagnostics, open_engine, shown_url, sqlite_support
from threadkeep.store import migrate as migrations
from threadkeep.store.contract import StoreEngine
from threadkeep.store.translate import translate_errors

Status = Literal["ok", "warn", "fail"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ALL_INTERFACES = ("0.0.0.0", "::", "")
#: Free disk space below which doctor warns, and below which it fails.
WARN_FREE_BYTES = 1024**3
FAIL_FREE_BYTES = 100 * 1024**2
#: The oldest PostgreSQL threadkeep is tested on.
MIN_PG_MAJOR = 13
_MIGRATE_HINT = "run `threadkeep migrate` (take a backup first: docs/backup.md)"
_CONNECT_HINT = (
    "check that the database server is running and that the database URL "
    "(--database-url, THREADKEEP_DATABASE_URL or the config file) is right"
)


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    hint: str | None = None


class Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, status: Status, detail: str, hint: str | None = None) -> None:
        self.checks.append(Check(name, status, detail, hint if status != "ok" else None))

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)


def _one_line(exc: BaseException) -> str:
    described = describe(exc)
    if described is not None:
        return described[1]
    return " ".join(str(exc).split()) or type(exc).__name__


def _plain(exc: BaseException) -> str:
    """The error's own message on one line, without the CLI's generic hint."""
    return one_line(str(exc)) or type(exc).__name__


@contextmanager
def _opened(url: str, settings: Settings) -> Iterator[StoreEngine]:
    with translate_errors():
        engine = open_engine(
            url,
            migrate=False,
            pool_size=settings.pool.size,
            max_overflow=settings.pool.max_overflow,
        )
    try:
        yield engine
    finally:
        engine.close()


def _check_settings(report: Report, database_url: str | None, host: str | None) -> Settings | None:
    try:
        settings = load_settings(database_url=database_url, host=host)
    except Exception as exc:
        if describe(exc) is None:
            raise
        report.add(
            "settings",
            "fail",
            _one_line(exc),
            "fix the setting in THREADKEEP_* or the config file (docs/cli.md)",
        )
        return None
    report.add("settings", "ok", f"loaded and valid (config file: {_config_note()})")
    return settings


def _config_note() -> str:
    from threadkeep.config import config_file

    path = config_file()
    return str(path) if path.exists() else f"{path}, absent: defaults and environment"


def _check_bind(report: Report, host: str) -> None:
    if host in _LOOPBACK:
        report.add("bind", "ok", f"{host}: this machine only")
    elif host in _ALL_INTERFACES:
        report.add(
            "bind",
            "warn",
            f"{host or '(all)'}: every network interface, reachable from other machines",
            "bind 127.0.0.1 (THREADKEEP_HOST or --host) unless that is intended, "
            "and put a TLS proxy in front",
        )
    else:
        report.add(
            "bind",
            "warn",
            f"{host}: reachable beyond this machine",
            "make sure that is intended, and put a TLS proxy in front",
        )


def _check_sqlite_files(report: Report, path: Path) -> bool:
    """Directory checks; False when the database file is missing."""
    folder = path.parent
    for label, where in (("data dir", data_dir()), ("database dir", folder)):
        if label == "database dir" and where.resolve() == data_dir().resolve():
            continue
        if not where.exists():
            report.add(
                label,
                "warn",
                f"{where} does not exist yet",
                "it is created on the first `threadkeep migrate` or `serve`",
            )
            continue
        try:
            with tempfile.TemporaryFile(dir=where):
                pass
            report.add(label, "ok", f"{where} is writable")
        except OSError as exc:
            report.add(
                label,
                "fail",
                f"{where} is not writable ({exc.strerror or exc})",
                "give the user running threadkeep write access to it, or choose "
                "another THREADKEEP_DATA_DIR / database URL",
            )
    probe = folder if folder.exists() else data_dir()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    shown = f"{free / 1024**3:.1f} GiB free on the disk of {probe}"
    if free < FAIL_FREE_BYTES:
        report.add("disk space", "fail", shown, "free some space: writes fail on a full disk")
    elif free < WARN_FREE_BYTES:
        report.add("disk space", "warn", shown, "free some space before the disk fills up")
    else:
        report.add("disk space", "ok", shown)
    if not path.exists():
        report.add(
            "database",
            "fail",
            f"{path} does not exist",
            "run `threadkeep migrate` to create it (or start `threadkeep serve`)",
        )
        return False
    _check_private(report, path)
    return True


def _check_sqlite_library(report: Report) -> bool:
    """The SQLite this Python links: too old, no store opens (False)."""
    missing = sqlite_support.problem(sqlite3.sqlite_version_info, sqlite_support.has_fts5_trigram())
    if missing is None:
        report.add("sqlite", "ok", sqlite_support.describe())
        return True
    report.add("sqlite", "fail", f"threadkeep needs {missing}", sqlite_support.WAYS_OUT)
    return False


def _check_private(report: Report, path: Path) -> None:
    """The database holds every user's conversations: other accounts on the
    machine should not read it. (threadkeep makes it 0600; an older version,
    or a copy, may have left it readable.)"""
    shared = []
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(f.stat().st_mode)
            if mode & 0o077:
                shared.append(f"{f.name} ({mode:04o})")
    if shared:
        files = " ".join(str(path) + s for s in ("", "-wal", "-shm"))
        report.add(
            "file modes",
            "warn",
            "readable by other accounts on this machine: " + ", ".join(shared),
            f"chmod 600 {files} (as the account that runs threadkeep)",
        )
    else:
        report.add("file modes", "ok", "the database files are private (no access for others)")


def _check_schema(report: Report, engine: StoreEngine) -> bool:
    """True when the schema is at this threadkeep's head."""
    head = migrations.code_head()
    with engine.sa_engine.connect() as conn:
        current = migrations.database_revision(conn)
    if current == head:
        report.add("schema", "ok", f"at revision {head} (this threadkeep's head)")
        return True
    if current is None:
        report.add("schema", "fail", "empty database: no threadkeep schema", _MIGRATE_HINT)
    else:
        report.add(
            "schema",
            "fail",
            f"at revision {current}, behind this threadkeep's {head}",
            _MIGRATE_HINT,
        )
    return False


def _check_sqlite(report: Report, engine: StoreEngine, header_journal: str | None) -> None:
    with engine.sa_engine.connect() as conn:
        pragmas = diagnostics.sqlite_pragmas(conn)
    journal = pragmas["journal_mode"]
    if journal != "wal":
        report.add(
            "journal_mode",
            "fail",
            f"{journal} on threadkeep's connections, not wal",
            "put the file on a local disk (WAL needs shared memory) and restart threadkeep",
        )
    elif header_journal == "rollback":
        report.add(
            "journal_mode",
            "warn",
            "the file was in a rollback-journal mode (delete); threadkeep switched it "
            "back to wal when it opened it",
            "find the program that turns WAL off (e.g. a backup tool running "
            "PRAGMA journal_mode=DELETE) and stop it; use `threadkeep backup` instead",
        )
    else:
        report.add("journal_mode", "ok", "wal")
    sync = pragmas["synchronous"]
    if sync in ("full", "extra"):
        report.add("synchronous", "ok", sync)
    else:
        report.add(
            "synchronous",
            "fail",
            f"{sync}: acknowledged writes may be lost in a power cut",
            "upgrade threadkeep; it sets synchronous=FULL on every connection",
        )


def _check_pooler(report: Report, engine: StoreEngine, server_port: int | None) -> None:
    """Say how threadkeep reaches the server. A pooler cannot be seen from the
    client; a port other than the server's own is the hint of one (or of a
    forwarded port, hence a warning, not a failure)."""
    if engine.pooled:
        report.add(
            "pooler",
            "ok",
            "transaction pooler declared (?pgbouncer=true): settings per transaction, "
            "no prepared statements, sync wakes by polling",
        )
        return
    url_port = sa.make_url(engine.url).port or 5432
    if server_port is None or server_port == url_port:
        return
    report.add(
        "pooler",
        "warn",
        f"the URL's port is {url_port} and the server listens on {server_port}: "
        "a proxy or pooler is in between",
        "if it is a transaction pooler (PgBouncer, Supavisor), add ?pgbouncer=true "
        "to the URL (docs/postgresql.md)",
    )


def _check_postgres(report: Report, engine: StoreEngine) -> None:
    with engine.sa_engine.connect() as conn:
        found = diagnostics.postgres_settings(conn)
    version = str(found.get("server_version", "?"))
    try:
        major = int(version.split(".")[0].split()[0])
    except ValueError:
        major = 0
    if major >= MIN_PG_MAJOR:
        report.add("postgresql", "ok", f"server version {version}")
    else:
        report.add(
            "postgresql",
            "warn",
            f"server version {version}, older than {MIN_PG_MAJOR}",
            f"upgrade PostgreSQL to {MIN_PG_MAJOR} or newer",
        )
    if found.get("fsync") == "on":
        report.add("fsync", "ok", "on")
    else:
        report.add(
            "fsync",
            "fail",
            f"{found.get('fsync')}: a crash of the machine can lose or corrupt data",
            "set fsync = on in postgresql.conf and reload the server",
        )
    sync, default = found.get("synchronous_commit"), found.get("synchronous_commit.default")
    if sync != "on" and sync not in ("remote_apply", "remote_write"):
        report.add(
            "synchronous_commit",
            "fail",
            f"{sync} on threadkeep's connections",
            "upgrade threadkeep; it sets synchronous_commit on for its connections",
        )
    elif default == "off":
        report.add(
            "synchronous_commit",
            "warn",
            "on for threadkeep (it forces it), but off by default for other clients",
            "set synchronous_commit = on in postgresql.conf unless other clients want it off",
        )
    else:
        report.add("synchronous_commit", "ok", str(sync))
    if engine.schema is not None:
        used = found.get("current_schema")
        if used == engine.schema:
            report.add("schema search path", "ok", f"connections use schema {used!r}")
        else:
            report.add(
                "schema search path",
                "fail",
                f"the URL names schema {engine.schema!r}, connections use {used!r}",
                "run `threadkeep migrate` (it creates the schema); behind a transaction "
                "pooler such as PgBouncer, add ?pgbouncer=true to the URL (docs/postgresql.md)",
            )
    _check_pooler(report, engine, found.get("server_port"))
    pool = engine.sa_engine.pool
    size = getattr(pool, "size", lambda: 0)() + getattr(pool, "_max_overflow", 0)
    try:
        # Two at once, as a server process uses them; one where the settings
        # allow only one (asking for a second would wait out the pool).
        with ExitStack() as held:
            for _ in range(min(2, size) or 2):
                held.enter_context(engine.sa_engine.connect()).exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        report.add("pool", "fail", f"cannot open pooled connections: {exc}", _CONNECT_HINT)
        return
    max_conn = int(found.get("max_connections", 0) or 0)
    free = max_conn - int(found.get("connections", 0))
    detail = f"connections open; server has {free} of {max_conn} slots free"
    if size and free < size:
        report.add(
            "pool",
            "warn",
            f"{detail}, fewer than one instance's pool may open ({size})",
            "lower pool.size / pool.max_overflow (docs/postgresql.md), raise "
            "max_connections, or run fewer instances",
        )
    else:
        report.add("pool", "ok", detail)


def _check_auth(report: Report, engine: StoreEngine) -> None:
    tk = Threadkeep(engine)
    users = tk.list_users()
    if not users:
        report.add(
            "users",
            "fail",
            "no user: nobody can authenticate",
            "run `threadkeep token create --name NAME` (creates the user 'local'), "
            "or start `threadkeep serve` once",
        )
    else:
        report.add("users", "ok", f"{len(users)} user{'s' if len(users) != 1 else ''}")
    now = utcnow()
    live = [
        t
        for t in tk.list_all_tokens()
        if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)
    ]
    if live:
        report.add("tokens", "ok", f"{len(live)} active token{'s' if len(live) != 1 else ''}")
    else:
        report.add(
            "tokens",
            "fail",
            "no active token (every one is revoked or expired, or none was made)",
            "run `threadkeep token create --name NAME`",
        )


def _check_blob_dir(report: Report, path: Path | None) -> None:
    """The fs blob directory holds every upload; threadkeep makes it 0700,
    and an older version, or a directory made by hand, may have left it open."""
    if path is None or not path.is_dir():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        report.add(
            "blob dir mode",
            "warn",
            f"{path} ({mode:04o}) lets other accounts on this machine read uploads",
            f"chmod -R go-rwx {path} (as the account that runs threadkeep)",
        )
    else:
        report.add("blob dir mode", "ok", f"{path} is private ({mode:04o})")


def _check_search_index(report: Report, engine: StoreEngine) -> None:
    """SQLite's indexes; on PostgreSQL the title trigrams (its search index
    is computed from each row)."""
    found = Threadkeep(engine).check_search_index()
    bad = [c for c in found if not c.ok]
    if not bad:
        total = sum(c.expected for c in found)
        report.add("search index", "ok", f"matches the tables ({total:,} rows indexed)")
        return
    report.add(
        "search index",
        "fail",
        "; ".join(reindex.describe(c) for c in bad)
        + ": search misses them, and purging their sessions fails",
        "stop every threadkeep process older than this one (an older process "
        "writing after the upgrade causes this), then run `threadkeep reindex`",
    )


def run_checks(database_url: str | None = None, host: str | None = None) -> Report:
    report = Report()
    settings = _check_settings(report, database_url, host)
    if settings is None:
        return report
    _check_bind(report, settings.host)
    url = settings.database_url
    is_sqlite = url.startswith("sqlite")
    header_journal: str | None = None
    if is_sqlite:
        if not _check_sqlite_library(report):
            return report
        database = sa.make_url(url).database
        if database and database != ":memory:":
            path = Path(database).expanduser()
            if not _check_sqlite_files(report, path):
                return report
            header_journal = diagnostics.sqlite_file_journal(path)
    _check_blob_dir(report, fs_path(settings.blobs, url))
    try:
        with _opened(url, settings) as engine:
            report.add("database", "ok", f"reachable: {shown_url(url)} ({engine.dialect})")
            if is_sqlite:
                _check_sqlite(report, engine, header_journal)
            else:
                _check_postgres(report, engine)
            if _check_schema(report, engine):
                _check_search_index(report, engine)
                _check_auth(report, engine)
    except SchemaTooNew as exc:
        report.add(
            "schema",
            "fail",
            _one_line(exc),
            "upgrade threadkeep to the version that migrated this database, or restore "
            "a backup taken before (docs/rollback.md)",
        )
    except SchemaInUse as exc:
        report.add(
            "schema",
            "fail",
            _one_line(exc),
            "add ?schema=threadkeep to the database URL (docs/postgresql.md)",
        )
    except (ThreadkeepError, sa.exc.SQLAlchemyError, OSError) as exc:
        report.add("database", "fail", f"{shown_url(url)}: {_plain(exc)}", _CONNECT_HINT)
    return report


def doctor(
    database_url: DatabaseUrl = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help="Check this bind address instead of the configured one.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"ok": ..., "checks": [{name, status, detail, hint}]} instead.',
        ),
    ] = False,
) -> None:
    """Check a deployment and say what to fix.

    Checks the settings, the database (reachable, schema current, durability
    settings; on SQLite, the SQLite library this Python uses and the search
    index against the tables), the data
    directory, disk space and the database files' modes (SQLite), the server
    bind address, and that a user and an active token exist. One line per check:
    ok, warn or fail, with a fix for anything not ok. Exit code 1 when any
    check fails, 0 otherwise. Changes nothing (it never migrates).
    """
    report = run_checks(database_url, host)
    if as_json:
        typer.echo(
            json.dumps(
                {"ok": not report.failed, "checks": [asdict(c) for c in report.checks]}, indent=2
            )
        )
    else:
        out = Console(highlight=False, soft_wrap=True, no_color="NO_COLOR" in os.environ)
        colours = {"ok": "green", "warn": "yellow", "fail": "red"}
        width = max(len(c.name) for c in report.checks)
        for c in report.checks:
            status = f"[{colours[c.status]}]{c.status:<4}[/]"
            line = f"{status} {escape(c.name):<{width}}  {escape(c.detail)}"
            if c.hint:
                line += f"  [dim]fix:[/] {escape(c.hint)}"
            out.print(line)
        fails = sum(c.status == "fail" for c in report.checks)
        warns = sum(c.status == "warn" for c in report.checks)
        out.print(f"{fails} failed, {warns} warning{'s' if warns != 1 else ''}")
    raise typer.Exit(EXIT_CHECK_FAILED if report.failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``threadkeep doctor`` to the root command."""
    app.command("doctor")(doctor)

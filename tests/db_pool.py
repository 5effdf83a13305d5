"""Migrated databases for the tests, without migrating once per test.

Opening a store on an empty database runs every migration: ~0.13 s on SQLite
and ~0.35 s on PostgreSQL here (create, migrate, drop), more on a loaded CI
machine, and some 700 tests open one. So each pytest worker migrates once
and hands out copies:

* SQLite: the migrated file, copied (a closed WAL database is one file).
* PostgreSQL: a pool of migrated databases. A database goes back to the pool
  wiped (every row deleted, sequences restarted, the one-row ``log_state``
  set as migration 0005 leaves it), and only if its schema and revision still
  match the freshly migrated one; otherwise it is dropped. Creating from a
  ``TEMPLATE`` was tried and costs as much as migrating (PostgreSQL 15 copies
  every relation through the WAL).

The wipe needs a superuser (``session_replication_role``); under a lesser
role it fails and the pool drops the database instead: slower, same result.

Either way a test sees what a fresh migrated database holds: no rows but the
ones migrations write, with the sync epoch set to now, as a fresh migration
sets it.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import psycopg
from psycopg import sql

from threadkeep import Threadkeep

# Tables whose rows a migration writes: they are reset, not emptied. A new
# migration that seeds another table fails the pool loudly (see _check_seeded).
_SEED_TABLES = {"alembic_version", "log_state"}

_SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM (
    SELECT 'c ' || table_name || '.' || column_name || ' ' || data_type || ' '
           || is_nullable || ' ' || coalesce(column_default, '') AS x
      FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL SELECT 'i ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT 'k ' || conrelid::regclass::text || ' ' || conname || ' '
           || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT 't ' || tgrelid::regclass::text || ' ' || tgname
      FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'f ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT 'v ' || version_num FROM alembic_version
) s
"""


def _now_us() -> int:
    return time.time_ns() // 1000


class SqliteTemplate:
    """One migrated SQLite file per worker; each test gets a copy."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "migrated.db"
        Threadkeep.open(f"sqlite:///{self.path}").close()
        with closing(sqlite3.connect(self.path)) as conn:  # everything into the one file
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def copy_to(self, target: Path) -> str:
        shutil.copyfile(self.path, target)
        with closing(sqlite3.connect(target)) as conn, conn:
            now = _now_us()
            conn.execute("UPDATE log_state SET epoch = ?, reset_epoch = ?", (now, now))
        return f"sqlite:///{target}"


class PostgresPool:
    """Migrated PostgreSQL databases, reused across one worker's tests."""

    def __init__(
        self,
        create: Callable[[], str],
        drop: Callable[[str], None],
        admin_url: str,
    ) -> None:
        self._create, self._drop, self._admin_url = create, drop, admin_url
        self._free: list[str] = []
        # Both from the first database migrated; every database handed out
        # has that fingerprint, so the same wipe fits them all.
        self._fingerprint: str | None = None
        self._wipe: sql.Composed | None = None

    def take(self) -> str:
        if self._free:
            return self._free.pop()
        url = self._create()
        Threadkeep.open(url).close()
        if self._fingerprint is None:
            with psycopg.connect(url) as conn:
                _check_seeded(conn)
                self._fingerprint = _fingerprint(conn)
                self._wipe = _wipe_statement(conn)
        return url

    def give_back(self, url: str) -> None:
        """Wipe ``url`` and keep it, or drop it when the test changed more
        than rows (a migration run down, a table altered)."""
        try:
            _disconnect_others(self._admin_url, url)
            with psycopg.connect(url, autocommit=True) as conn:
                if self._wipe is None or _fingerprint(conn) != self._fingerprint:
                    raise _SchemaChanged
                with conn.transaction():
                    conn.execute(self._wipe)
                    now = _now_us()
                    conn.execute(
                        "UPDATE log_state SET last_offset = 0, last_txid = 0, epoch = %s, "
                        "reset_epoch = %s, pruned_offset = 0",
                        (now, now),
                    )
        except (_SchemaChanged, psycopg.Error):
            self._drop(url)
            return
        self._free.append(url)

    def close(self) -> None:
        while self._free:
            self._drop(self._free.pop())


class _SchemaChanged(Exception):
    pass


def _fingerprint(conn: psycopg.Connection) -> str:
    row = conn.execute(_SCHEMA_FINGERPRINT).fetchone()
    assert row is not None
    return str(row[0])


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    ).fetchall()
    return [r[0] for r in rows]


def _check_seeded(conn: psycopg.Connection) -> None:
    """Fail if the migrations now write rows the wipe would not restore."""
    for table in _tables(conn):
        if table in _SEED_TABLES:
            continue
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        assert row is not None
        if row[0]:
            raise AssertionError(
                f"a migration writes rows into {table}: teach tests/db_pool.py to restore them"
            )


def _disconnect_others(admin_url: str, url: str) -> None:
    """End connections a test left open (a server it did not stop, a store
    it did not close), as ``DROP DATABASE ... WITH (FORCE)`` did: otherwise
    they would write into the next test's database, or hold locks the wipe
    would wait on."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        for _ in range(200):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.01)
    raise psycopg.OperationalError(f"connections to {name} did not end")


def _wipe_statement(conn: psycopg.Connection) -> sql.Composed:
    """Every row out but the seeded ones, and the sequences back to their
    start: one round trip (several statements, no parameters)."""
    steps = [
        # No foreign-key or index-maintenance triggers: every row goes anyway.
        sql.SQL("SET LOCAL session_replication_role = replica"),
        *(
            sql.SQL("DELETE FROM {}").format(sql.Identifier(t))
            for t in _tables(conn)
            if t not in _SEED_TABLES
        ),
        *(
            sql.SQL("ALTER SEQUENCE {} RESTART").format(sql.Identifier(name))
            for (name,) in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            )
        ),
    ]
    return sql.SQL("; ").join(steps)

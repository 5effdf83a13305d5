"""The suite's reused PostgreSQL databases (tests/db_pool.py) come back as a
fresh migration leaves them, and one whose schema a test changed is dropped,
not handed to the next test."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database, require_pg
from db_pool import PostgresPool, SqliteTemplate
from threadkeep import Actor, Threadkeep


@pytest.fixture
def pool() -> Iterator[PostgresPool]:
    require_pg()
    made: list[str] = []

    def create() -> str:
        made.append(create_pg_database())
        return made[-1]

    p = PostgresPool(create, drop_pg_database, PG_ADMIN_URL)
    try:
        yield p
    finally:
        p.close()
        for url in made:
            drop_pg_database(url)


def _snapshot(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone() for t in tables}
        state = conn.execute(
            "SELECT last_offset, last_txid, pruned_offset, epoch > 0 FROM log_state"
        ).fetchall()
    return {"counts": counts, "log_state": state}


def _write_some(url: str) -> None:
    with Threadkeep.open(url) as tk:
        actor = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(actor, title="x").value.id
        tk.append_messages(actor, sid, [{"role": "user", "content": "hi"}] * 3)
        tk.start_tool_event(actor, sid, {"name": "bash"})


def test_a_database_given_back_is_wiped_to_what_a_fresh_migration_leaves(
    pool: PostgresPool,
) -> None:
    url = pool.take()
    fresh = _snapshot(url)
    _write_some(url)
    # A connection the test left open, in a transaction: it would write into
    # the next test's database.
    with psycopg.connect(url) as leaked:
        leaked.execute("SELECT 1")
        assert _snapshot(url) != fresh
        pool.give_back(url)
        with pytest.raises(psycopg.OperationalError):
            leaked.execute("SELECT 1")
    assert pool.take() == url  # reused, not made again
    assert _snapshot(url) == fresh
    # The change log starts again at offset 1, as in a new database.
    _write_some(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT min(id) FROM changes").fetchone() == (1,)


def test_a_database_whose_schema_a_test_changed_is_dropped(pool: PostgresPool) -> None:
    url = pool.take()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE sessions ADD COLUMN extra integer")
    pool.give_back(url)
    assert pool.take() != url
    with psycopg.connect(PG_ADMIN_URL) as conn:
        name = url.rsplit("/", 1)[1]
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert row.fetchone() == (0,)


def test_a_sqlite_copy_is_the_migrated_file_with_a_new_epoch(tmp_path: Path) -> None:
    template = SqliteTemplate(tmp_path)
    first = template.copy_to(tmp_path / "a.db")
    _write_some(first)
    template.copy_to(tmp_path / "b.db")
    with (
        closing(sqlite3.connect(tmp_path / "a.db")) as a,
        closing(sqlite3.connect(tmp_path / "b.db")) as b,
    ):
        assert a.execute("SELECT count(*) FROM messages").fetchone() == (3,)
        assert b.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        epoch_a, version_a = a.execute(
            "SELECT epoch, (SELECT version_num FROM alembic_version) FROM log_state"
        ).fetchone()
        epoch_b, version_b = b.execute(
            "SELECT epoch, (SELECT version_num FROM alembic_version) FROM log_state"
        ).fetchone()
    assert version_a == version_b and epoch_b > epoch_a

"""threadkeep behind a transaction pooler: ``?pgbouncer=true`` (store/pg_connect.py,
docs/postgresql.md), against a real PgBouncer 1.18 in transaction mode with two
server connections per database, so that its clients share them.

* Declared, everything works and nothing is lost under concurrent writers, in
  ``public`` and in a schema of its own.
* Every commit is durable (``synchronous_commit=on`` at commit) and lands in
  the URL's schema, even where the database's default is off: a deferred
  trigger records the setting in force when each transaction commits.
* Nothing threadkeep sets or prepares stays on the pooler's server
  connections for their next client.
* Undeclared, the first clash of prepared statements fails loudly, names the
  fix, and every acknowledged append is kept.
* Backups and restores through the pooler are refused before anything is
  written; ``threadkeep copy`` into it works.
* ``threadkeep doctor`` says how it reaches the server, and hints at the flag
  when the server's port is not the URL's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import create_pg_database, drop_pg_database, server_conninfo, with_schema
from pgbouncer import SERVER_CONNECTIONS, PgBouncer
from threadkeep import Actor, Threadkeep
from threadkeep.backup import backup_store, restore_store
from threadkeep.cli.main import app
from threadkeep.config import Settings
from threadkeep.copy_store import copy_store
from threadkeep.errors import BackupError, StoreError
from threadkeep.model.messages import NewMessage
from threadkeep.store import messages as message_q
from threadkeep.store import pg_connect, pg_url

SCHEMAS = (None, "chat")


def _direct(url: str) -> psycopg.Connection[Any]:
    """A connection to the server itself, in its default schema, for the
    checks: never through the pooler, whose sessions are under test."""
    u = sa.make_url(url).difference_update_query(["schema"])
    return psycopg.connect(server_conninfo(u.render_as_string(hide_password=False)))


@pytest.fixture
def server_db() -> Iterator[str]:
    """An empty database, reached directly, whatever mode the suite runs in
    (these tests make their own schemas and pooled URLs)."""
    url = create_pg_database(plain=True)
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(params=SCHEMAS, ids=["public", "schema"])
def schema(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def pooled_url(server_db: str, pgbouncer: PgBouncer, schema: str | None) -> str:
    return with_schema(pgbouncer.url(server_db), schema)


@pytest.fixture
def pooled(pooled_url: str) -> Iterator[Threadkeep]:
    with Threadkeep.open(pooled_url) as tk:
        yield tk


def _qualified(schema: str | None, table: str) -> str:
    return f"{schema or 'public'}.{table}"


# --- the URL ----------------------------------------------------------------------


def test_the_flag_is_threadkeeps_not_libpqs() -> None:
    url = "postgresql://u:pw@pooler:6543/app?pgbouncer=true&schema=chat&sslmode=require"
    assert pg_url.through_pooler(url)
    assert not pg_url.through_pooler("postgresql://u@h/app")
    assert not pg_url.through_pooler("postgresql://u@h/app?pgbouncer=false")
    info = psycopg.conninfo.conninfo_to_dict(pg_url.conninfo(url))
    assert "pgbouncer" not in info and "schema" not in info
    # PgBouncer refuses startup options: the search path goes per transaction.
    assert "options" not in info and "options" not in pg_url.sa_url(url).query
    assert info["sslmode"] == "require"
    assert "pgbouncer" not in pg_url.sa_url(url).query
    settings = pg_connect.transaction_settings(url)
    assert settings is not None
    for name, value in (("synchronous_commit", "on"), ("search_path", "chat")):
        assert f"set_config('{name}', '{value}', true)" in settings
    assert pg_connect.transaction_settings("postgresql://u@h/app") is None


@pytest.mark.parametrize("value", ["yes", "1", "True", ""])
def test_a_flag_that_is_not_true_or_false_is_refused(value: str) -> None:
    with pytest.raises(StoreError, match=r"\?pgbouncer=true"):
        pg_url.through_pooler(f"postgresql://u@h/app?pgbouncer={value}")


# --- through a real PgBouncer -----------------------------------------------------


def test_concurrent_writers_through_the_pooler_lose_nothing(
    pooled: Threadkeep, pooled_url: str, schema: str | None
) -> None:
    me = Actor(pooled.create_user("ada").value.id)
    sid = pooled.create_session(me).value.id
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        try:
            for i in range(25):
                if i % 5 == 4:
                    texts = [f"w{w}-{i}-{k}" for k in range(3)]
                    pooled.append_messages(me, sid, [{"role": "user", "content": t} for t in texts])
                else:
                    texts = [f"w{w}-{i}"]
                    pooled.append_message(me, sid, {"role": "assistant", "content": texts[0]})
                with lock:
                    acknowledged.extend(texts)
                if i % 10 == 0:
                    pooled.get_session(me, sid)
                    pooled.list_sessions(me)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]
    messages = pooled.get_history(me, sid)
    assert [m.seq for m in messages] == list(range(1, len(acknowledged) + 1))
    assert sorted(m.content for m in messages) == sorted(acknowledged)
    assert len(acknowledged) == 8 * (20 + 5 * 3)
    with _direct(pooled_url) as conn:
        stored = conn.execute(f"SELECT count(*) FROM {_qualified(schema, 'messages')}").fetchone()
        logged = conn.execute(
            f"SELECT count(*) FROM {_qualified(schema, 'changes')} WHERE table_name = 'messages'"
        ).fetchone()
    assert stored == (len(acknowledged),) and logged == (len(acknowledged),)


def test_a_plain_append_is_still_one_statement_through_the_pooler(pooled: Threadkeep) -> None:
    """It carries its settings and names its schema's tables itself; a miss
    would fall back to the transaction path silently, three round trips
    slower."""
    me = Actor(pooled.create_user("ada").value.id)
    sid = pooled.create_session(me).value.id
    for batch in (["one"], ["two", "three"]):
        new = [NewMessage.model_validate({"role": "user", "content": c}) for c in batch]
        done = message_q.append_at_once(pooled.engine, me.user_id, sid, new)
        assert done is not None and not isinstance(done, message_q.FastPathMissed)
    assert [m.content for m in pooled.get_history(me, sid)] == ["one", "two", "three"]


_RECORD_AT_COMMIT = """
CREATE TABLE public.seen_at_commit (tbl text, sync_commit text);
CREATE FUNCTION public.record_commit_settings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.seen_at_commit
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, current_setting('synchronous_commit'));
    RETURN NULL;
END $$;
"""


def _durability_off_by_default(db_url: str) -> None:
    """The database's default is off, set before PgBouncer opens any server
    connection to it: only what threadkeep sets holds."""
    with _direct(db_url) as conn:
        conn.autocommit = True
        conn.execute(
            f'ALTER DATABASE "{sa.make_url(db_url).database}" SET synchronous_commit = off'
        )


def test_every_commit_is_durable_and_in_its_schema_whatever_the_servers_default(
    server_db: str, pgbouncer: PgBouncer, schema: str | None
) -> None:
    _durability_off_by_default(server_db)
    url = with_schema(pgbouncer.url(server_db), schema)
    Threadkeep.open(url).close()  # migrates through the pooler
    with _direct(server_db) as conn:
        conn.execute(_RECORD_AT_COMMIT)
        for table in ("sessions", "messages", "tool_events", "changes"):
            # Deferred: it runs as the transaction commits, with the settings
            # the commit itself uses.
            conn.execute(
                f"CREATE CONSTRAINT TRIGGER seen AFTER INSERT OR UPDATE ON "
                f"{_qualified(schema, table)} DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION public.record_commit_settings()"
            )
        conn.commit()
    tk = Threadkeep.open(url)
    try:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me).value
        first = tk.append_message(me, s.id, {"role": "user", "content": "hello"}).value
        tk.append_messages(me, s.id, [{"role": "assistant", "content": "hi"}] * 3)
        tk.update_session(me, s.id, {"title": "greetings"})
        tk.fork_session(me, s.id, at_message_id=first.id)
        tk.start_tool_event(me, s.id, {"name": "search", "input": {"q": "x"}})
    finally:
        tk.close()
    with _direct(server_db) as conn:
        seen = conn.execute(
            "SELECT tbl, sync_commit, count(*) FROM public.seen_at_commit GROUP BY 1, 2"
        ).fetchall()
        default = conn.execute("SHOW synchronous_commit").fetchone()
        elsewhere = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name <> 'seen_at_commit'"
        ).fetchone()
    assert default == ("off",)  # the trap is set
    tables = ("sessions", "messages", "tool_events", "changes")
    assert {tbl for tbl, *_ in seen} == {_qualified(schema, t) for t in tables}
    assert {sync for _, sync, _ in seen} == {"on"}
    if schema is not None:
        assert elsewhere == (0,)  # nothing went to public


def test_nothing_threadkeep_sets_or_prepares_stays_on_the_poolers_connections(
    server_db: str, pgbouncer: PgBouncer, schema: str | None
) -> None:
    _durability_off_by_default(server_db)  # so that a session's "on" would show
    pooled_url = with_schema(pgbouncer.url(server_db), schema)
    pooled = Threadkeep.open(pooled_url)
    try:
        me = Actor(pooled.create_user("ada").value.id)
        sid = pooled.create_session(me).value.id
        for i in range(30):  # psycopg prepares a query on its fifth run, unless told not to
            pooled.append_message(me, sid, {"role": "user", "content": f"m{i}"})
            pooled.get_session(me, sid)
            pooled.get_history(me, sid)
    finally:
        pooled.close()
    # Hold a transaction on every server connection the pooler has for this
    # database, and look at each one's session.
    conninfo = pg_url.conninfo(pooled_url)
    clients = [psycopg.connect(conninfo, prepare_threshold=None) for _ in range(SERVER_CONNECTIONS)]
    try:
        seen = [
            c.execute(
                "SELECT pg_backend_pid(), current_setting('synchronous_commit'), "
                "current_setting('search_path'), "
                "(SELECT count(*) FROM pg_prepared_statements)"
            ).fetchone()
            for c in clients
        ]
    finally:
        for c in clients:
            c.close()
    assert len({row[0] for row in seen if row}) == SERVER_CONNECTIONS
    with _direct(pooled_url) as conn:
        defaults = conn.execute(
            "SELECT current_setting('synchronous_commit'), current_setting('search_path')"
        ).fetchone()
    assert defaults is not None and defaults[0] == "off"
    for row in seen:
        assert row is not None
        assert row[1:3] == defaults
        assert row[3] == 0


def test_an_undeclared_pooler_fails_loudly_names_the_fix_and_keeps_what_it_acknowledged(
    server_db: str, pgbouncer: PgBouncer
) -> None:
    url = pgbouncer.url(server_db, declared=False)
    tk = Threadkeep.open(url)
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for i in range(200):  # until its first failure
            try:
                tk.append_message(me, sid, {"role": "user", "content": f"w{w}-{i}"})
                with lock:
                    acknowledged.append(f"w{w}-{i}")
                tk.get_session(me, sid)
            except BaseException as exc:
                failures.append(exc)
                return

    try:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        tk.close()
    # Clients' statements met on shared server connections.
    assert failures
    for exc in failures:
        assert isinstance(exc, StoreError), repr(exc)
        assert "prepared statement" in str(exc) and "Add ?pgbouncer=true" in str(exc)
    with _direct(server_db) as conn:
        stored = {r[0] for r in conn.execute("SELECT content FROM messages")}
    assert set(acknowledged) <= stored
    assert len(stored) <= len(acknowledged) + len(failures)  # at most the appends that raised


def test_backup_and_restore_through_the_pooler_are_refused_before_anything_is_written(
    pooled: Threadkeep, pooled_url: str, server_db: str, tmp_path: Path, schema: str | None
) -> None:
    me = Actor(pooled.create_user("ada").value.id)
    pooled.create_session(me, title="kept")
    dest = tmp_path / "backup"
    with pytest.raises(BackupError, match="direct connection"):
        backup_store(pooled, dest)
    assert not dest.exists()
    # A real backup, taken directly, then restored through the pooler.
    direct = Threadkeep.open(with_schema(server_db, schema))
    try:
        backup_store(direct, dest)
    finally:
        direct.close()
    with pytest.raises(BackupError, match="direct connection"):
        restore_store(dest, settings=Settings(database_url=pooled_url), force=True)
    assert [s.title for s in pooled.list_sessions(me).items] == ["kept"]


def test_copy_into_a_store_behind_the_pooler(
    pooled_url: str, tmp_path: Path, schema: str | None
) -> None:
    source = Threadkeep.open(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        me = Actor(source.create_user("ada").value.id)
        s = source.create_session(me, title="moved").value
        source.append_messages(me, s.id, [{"role": "user", "content": f"m{i}"} for i in range(5)])
        copy_store(source, Settings(database_url=pooled_url))
    finally:
        source.close()
    target = Threadkeep.open(pooled_url)
    try:
        assert [m.content for m in target.get_history(me, s.id)] == [f"m{i}" for i in range(5)]
    finally:
        target.close()
    with _direct(pooled_url) as conn:
        titles = conn.execute(f"SELECT title FROM {_qualified(schema, 'sessions')}").fetchall()
    assert titles == [("moved",)]


def test_the_change_channel_does_not_listen_through_the_pooler(pooled: Threadkeep) -> None:
    channel = pooled.engine.change_channel()
    before = set(threading.enumerate())  # other tests' stores may have channels of their own
    channel.start(lambda: None)
    try:
        names = sorted(t.name for t in set(threading.enumerate()) - before)
    finally:
        channel.stop()
    assert names == ["threadkeep-notify"]


@pytest.mark.usefixtures("isolated_settings")
def test_doctor_says_how_it_reaches_the_server(server_db: str, pgbouncer: PgBouncer) -> None:
    def checks(url: str) -> tuple[int, dict[str, dict[str, Any]]]:
        result = CliRunner().invoke(app, ["doctor", "--json", "--database-url", url])
        body = json.loads(result.stdout)
        return result.exit_code, {c["name"]: c for c in body["checks"]}

    with Threadkeep.open(server_db) as tk:
        tk.create_token(Actor(tk.create_user("ada").value.id), "laptop")
    code, direct = checks(server_db)
    assert code == 0 and "pooler" not in direct
    code, undeclared = checks(pgbouncer.url(server_db, declared=False))
    assert undeclared["pooler"]["status"] == "warn"
    assert f"port is {pgbouncer.port}" in undeclared["pooler"]["detail"]
    assert "?pgbouncer=true" in undeclared["pooler"]["hint"]
    code, declared = checks(pgbouncer.url(server_db))
    assert code == 0, declared
    assert declared["pooler"]["status"] == "ok"
    assert declared["synchronous_commit"]["status"] in ("ok", "warn")

"""threadkeep in a PostgreSQL database it shares with the application it
serves: ``?schema=NAME`` in the URL (store/pg_url.py, docs/postgresql.md).

The application's own tables sit in ``public`` with the names an application
picks (``users``, ``sessions``, ``messages``) and its own Alembic
``alembic_version``. Whatever threadkeep does in its schema, those stay as
they were, row for row; without a schema, threadkeep refuses to write there.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import create_pg_database, drop_pg_database, running_in_threads, with_schema
from random_writes import make_world, random_writers
from replay_checks import assert_log_rebuilds, assert_views_agree
from test_backup import fill, found_everything
from threadkeep import Actor, SchemaInUse, SchemaTooNew, Threadkeep
from threadkeep.backup import backup_store, restore_store
from threadkeep.blobs import default_path
from threadkeep.cli.main import app
from threadkeep.config import load_settings
from threadkeep.copy_store import copy_store
from threadkeep.errors import BackupError, CopyError, StoreError
from threadkeep.store import migrate as migrations
from threadkeep.store import pg_url, tables
from threadkeep.store import sessions as session_q
from threadkeep.store.notify import PgChangeChannel
from threadkeep.sync.proxy import upstream_params
from threadkeep.sync.shapes import Shape

APP_REVISION = "3f2a9c1d7b4e"  # an Alembic id of the kind `alembic revision` makes

# The application's schema: names an application picks, and its Alembic table.
APP_TABLES = f"""
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('{APP_REVISION}');
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
INSERT INTO users (email) VALUES ('ada@example.com'), ('bob@example.com');
CREATE TABLE sessions (id text PRIMARY KEY, user_id int REFERENCES users, data jsonb);
INSERT INTO sessions VALUES ('web-1', 1, '{{"cart": [1, 2]}}');
CREATE TABLE messages (id serial PRIMARY KEY, body text);
INSERT INTO messages (body) VALUES ('the app''s own message');
"""


pytestmark = pytest.mark.usefixtures("isolated_settings")


def psql(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` as the application would: its own connection, ``public``."""
    plain = sa.make_url(url).set(drivername="postgresql").difference_update_query(["schema"])
    with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def app_state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table in ``public`` with all its rows, in order: what the
    application sees."""
    names = [
        n
        for (n,) in psql(
            url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
    ]
    return {n: psql(url, f'SELECT * FROM public."{n}" ORDER BY 1') for n in names}


def schemas(url: str) -> set[str]:
    rows = psql(url, "SELECT nspname FROM pg_namespace")
    return {n for (n,) in rows if not n.startswith("pg_") and n != "information_schema"}


def tables_in(url: str, schema: str) -> set[str]:
    rows = psql(url, f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")
    return {n for (n,) in rows}


@pytest.fixture
def shared_db() -> Iterator[str]:
    """A database the application already uses: its tables in ``public``."""
    url = create_pg_database(plain=True)
    try:
        psql(url, APP_TABLES)
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def other_db() -> Iterator[str]:
    url = create_pg_database(plain=True)
    try:
        yield url
    finally:
        drop_pg_database(url)


def test_a_store_in_its_own_schema_leaves_the_applications_tables_as_they_were(
    shared_db: str, tmp_path: Path
) -> None:
    before = app_state(shared_db)
    url = with_schema(shared_db, "threadkeep")
    with Threadkeep.open(url) as tk:
        want = fill(tk)  # messages, todos, snapshot, summary, uploads in the postgres blob store
        me = want["me"]
        assert isinstance(me, Actor)
        sid = str(want["session"])
        first = tk.get_messages(me, sid)[0]
        branch = tk.fork_session(me, sid, at_message_id=first.id).value
        tk.append_message(me, branch.id, {"role": "user", "content": "a cormorant"})
        assert [h.session_id for h in tk.search(me, "cormorant").items] == [branch.id]
        changed = tk.shape_changes(me, "messages", 0).changes
        assert "a cormorant" in [c.row["content"] for c in changed if c.row]
    with Threadkeep.open(url) as tk:  # reopened: all there
        found_everything(tk, want)
        assert [m.content for m in tk.get_history(me, branch.id)] == ["hi", "a cormorant"]

    assert app_state(shared_db) == before
    assert tables_in(shared_db, "threadkeep") == set(tables.metadata.tables) | {
        "alembic_version",
        "search_title_grams",  # revision 0013, not declared in tables.py
    }
    assert psql(shared_db, "SELECT version_num FROM threadkeep.alembic_version") == [
        (migrations.code_head(),)
    ]
    functions = psql(
        shared_db,
        "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    )
    assert functions == []  # nothing of threadkeep's (search's helper) landed in public


def test_random_writes_of_every_kind_in_a_shared_database_keep_the_log_and_views_true(
    shared_db: str, tmp_path: Path
) -> None:
    """tests/random_writes.py in two threads (uploads, rewinds, purges,
    imports, retention...) on a store in its own schema: the log rebuilds
    every synced table and every view agrees, and the application's rows are
    untouched."""
    before = app_state(shared_db)
    with Threadkeep.open(with_schema(shared_db, "chat")) as tk:
        world = make_world(tk, tmp_path / "files")
        me = world.me
        start = {Shape(t, me.user_id): world.tk.shape_snapshot(me, t) for t in tables.SYNCED_TABLES}
        with running_in_threads(*random_writers(world)):
            pass
        assert_log_rebuilds(world.tk, me, start)
        assert_views_agree(world.tk, me)
    assert app_state(shared_db) == before


def test_two_stores_in_two_schemas_of_one_database_see_only_their_own(shared_db: str) -> None:
    a_url, b_url = with_schema(shared_db, "tenant_a"), with_schema(shared_db, "tenant_b")
    with Threadkeep.open(a_url) as a, Threadkeep.open(b_url) as b:
        for tk, word in ((a, "apple"), (b, "banana")):
            me = Actor(tk.create_user("same", id="same-user").value.id)
            tk.create_session(me, id="same-session", title=word)
            tk.append_message(me, "same-session", {"role": "user", "content": word})
        me = Actor("same-user")
        assert [m.content for m in a.get_messages(me, "same-session")] == ["apple"]
        assert [m.content for m in b.get_messages(me, "same-session")] == ["banana"]
        assert a.search(me, "banana").items == [] and b.search(me, "apple").items == []
        inserted = [c.row for c in a.shape_changes(me, "sessions", 0).changes if c.op == "insert"]
        assert [r["title"] for r in inserted if r] == ["apple"]
        a_channel, b_channel = a.engine.change_channel(), b.engine.change_channel()
        assert a_channel.channel != b_channel.channel
    # Default fs blob directories differ too: one's cleanup must never take
    # bytes that only the other names.
    assert default_path(a_url) != default_path(b_url) != default_path(shared_db)


def test_a_commit_wakes_the_listeners_of_its_own_schema_only(shared_db: str) -> None:
    woken: dict[str, int] = {"a": 0, "a2": 0, "b": 0}
    channels = {
        name: PgChangeChannel(with_schema(shared_db, schema))
        for name, schema in (("a", "tenant_a"), ("a2", "tenant_a"), ("b", "tenant_b"))
    }

    def counter(name: str) -> Any:
        def on_notify() -> None:
            woken[name] += 1

        return on_notify

    try:
        for name, ch in channels.items():
            ch.start(counter(name))
        deadline = time.monotonic() + 20
        while min(woken.values()) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # each listener wakes once when its LISTEN is in place
        assert min(woken.values()) >= 1, woken
        time.sleep(0.5)
        settled = dict(woken)
        channels["a"].notify()
        deadline = time.monotonic() + 10
        while woken["a2"] == settled["a2"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # time enough for a stray notification to arrive
        assert woken["a2"] > settled["a2"]
        assert woken["b"] == settled["b"]
    finally:
        for ch in channels.values():
            ch.stop()


def test_without_a_schema_another_applications_alembic_version_is_refused(
    shared_db: str,
) -> None:
    before, names = app_state(shared_db), schemas(shared_db)
    with pytest.raises(SchemaInUse) as err:
        Threadkeep.open(shared_db)
    message = str(err.value)
    assert APP_REVISION in message and "?schema=threadkeep" in message
    assert "nothing was written" in message
    assert app_state(shared_db) == before and schemas(shared_db) == names

    result = CliRunner().invoke(
        app, ["migrate", "--database-url", shared_db], prog_name="threadkeep"
    )
    assert result.exit_code == 2, result.output
    assert APP_REVISION in result.output and "?schema=threadkeep" in result.output
    doctor = CliRunner().invoke(
        app, ["doctor", "--database-url", shared_db], prog_name="threadkeep"
    )
    assert doctor.exit_code == 1 and "?schema=threadkeep" in doctor.output
    assert app_state(shared_db) == before


def test_without_a_schema_tables_named_like_threadkeeps_are_refused(other_db: str) -> None:
    psql(other_db, "CREATE TABLE users (id serial PRIMARY KEY); CREATE TABLE todos (x int)")
    before = app_state(other_db)
    with pytest.raises(SchemaInUse) as err:
        Threadkeep.open(other_db)
    assert "todos, users" in str(err.value)
    assert app_state(other_db) == before  # no alembic_version, no other table


def test_a_newer_threadkeeps_revision_is_still_told_apart_from_an_application(
    other_db: str,
) -> None:
    url = with_schema(other_db, "threadkeep")
    Threadkeep.open(url).close()
    psql(other_db, "UPDATE threadkeep.alembic_version SET version_num = '0042'")
    with pytest.raises(SchemaTooNew):
        Threadkeep.open(url)


@pytest.mark.parametrize(
    "name",
    ["Threadkeep", "pg_temp", "1st", "", "a;drop table users", "x" * 46, "information_schema"],
)
def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(other_db: str, name: str) -> None:
    before = schemas(other_db)
    url = sa.make_url(other_db).render_as_string(hide_password=False) + "?schema=" + name
    with pytest.raises(StoreError, match="invalid schema"):
        Threadkeep.open(url)
    assert schemas(other_db) == before and tables_in(other_db, "public") == set()


def test_migrate_creates_the_schema_and_check_does_not(other_db: str) -> None:
    url = with_schema(other_db, "chat")
    runner = CliRunner()
    check = runner.invoke(app, ["migrate", "--check", "--database-url", url])
    assert check.exit_code == 1 and "not up to date" in check.output
    assert "chat" not in schemas(other_db)
    done = runner.invoke(app, ["migrate", "--database-url", url])
    assert done.exit_code == 0, done.output
    assert "chat" in schemas(other_db)
    assert runner.invoke(app, ["migrate", "--check", "--database-url", url]).exit_code == 0
    assert tables_in(other_db, "public") == set()


def test_a_role_that_may_not_create_the_schema_is_told_what_to_ask_for(other_db: str) -> None:
    role = f"tk_role_{uuid.uuid4().hex[:8]}"
    psql(other_db, f"CREATE ROLE {role} LOGIN")
    try:
        name = sa.make_url(other_db).database
        psql(other_db, f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC')
        url = with_schema(
            sa.make_url(other_db).set(username=role).render_as_string(hide_password=False), "chat"
        )
        with pytest.raises(StoreError) as err:
            Threadkeep.open(url)
        assert f'CREATE SCHEMA "chat" AUTHORIZATION "{role}"' in str(err.value)
        assert "chat" not in schemas(other_db)
        psql(other_db, f'CREATE SCHEMA "chat" AUTHORIZATION "{role}"')  # the administrator
        with Threadkeep.open(url) as tk:
            me = Actor(tk.create_user("ada").value.id)
            tk.create_session(me, id="s1")
            assert tk.append_message(me, "s1", {"role": "user", "content": "hi"}).value.seq == 1
    finally:
        psql(
            other_db, f"DROP SCHEMA IF EXISTS chat CASCADE; DROP OWNED BY {role}; DROP ROLE {role}"
        )


def test_a_backup_holds_the_schema_alone_and_restores_beside_another_application(
    shared_db: str, tmp_path: Path
) -> None:
    url = with_schema(shared_db, "threadkeep")
    with Threadkeep.open(url) as tk:
        want = fill(tk)
        manifest = backup_store(tk, tmp_path / "backup")
    assert manifest.schema == "threadkeep"
    listing = subprocess.run(
        ["pg_restore", "--list", str(tmp_path / "backup" / manifest.database_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert " public " not in listing and "TABLE DATA threadkeep messages" in listing

    # Restored into another database the application also uses (its rows are
    # not "data in the target": the restore writes only threadkeep's schema).
    target = create_pg_database(plain=True)
    try:
        psql(target, APP_TABLES)
        psql(target, "INSERT INTO public.messages (body) VALUES ('written after the backup')")
        before = app_state(target)
        for wrong in (target, with_schema(target, "elsewhere")):
            with pytest.raises(BackupError, match="schema=threadkeep"):
                restore_store(tmp_path / "backup", settings=load_settings(database_url=wrong))
            assert app_state(target) == before and schemas(target) == schemas(shared_db) - {
                "threadkeep"
            }
        settings = load_settings(database_url=with_schema(target, "threadkeep"))
        restore_store(tmp_path / "backup", settings=settings)
        with Threadkeep.open(settings=settings) as restored:
            found_everything(restored, want)
        assert app_state(target) == before
    finally:
        drop_pg_database(target)


def test_copy_moves_a_store_into_a_schema_and_between_schemas(
    shared_db: str, tmp_path: Path
) -> None:
    before = app_state(shared_db)
    with Threadkeep.open(f"sqlite:///{tmp_path / 'chat.db'}") as source:
        want = fill(source)
        into_a = load_settings(database_url=with_schema(shared_db, "tenant_a"))
        copy_store(source, into_a)
    with Threadkeep.open(settings=into_a) as a:
        found_everything(a, want)
        with pytest.raises(CopyError, match="is the source database itself"):
            copy_store(a, into_a)
        into_b = load_settings(database_url=with_schema(shared_db, "tenant_b"))
        copy_store(a, into_b)
    with Threadkeep.open(settings=into_b) as b:
        found_everything(b, want)
    assert app_state(shared_db) == before


def test_the_electric_proxy_names_the_table_in_its_schema() -> None:
    shape = Shape("messages", "ada", "s1")
    plain = dict(upstream_params([], shape, None))
    qualified = dict(upstream_params([], shape, None, "chat"))
    assert plain["table"] == "messages" and qualified["table"] == "chat.messages"
    assert plain["where"] == qualified["where"]


def test_the_schema_becomes_every_connections_search_path_and_only_that() -> None:
    url = "postgresql://u:p%40ss@db.internal:6543/app?schema=chat&sslmode=require"
    assert pg_url.schema_of(url) == "chat"
    assert "schema" not in pg_url.sa_url(url).query
    assert pg_url.sa_url(url).query["options"] == "-c search_path=chat"
    info = psycopg.conninfo.conninfo_to_dict(pg_url.conninfo(url))
    assert info == {
        "host": "db.internal",
        "port": "6543",
        "user": "u",
        "password": "p@ss",
        "dbname": "app",
        "sslmode": "require",
        "options": "-c search_path=chat",
        "fallback_application_name": "threadkeep",
    }
    given = "postgresql://u@h/app?schema=chat&options=-c%20statement_timeout%3D5000"
    assert pg_url.sa_url(given).query["options"] == "-c statement_timeout=5000 -c search_path=chat"
    assert pg_url.schema_of("postgresql://u@h/app") is None
    assert "password" not in psycopg.conninfo.conninfo_to_dict(
        pg_url.conninfo(url, with_password=False)
    )


def test_a_search_path_lost_on_the_way_is_refused_before_anything_is_written(
    shared_db: str, search_path_lost: None
) -> None:
    """A pooler that drops libpq's startup options (PgBouncer with
    ignore_startup_parameters) would leave threadkeep's statements in
    ``public``. Simulated by resetting the search path as each connection
    opens: the store refuses to open, and nothing is written anywhere."""
    before, names = app_state(shared_db), schemas(shared_db)
    with pytest.raises(StoreError, match="did not reach the server"):
        Threadkeep.open(with_schema(shared_db, "threadkeep"))
    assert app_state(shared_db) == before and schemas(shared_db) == names


def test_a_new_schema_beside_a_store_in_public_says_where_the_sessions_are(
    other_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Adding ?schema= to the URL of a deployment that ran in public gives an
    empty store: nothing is lost (public is untouched), and the log says
    where the sessions are and how to move them."""
    with Threadkeep.open(other_db) as old:
        me = Actor(old.create_user("ada").value.id)
        old.create_session(me, title="kept")
    with caplog.at_level("WARNING", logger="threadkeep.store.migrate"):
        with Threadkeep.open(with_schema(other_db, "chat")) as new:
            assert new.list_users() == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "1 session(s)" in said[0] and "threadkeep copy" in said[0]
    with Threadkeep.open(other_db) as old:  # untouched
        assert [s.title for s in old.list_sessions(me).items] == ["kept"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="threadkeep.store.migrate"):
        Threadkeep.open(with_schema(other_db, "chat")).close()  # not new any more
        Threadkeep.open(with_schema(other_db, "fresh")).close()
    assert len(caplog.records) == 1  # only for the new schema


def test_a_new_schema_beside_an_applications_tables_says_nothing(
    shared_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="threadkeep.store.migrate"):
        Threadkeep.open(with_schema(shared_db, "chat")).close()
    assert caplog.records == []


def test_the_tag_index_follows_a_write_made_from_outside_the_schema(shared_db: str) -> None:
    """session_tags is kept by a trigger function that runs with the store's
    search_path, not the caller's: an operator's UPDATE from a connection
    on ``public`` (which has an application table named ``sessions``)
    still updates threadkeep's index, and nothing of the application's."""
    before = app_state(shared_db)
    url = with_schema(shared_db, "threadkeep")
    with Threadkeep.open(url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, tags=["old"]).value
    psql(shared_db, f"UPDATE threadkeep.sessions SET tags = '[\"new\"]' WHERE id = '{s.id}'")
    with Threadkeep.open(url) as tk:
        assert [x.id for x in tk.list_sessions(me, tag="new").items] == [s.id]
        assert tk.list_sessions(me, tag="old").items == []
    assert app_state(shared_db) == before


def test_the_title_grams_follow_a_write_made_from_outside_the_schema(shared_db: str) -> None:
    """search_title_grams (revision 0013) likewise: its trigger function
    runs with the store's search_path, so an UPDATE of the title from a
    connection on ``public`` keeps threadkeep's index, and the list finds
    the new title through it."""
    before = app_state(shared_db)
    url = with_schema(shared_db, "threadkeep")
    with Threadkeep.open(url) as tk:
        me = Actor(tk.create_user("ada").value.id)
        s = tk.create_session(me, title="old title").value
    psql(shared_db, f"UPDATE threadkeep.sessions SET title = 'Renamed Plan' WHERE id = '{s.id}'")
    with Threadkeep.open(url) as tk, pytest.MonkeyPatch.context() as mp:
        mp.setattr(session_q, "WALK_WINDOW", 0)  # every page through the index
        assert [x.id for x in tk.list_sessions(me, title_contains="plan").items] == [s.id]
        assert tk.list_sessions(me, title_contains="old").items == []
        assert all(c.ok for c in tk.check_search_index())
    assert app_state(shared_db) == before

"""Fixtures shared by the whole suite.

``db_url`` (and everything built on it: ``tk``, ``actor``...) is parametrised
over both engines, so every test that uses it runs on SQLite and on
PostgreSQL, each with a fresh database (migrated once per worker and
copied or wiped for each test where the test opens a store on it anyway:
tests/db_pool.py).

PostgreSQL: ``THREADKEEP_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) names a database we may connect
to and create scratch databases from. When it is unreachable the PostgreSQL
tests are skipped with a message saying how to enable them, except under
``CI=true``, where a missing PostgreSQL fails the run.
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings

from db_pool import PostgresPool, SqliteTemplate
from pgbouncer import PgBouncer, find_binary
from threadkeep import Actor, Threadkeep
from threadkeep.config import BlobSettings, Limits, load_settings
from threadkeep.store import pg_url, tables

PG_ADMIN_URL = os.environ.get("THREADKEEP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgres")
_pg_state: dict[str, Any] = {}


def _pg_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    if "error" not in _pg_state:
        try:
            with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_state["error"] = None
        except psycopg.Error as exc:
            _pg_state["error"] = str(exc).strip().splitlines()[0]
    return _pg_state["error"]  # type: ignore[no-any-return]


def require_pg() -> None:
    error = _pg_available()
    if error is None:
        return
    message = (
        f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({error}). Start it "
        "(e.g. `pg_ctlcluster 15 main start`) or point THREADKEEP_TEST_PG_URL at a "
        "server where the user may CREATE DATABASE."
    )
    if _in_ci():
        pytest.fail("CI requires PostgreSQL: " + message, pytrace=False)
    pytest.skip(message)


def _with_db(url: str, dbname: str) -> str:
    return sa.make_url(url).set(database=dbname).render_as_string(hide_password=False)


# Set, every PostgreSQL test runs on a store in this schema of a database
# whose ``public`` holds an application's tables with threadkeep's names
# (tests/test_pg_schema.py runs that case in every CI run; this runs the
# whole suite so, e.g. `THREADKEEP_TEST_PG_SCHEMA=chat make test`).
PG_SCHEMA = os.environ.get("THREADKEEP_TEST_PG_SCHEMA") or None
_DECOYS = """
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('3f2a9c1d7b4e');
CREATE TABLE users (id text PRIMARY KEY, name text);
CREATE TABLE sessions (id text PRIMARY KEY, owner_id text, title text);
CREATE TABLE messages (id text PRIMARY KEY, session_id text, content text);
CREATE TABLE changes (log_offset bigint PRIMARY KEY);
"""


# Set, every PostgreSQL test's store reaches its database through a real
# PgBouncer in transaction mode, with ?pgbouncer=true (tests/test_pgbouncer.py
# runs that case in every CI run; this runs the whole suite so, e.g.
# `THREADKEEP_TEST_PG_POOLER=1 make test`).
PG_POOLER = bool(os.environ.get("THREADKEEP_TEST_PG_POOLER"))
_bouncer: list[PgBouncer] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_pgbouncer() -> PgBouncer:
    """This worker's PgBouncer, started on first use; skips (fails in CI)
    where PgBouncer is not installed."""
    if not _bouncer:
        binary = find_binary()
        if binary is None:
            message = (
                "PgBouncer is not installed: `apt install pgbouncer` (Debian, Ubuntu) "
                "runs the tests of threadkeep behind a transaction pooler"
            )
            if _in_ci():
                pytest.fail("CI requires PgBouncer: " + message, pytrace=False)
            pytest.skip(message)
        _bouncer.append(PgBouncer(binary, PG_ADMIN_URL))
        atexit.register(_bouncer[0].stop)
    return _bouncer[0]


def _as_tests_reach_it(url: str) -> str:
    """``url`` as the store under test reaches it: through PgBouncer in
    THREADKEEP_TEST_PG_POOLER's mode, else as it is."""
    return shared_pgbouncer().url(url) if PG_POOLER else url


def create_pg_database(*, plain: bool = False) -> str:
    """A fresh scratch database; returns its URL. ``plain``: never in
    THREADKEEP_TEST_PG_SCHEMA's set-up, for tests that make their own."""
    require_pg()
    name = f"tk_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(PG_ADMIN_URL, name)
    if PG_SCHEMA is None or plain:
        return url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_DECOYS)
    u = sa.make_url(url).update_query_dict({"schema": PG_SCHEMA})
    return u.render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = sa.make_url(url).database
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def empty_database(engine: str, path: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``engine``: a SQLite file at
    ``path`` (not created), or a scratch PostgreSQL database, dropped after."""
    if engine == "sqlite":
        yield f"sqlite:///{path}"
        return
    url = create_pg_database()
    try:
        yield _as_tests_reach_it(url)
    finally:
        drop_pg_database(url)


@contextmanager
def running_in_threads(*loops: Callable[[], None]) -> Iterator[None]:
    """Call each of ``loops`` over and over, each in its own thread, until the
    block ends. What a loop raises is raised after the block (the threads
    stopped and joined), so a race test cannot pass over a failing writer."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run(loop: Callable[[], None]) -> None:
        try:
            while not stop.is_set():
                loop()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(loop,)) for loop in loops]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()
    if failures:
        raise failures[0]


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No config file, data dir or database URL leaks in from the machine.
    A module that reads settings opts in with
    ``pytestmark = pytest.mark.usefixtures("isolated_settings")``."""
    monkeypatch.setenv("THREADKEEP_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("THREADKEEP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("THREADKEEP_DATABASE_URL", raising=False)


@pytest.fixture
def pg_db() -> Iterator[str]:
    """An empty PostgreSQL database, for the tests about that engine alone:
    reached directly, even in THREADKEEP_TEST_PG_POOLER's mode (those tests
    look at the server's own connections and sessions)."""
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def with_schema(url: str, schema: str | None) -> str:
    """``url`` with ``?schema=`` (as it is, for None)."""
    if schema is None:
        return url
    u = sa.make_url(url).update_query_dict({"schema": schema})
    return u.render_as_string(hide_password=False)


def server_conninfo(url: str) -> str:
    """A libpq connection string to the server itself for a store URL of the
    tests' (through PgBouncer in THREADKEEP_TEST_PG_POOLER's mode), with the
    URL's schema: for a test's own look at the database, or its own DDL."""
    u = sa.make_url(url)
    if u.query.get("pgbouncer") == "true":
        admin = sa.make_url(PG_ADMIN_URL)
        u = u.set(host=admin.host, port=admin.port).difference_update_query(["pgbouncer"])
    return pg_url.conninfo(u)


def skip_behind_a_pooler(url: str, why: str) -> None:
    """Skip a test of what a transaction pooler cannot do (THREADKEEP_TEST_PG_POOLER)."""
    if "pgbouncer=true" in url:
        pytest.skip(f"through a transaction pooler, {why}")


@pytest.fixture
def search_path_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pooler that drops libpq's startup options (PgBouncer) does to
    a store with ``?schema=``: every new connection's search path is back
    to ``public``."""
    from threadkeep.store import postgres

    real = postgres.PostgresStore._on_connect

    def lose_the_search_path(dbapi_conn: Any, record: Any) -> None:
        real(dbapi_conn, record)
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET search_path TO public")
        dbapi_conn.autocommit = autocommit

    monkeypatch.setattr(postgres.PostgresStore, "_on_connect", staticmethod(lose_the_search_path))


@pytest.fixture
def pgbouncer() -> PgBouncer:
    """A PgBouncer in transaction mode in front of the test server."""
    require_pg()
    return shared_pgbouncer()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def _pg_pool() -> Iterator[PostgresPool]:
    pool = PostgresPool(create_pg_database, drop_pg_database, PG_ADMIN_URL)
    try:
        yield pool
    finally:
        pool.close()


@contextmanager
def migrated_database(request: pytest.FixtureRequest, engine: str, path: Path) -> Iterator[str]:
    """A migrated database of ``engine`` for one user of it: on SQLite a copy
    of the worker's migrated file at ``path``, on PostgreSQL one from the
    worker's pool, given back (wiped) afterwards."""
    if engine == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("_sqlite_template")
        yield template.copy_to(path)
        return
    require_pg()
    if PG_SCHEMA is not None:  # the pool's wipe knows public only
        with empty_database(engine, path) as url:
            Threadkeep.open(url).close()
            yield url
        return
    pool: PostgresPool = request.getfixturevalue("_pg_pool")
    url = pool.take()
    try:
        yield _as_tests_reach_it(url)
    finally:
        pool.give_back(url)


@pytest.fixture
def db_url(engine_name: str, tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of a fresh database on the engine under test: empty, unless the
    test also uses ``tk``, whose opening would migrate it anyway; then it is
    already migrated (tests/db_pool.py), which saves a migration per test."""
    if "tk" in request.fixturenames:
        with migrated_database(request, engine_name, tmp_path / "threadkeep.db") as url:
            yield url
        return
    with empty_database(engine_name, tmp_path / "threadkeep.db") as url:
        yield url


@pytest.fixture
def tk(db_url: str) -> Iterator[Threadkeep]:
    store = Threadkeep.open(db_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def actor(tk: Threadkeep) -> Actor:
    return Actor(tk.create_user("ada").value.id)


@pytest.fixture
def other_actor(tk: Threadkeep) -> Actor:
    return Actor(tk.create_user("mallory").value.id)


def shared_store_fixture(prefix: str = "shared") -> Any:
    """A module-scoped store per engine, for large tables of cases that each
    make their own users and sessions: every row is scoped to a user, so cases
    sharing a database cannot see each other, and a fresh PostgreSQL database
    per case would cost more than the case. Assign it in a test module:
    ``store = shared_store_fixture()``."""

    @pytest.fixture(scope="module", params=ENGINES)
    def _store(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Threadkeep]:
        path = tmp_path_factory.mktemp(prefix) / "threadkeep.db"
        with migrated_database(request, request.param, path) as url:
            store = Threadkeep.open(url)
            try:
                yield store
            finally:
                store.close()

    return _store


@pytest.fixture
def retried(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """The errors the PostgreSQL store met and ran its transaction again for
    (deadlocks, serialization failures): nothing is lost by a retry, but a
    deadlock stalls its writers for deadlock_timeout, so a test of lock order
    asserts this stays empty. Always empty on SQLite."""
    from threadkeep.store import postgres

    seen: list[BaseException] = []
    real = postgres.is_retryable

    def is_retryable(exc: BaseException) -> bool:
        if real(exc):
            seen.append(exc)
            return True
        return False

    monkeypatch.setattr(postgres, "is_retryable", is_retryable)
    return seen


def row_counts(tk: Threadkeep) -> dict[str, int]:
    """Rows per table: take before and after a failing call to show it wrote nothing."""
    out: dict[str, int] = {}
    with tk.engine.sa_engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            out[table.name] = conn.execute(
                sa.select(sa.func.count()).select_from(table)
            ).scalar_one()
        out["log_state.last_offset"] = conn.execute(
            sa.select(tables.log_state.c.last_offset)
        ).scalar_one()
    return out


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto in server mode) on a free port: the S3
    blob store is tested over real HTTP, never against the network."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_blob_settings(endpoint: str) -> BlobSettings:
    """Settings of an S3 blob store in a fresh bucket on the local server."""
    import boto3

    bucket = f"tk-{uuid.uuid4().hex[:12]}"
    settings = BlobSettings(
        backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_access_key_id="test",
        s3_secret_access_key="test",  # type: ignore[arg-type]
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=bucket)
    client.close()
    return settings


# --- uploads: a store per (engine, blob backend) pair ---------------------------
# Both engines, and every blob backend: fs (SQLite's default), postgres
# (PostgreSQL's default; it keeps the bytes in that database) and s3 on each
# engine. (The blob backends themselves, engine apart, are tested in
# tests/contract/test_blob_stores.py.)

UPLOAD_PAIRS = [
    ("sqlite", "fs"),
    ("sqlite", "s3"),
    ("postgres", "postgres"),
    ("postgres", "s3"),
]


@dataclass
class Bench:
    """A store under test, and what it takes to open it again."""

    tk: Threadkeep
    url: str
    blobs: BlobSettings
    engine_name: str
    backend: str

    def reopen(self, limits: Limits | None = None) -> Threadkeep:
        self.tk.close()
        settings = load_settings(blobs=self.blobs, limits=limits or self.tk.limits)
        self.tk = Threadkeep.open(self.url, settings=settings)
        return self.tk


def blob_settings_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> BlobSettings:
    if backend == "fs":
        return BlobSettings(backend="fs", path=str(tmp_path / "blobs"))
    if backend == "postgres":
        return BlobSettings(backend="postgres")
    return s3_blob_settings(request.getfixturevalue("s3_endpoint"))


@pytest.fixture(params=UPLOAD_PAIRS, ids=[f"{e}-{b}" for e, b in UPLOAD_PAIRS])
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    engine_name, backend = request.param
    blobs = blob_settings_for(backend, tmp_path, request)
    with migrated_database(request, engine_name, tmp_path / "threadkeep.db") as url:
        settings = load_settings(blobs=blobs)
        b = Bench(Threadkeep.open(url, settings=settings), url, blobs, engine_name, backend)
        try:
            yield b
        finally:
            b.tk.close()


@pytest.fixture
def me(bench: Bench) -> Actor:
    return Actor(bench.tk.create_user("ada").value.id)


@pytest.fixture
def them(bench: Bench) -> Actor:
    return Actor(bench.tk.create_user("mallory").value.id)


def write_past_the_index(tk: Threadkeep, actor: Actor, session_id: str, content: str) -> str:
    """Append a message the way a threadkeep older than schema revision 0007
    does once another process has migrated its SQLite file: a plain INSERT,
    which used to fire the index trigger that 0007 dropped. The message is in
    the table and not in the search index."""
    from threadkeep.model.common import utcnow
    from threadkeep.model.ids import new_id

    mid = new_id()
    s, m = tables.sessions, tables.messages
    with tk.engine.sa_engine.begin() as conn:
        head = conn.execute(
            s.update()
            .where(s.c.id == session_id, s.c.owner_id == actor.user_id)
            .values(head_seq=s.c.head_seq + 1)
            .returning(s.c.head_seq)
        ).scalar_one()
        conn.execute(
            m.insert().values(
                id=mid,
                owner_id=actor.user_id,
                session_id=session_id,
                seq=head,
                role="user",
                content=content,
                metadata={},
                created_at=utcnow(),
                status="complete",
            )
        )
    return mid


def apply_changes(state: dict[str, dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """What a client does with change messages (partial updates merged)."""
    for m in messages:
        op = m.get("headers", {}).get("operation")
        if op is None:
            if m.get("headers", {}).get("control") == "must-refetch":
                state.clear()
            continue
        key = m["key"]
        if op == "insert":
            assert key not in state, f"insert of a key already held: {key}"
            state[key] = dict(m["value"])
        elif op == "update":
            if key in state:
                state[key].update(m["value"])
        else:
            state.pop(key, None)


def db_property(max_examples: int) -> settings:
    """Hypothesis settings for a property whose every example does real
    database work: no deadline, no example database, and no shrinking (a
    failure is reported as generated), so that a bug cannot turn the suite
    into minutes."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

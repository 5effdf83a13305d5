"""How many PostgreSQL connections a store holds: the ``pool`` settings
(config.PoolSettings, docs/postgresql.md "Connections")."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from typer.testing import CliRunner

from threadkeep import Actor, StoreBusy, Threadkeep
from threadkeep.cli.main import app
from threadkeep.config import load_settings
from threadkeep.store import pg_url

sys.path.insert(0, str(Path(__file__).parent / "api"))

from api_helpers import api_client

pytestmark = pytest.mark.usefixtures("isolated_settings")


def _peak_connections(url: str, stop: threading.Event, peak: list[int]) -> None:
    """Sample the database's backends (but this one) until ``stop``."""
    with psycopg.connect(pg_url.conninfo(url), autocommit=True) as conn:
        while not stop.is_set():
            (n,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()  # type: ignore[misc]
            peak[0] = max(peak[0], int(n))
            time.sleep(0.002)


def test_a_store_holds_no_more_connections_than_its_pool_settings_allow(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No overflow: a connection closed under load leaves its backend in
    # pg_stat_activity for a moment, which the sampler would count twice.
    monkeypatch.setenv("THREADKEEP_POOL__SIZE", "2")
    monkeypatch.setenv("THREADKEEP_POOL__MAX_OVERFLOW", "0")
    settings = load_settings(database_url=pg_db)
    with Threadkeep.open(settings=settings) as tk:
        pool = tk.engine.sa_engine.pool
        assert (pool.size(), pool._max_overflow) == (2, 0)  # type: ignore[attr-defined]
        me = Actor(tk.create_user("ada").value.id)
        sessions = [tk.create_session(me).value.id for _ in range(8)]
        stop, peak = threading.Event(), [0]
        sampler = threading.Thread(target=_peak_connections, args=(pg_db, stop, peak))
        sampler.start()
        errors: list[BaseException] = []

        def work(sid: str) -> None:
            try:
                for i in range(25):
                    tk.append_message(me, sid, {"role": "user", "content": f"m{i}"})
                    tk.list_sessions(me, limit=5)
                    tk.last_messages(me, sid, 3)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(sid,)) for sid in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        sampler.join()
        assert errors == []
        for sid in sessions:  # the threads waited for a connection; nothing lost
            assert [m.seq for m in tk.get_messages(me, sid)] == list(range(1, 26))
    # Two sets (the pool, the append's) of at most size + max_overflow each.
    assert 1 <= peak[0] <= 2 * (2 + 0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("THREADKEEP_POOL__SIZE", "0"), ("THREADKEEP_POOL__MAX_OVERFLOW", "-1")],
)
def test_pool_settings_out_of_range_are_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match="pool"):
        load_settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(
        app, ["migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 2 and "pool" in result.output


def test_an_exhausted_pool_is_a_store_busy_error_and_a_503_with_nothing_written(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection held past the pool's timeout: reads and writes raise
    StoreBusy (not SQLAlchemy's TimeoutError, which the API would answer
    with a bare 500), the API answers 503 with Retry-After, and nothing was
    written."""
    monkeypatch.setenv("THREADKEEP_POOL__SIZE", "1")
    monkeypatch.setenv("THREADKEEP_POOL__MAX_OVERFLOW", "0")
    with Threadkeep.open(settings=load_settings(database_url=pg_db)) as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        token = tk.create_token(me, "ui").value.token
        tk.engine.sa_engine.pool._timeout = 0.3  # type: ignore[attr-defined]
        with api_client(tk) as api:
            held = tk.engine.sa_engine.connect()  # the pool's only connection
            try:
                for call in (
                    lambda: tk.create_session(me, title="never"),
                    lambda: tk.list_sessions(me),
                    lambda: tk.get_messages(me, sid),
                ):
                    with pytest.raises(StoreBusy, match=r"pool\.size"):
                        call()
                r = api.post(
                    "/v1/sessions",
                    json={"title": "never"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 503, r.text
                assert r.json()["type"].endswith("database-busy")
                assert r.headers["retry-after"] == "1"
            finally:
                held.close()
        titles = [s.title for s in tk.list_sessions(me).items]
        assert "never" not in titles and len(titles) == 1


@pytest.mark.parametrize(
    ("query", "name"), [("", "threadkeep"), ("?application_name=chat-api", "chat-api")]
)
def test_threadkeeps_connections_are_named_for_the_operator(
    pg_db: str, query: str, name: str
) -> None:
    """Every connection a store opens (the pool, the append's, pg tools) is
    named ``threadkeep`` in pg_stat_activity, unless the URL names it."""
    url = sa.make_url(pg_db).update_query_string(query.lstrip("?"), append=True)
    with Threadkeep.open(url.render_as_string(hide_password=False)) as tk:
        me = Actor(tk.create_user("ada").value.id)
        sid = tk.create_session(me).value.id
        tk.append_message(me, sid, {"role": "user", "content": "hi"})  # the append's own set
        with psycopg.connect(pg_url.conninfo(pg_db), autocommit=True) as conn:
            names = conn.execute(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
    assert len(names) >= 2 and {n for (n,) in names} == {name}


def test_no_operation_holds_one_connection_while_it_waits_for_another(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one connection in all, an upload and an erasure with blobs in the
    database still finish: what they ask the blob store under a blob's lock
    runs in their own transaction (blobs/contract.py ``in_transaction``). On
    a second connection it would wait for one that its own transaction
    holds, until the pool's timeout; through a transaction pooler whose
    server connections are all held that way, for ever."""
    monkeypatch.setenv("THREADKEEP_POOL__SIZE", "1")
    monkeypatch.setenv("THREADKEEP_POOL__MAX_OVERFLOW", "0")
    monkeypatch.setenv("THREADKEEP_BLOBS__BACKEND", "postgres")
    settings = load_settings(database_url=pg_db)
    done: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with Threadkeep.open(settings=settings) as tk:
                ada = tk.create_user("ada").value
                sid = tk.create_session(Actor(ada.id)).value.id
                up = tk.upload(Actor(ada.id), sid, [b"bytes of a file"], filename="a.txt").value
                done.append("upload")
                tk.erase_user(ada.id)
                done.append("erase")
                assert not tk.blobs.exists(up.sha256)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=20)  # the pool waits 30 s for a connection
    assert not failures, failures[0]
    assert done == ["upload", "erase"]


def test_doctor_checks_a_pool_of_one_without_waiting_for_a_second_connection(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It opens two connections at once to check the pool, but never more
    than the settings allow: a second would wait out the pool's 30 s."""
    monkeypatch.setenv("THREADKEEP_POOL__SIZE", "1")
    monkeypatch.setenv("THREADKEEP_POOL__MAX_OVERFLOW", "0")
    Threadkeep.open(pg_db).close()
    t0 = time.monotonic()
    result = CliRunner().invoke(app, ["doctor", "--json", "--database-url", pg_db])
    took = time.monotonic() - t0
    pool = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "pool")
    assert pool["status"] == "ok", pool
    assert took < 20

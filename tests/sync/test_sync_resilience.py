"""Sync across server restarts and across instances.

* §8.10: the server is killed (SIGKILL) while a client's long-poll is held and
  started again on the same port; the client retries the same offset and
  handle and continues with nothing lost and nothing twice.
* PostgreSQL, two instances: a write through one wakes a long-poll held by the
  other at once (LISTEN/NOTIFY; the fallback poll is set to 10 s so only a
  notification can explain a fast wake-up); and 8 concurrent writers through
  both instances while 3 consumers follow: every consumer's final state equals
  the database.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sync_helpers import Probe, Serve, new_caller, probes, require_node, up_to_date

from conftest import apply_changes, skip_behind_a_pooler
from pgbouncer import PgBouncer
from threadkeep import Threadkeep

FAST = {"THREADKEEP_SYNC__LONG_POLL_SECONDS": "3", "THREADKEEP_SYNC__POLL_SECONDS": "0.5"}


def _contents(p: Probe) -> list[str]:
    return [m["value"]["content"] for m in p.changes() if m["headers"]["operation"] == "insert"]


def test_a_client_resumes_after_the_server_is_killed_during_a_long_poll(
    tk: Threadkeep, db_url: str, tmp_path: Path
) -> None:
    require_node()
    me = new_caller(tk)
    s = tk.create_session(me.actor).value
    tk.append_message(me.actor, s.id, {"role": "user", "content": "m0"})
    server = Serve(db_url, tmp_path, FAST)
    try:
        with probes() as ps:
            ps.append(p := Probe(server.shape_url(), me.token, params={"table": "messages"}))
            p.wait_for(up_to_date)
            time.sleep(0.5)  # the client is now holding a live request
            port = server.port
            server.kill()
            for i in range(1, 4):  # written while no server runs
                tk.append_message(me.actor, s.id, {"role": "user", "content": f"m{i}"})
            server.start(port)
            tk.append_message(me.actor, s.id, {"role": "user", "content": "m4"})
            p.wait_for(lambda e: e["kind"] == "batch" and "m4" in str(e["messages"]), timeout=30)
            p.drain(1.0)
            assert _contents(p) == [f"m{i}" for i in range(5)]
            assert not [e for e in p.events if e["kind"] == "error"]
    finally:
        server.kill()


@pytest.fixture
def pg_only(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("several server instances share one database on PostgreSQL")
    return db_url


def _lags_from_one_instance_to_another(
    tk: Threadkeep, url: str, tmp_path: Path, env: dict[str, str]
) -> list[float]:
    """Seconds from each of three writes through one ``threadkeep serve`` to
    its arrival at a long-poll held by another on the same database; the
    probe must see the three, in order."""
    a, b = Serve(url, tmp_path, env), Serve(url, tmp_path, env)
    me = new_caller(tk)
    s = tk.create_session(me.actor).value
    try:
        with probes() as ps, httpx.Client(base_url=a.base, headers=me.headers) as api:
            ps.append(p := Probe(b.shape_url(), me.token, params={"table": "messages"}))
            p.wait_for(up_to_date)
            time.sleep(1.0)  # held on b
            lags = []
            for i in range(3):
                t0 = time.monotonic()
                r = api.post(
                    f"/v1/sessions/{s.id}/messages",
                    json={"messages": [{"role": "user", "content": f"x{i}"}]},
                )
                assert r.status_code == 201
                p.wait_for(
                    lambda e, i=i: e["kind"] == "batch" and f"x{i}" in str(e["messages"]),
                    timeout=12,
                )
                lags.append(time.monotonic() - t0)
            assert _contents(p) == ["x0", "x1", "x2"]
            return lags
    finally:
        a.kill()
        b.kill()


def test_a_write_through_one_instance_wakes_a_long_poll_held_by_another(
    tk: Threadkeep, pg_only: str, tmp_path: Path
) -> None:
    require_node()
    skip_behind_a_pooler(pg_only, "there is no LISTEN: the next test covers that case")
    slow_poll = {"THREADKEEP_SYNC__LONG_POLL_SECONDS": "15", "THREADKEEP_SYNC__POLL_SECONDS": "10"}
    lags = _lags_from_one_instance_to_another(tk, pg_only, tmp_path, slow_poll)
    assert max(lags) < 3.0, lags  # the fallback poll alone would take up to 10 s


def test_behind_a_transaction_pooler_a_write_through_one_instance_reaches_another(
    tk: Threadkeep, pg_only: str, tmp_path: Path, pgbouncer: PgBouncer
) -> None:
    """No LISTEN through a pooler (store/pg_connect.py): the other instance's
    hub finds the change at its next poll."""
    require_node()
    lags = _lags_from_one_instance_to_another(tk, pgbouncer.url(pg_only), tmp_path, FAST)
    assert max(lags) < 5.0, lags  # a poll every 0.5 s


WRITERS = 8
APPENDS = 25


def test_eight_writers_on_two_instances_three_consumers_all_end_equal_to_the_database(
    tk: Threadkeep, pg_only: str, tmp_path: Path
) -> None:
    require_node()
    a, b = Serve(pg_only, tmp_path, FAST), Serve(pg_only, tmp_path, FAST)
    me = new_caller(tk)
    sessions = [tk.create_session(me.actor).value.id for _ in range(2)]
    errors: list[str] = []

    def writer(n: int) -> None:
        base = (a if n % 2 else b).base
        with httpx.Client(base_url=base, headers=me.headers, timeout=30) as api:
            for i in range(APPENDS):
                sid = sessions[(n + i) % 2]
                r = api.post(
                    f"/v1/sessions/{sid}/messages",
                    json={"messages": [{"role": "user", "content": f"w{n}-{i}"}]},
                )
                if r.status_code != 201:
                    errors.append(r.text)
                if i % 10 == 0:
                    api.patch(f"/v1/sessions/{sid}", json={"title": f"w{n}-{i}"})

    try:
        with probes() as ps:
            for server in (a, b, b):
                ps.append(Probe(server.shape_url(), me.token, params={"table": "messages"}))
            for p in ps:
                p.wait_for(up_to_date)
            threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            want = {
                m.id: (m.content, m.seq, m.session_id)
                for sid in sessions
                for m in tk.get_history(me.actor, sid)
            }
            assert len(want) == WRITERS * APPENDS
            for p in ps:
                p.wait_for(
                    lambda e, p=p: e["kind"] == "batch" and len(_contents(p)) >= len(want),
                    timeout=30,
                )
                p.drain(0.5)
                state: dict[str, dict[str, Any]] = {}
                apply_changes(state, [m for bt in p.batches() for m in bt["messages"]])
                got = {
                    v["id"]: (v["content"], int(v["seq"].rstrip("n")), v["session_id"])
                    for v in state.values()
                }
                assert got == want
                assert len(_contents(p)) == len(want)  # and nothing arrived twice
    finally:
        a.kill()
        b.kill()


def test_the_server_prunes_the_log_on_schedule_and_old_handles_refetch(
    tk: Threadkeep, db_url: str, tmp_path: Path
) -> None:
    """The server's own schedule prunes changes older than the retention; a
    reader behind the pruned prefix gets 409 and a new handle."""
    me = new_caller(tk)
    s = tk.create_session(me.actor).value
    headers = {"Authorization": f"Bearer {me.token}"}
    env = {
        **FAST,
        "THREADKEEP_SYNC__PRUNE_EVERY_SECONDS": "0.5",
        "THREADKEEP_SYNC__RETENTION_HOURS": "0.0003",  # about a second
    }
    server = Serve(db_url, tmp_path, env)
    try:
        first = httpx.get(
            server.shape_url(), params={"table": "messages", "offset": "-1"}, headers=headers
        )
        handle, offset = first.headers["electric-handle"], first.headers["electric-offset"]
        tk.append_message(me.actor, s.id, {"role": "user", "content": "soon pruned"})
        deadline = time.monotonic() + 20
        while tk.sync_state().pruned_offset <= int(offset.split("_")[0]):
            assert time.monotonic() < deadline, "the server never pruned"
            time.sleep(0.3)
        stale = httpx.get(
            server.shape_url(),
            params={"table": "messages", "offset": offset, "handle": handle},
            headers=headers,
        )
        assert stale.status_code == 409 and stale.headers["electric-handle"] != handle
        again = httpx.get(
            server.shape_url(), params={"table": "messages", "offset": "-1"}, headers=headers
        )
        assert [m["value"]["content"] for m in again.json() if "key" in m] == ["soon pruned"]
    finally:
        server.kill()


def test_sigterm_answers_held_long_polls_at_once(
    tk: Threadkeep, db_url: str, tmp_path: Path
) -> None:
    """A graceful shutdown does not wait out the long polls it holds."""
    me = new_caller(tk)
    headers = {"Authorization": f"Bearer {me.token}"}
    server = Serve(db_url, tmp_path, {"THREADKEEP_SYNC__LONG_POLL_SECONDS": "30"})
    first = httpx.get(
        server.shape_url(), params={"table": "messages", "offset": "-1"}, headers=headers
    )
    answers: list[httpx.Response] = []

    def hold() -> None:
        params = {
            "table": "messages",
            "offset": first.headers["electric-offset"],
            "handle": first.headers["electric-handle"],
            "live": "true",
        }
        answers.append(httpx.get(server.shape_url(), params=params, headers=headers, timeout=60))

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(1.0)
    started = time.monotonic()
    server.stop()  # SIGTERM, then wait for the exit
    t.join(10)
    assert time.monotonic() - started < 10
    assert server.proc.returncode == 0
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json()[-1]["headers"]["control"] == "up-to-date"

"""Two ``threadkeep serve`` processes on one PostgreSQL database.

Writes through either instance are read through the other, in one order:
``seq`` is assigned inside the writing transaction, so concurrent appends to
one session through two servers still number 1..N with no gap and no
duplicate. Two servers starting at once on a fresh database create one local
user and print one admin token between them.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from test_serve import Server

from threadkeep import Threadkeep
from threadkeep.cli.serve import _first_start
from threadkeep.cli.token import LOCAL_USER_ID

THREADS_PER_INSTANCE = 2
APPENDS_PER_THREAD = 50


def instance_env(tmp_path: Path, name: str) -> dict[str, str]:
    """An environment of its own per instance: data dir and config file apart."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("THREADKEEP_")}
    out["THREADKEEP_DATA_DIR"] = str(tmp_path / name / "data")
    out["THREADKEEP_CONFIG"] = str(tmp_path / name / "no-config.toml")
    return out


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def printed_token(server: Server) -> str | None:
    m = re.search(r"token: (tk_[A-Za-z0-9_-]+)", "\n".join(server.printed()))
    return m.group(1) if m else None


def test_writes_through_either_instance_are_read_through_the_other_in_one_order(
    pg_db: str, tmp_path: Path, servers: list[Server]
) -> None:
    args = ["--database-url", pg_db]
    a = Server(instance_env(tmp_path, "a"), tmp_path / "a.log", args)
    servers.append(a)
    token = printed_token(a)
    assert token, a.stdout
    b = Server(instance_env(tmp_path, "b"), tmp_path / "b.log", args)
    servers.append(b)
    assert printed_token(b) is None  # the database already has its user
    assert a.base != b.base
    auth = {"Authorization": f"Bearer {token}"}

    created = httpx.post(f"{a.base}/v1/sessions", json={"title": "shared"}, headers=auth)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    seen_by_b = httpx.get(f"{b.base}/v1/sessions/{sid}", headers=auth)
    assert seen_by_b.status_code == 200 and seen_by_b.json()["title"] == "shared"

    errors: list[str] = []

    def writer(base: str, name: str) -> None:
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            for i in range(APPENDS_PER_THREAD):
                r = client.post(
                    f"/v1/sessions/{sid}/messages",
                    json={"messages": [{"role": "user", "content": f"{name}-{i}"}]},
                )
                if r.status_code != 201:
                    errors.append(f"{name}-{i}: {r.status_code} {r.text}")

    threads = [
        threading.Thread(target=writer, args=(server.base, f"{label}{n}"))
        for server, label in ((a, "a"), (b, "b"))
        for n in range(THREADS_PER_INSTANCE)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]

    total = 2 * THREADS_PER_INSTANCE * APPENDS_PER_THREAD
    views = []
    for server in (a, b):
        r = httpx.get(
            f"{server.base}/v1/sessions/{sid}/messages", params={"limit": 1000}, headers=auth
        )
        assert r.status_code == 200, r.text
        views.append([(m["seq"], m["content"]) for m in r.json()["items"]])
    from_a, from_b = views
    assert from_a == from_b  # one order, seen from both
    assert [seq for seq, _ in from_a] == list(range(1, total + 1))  # contiguous, no duplicates
    contents = [c for _, c in from_a]
    assert len(set(contents)) == total
    expected = {
        f"{label}{n}-{i}"
        for label in "ab"
        for n in range(THREADS_PER_INSTANCE)
        for i in range(APPENDS_PER_THREAD)
    }
    assert set(contents) == expected
    for label in "ab":  # each writer's own appends keep their order
        for n in range(THREADS_PER_INSTANCE):
            mine = [c for c in contents if c.startswith(f"{label}{n}-")]
            assert mine == [f"{label}{n}-{i}" for i in range(APPENDS_PER_THREAD)]

    assert a.stop() == 0
    assert b.stop() == 0


def test_two_instances_starting_at_once_create_one_user_and_one_token(
    pg_db: str, tmp_path: Path, servers: list[Server]
) -> None:
    args = ["--database-url", pg_db]
    both = [
        Server(instance_env(tmp_path, name), tmp_path / f"{name}.log", args, wait=False)
        for name in ("a", "b")
    ]
    servers.extend(both)
    for s in both:
        s.wait_until_serving()
    tokens = [printed_token(s) for s in both]

    issued = [t for t in tokens if t is not None]
    assert len(issued) == 1, [s.stdout for s in both]
    loser = both[tokens.index(None)]
    assert "threadkeep token create" in "\n".join(loser.stdout)
    with Threadkeep.open(pg_db) as tk:
        users = tk.list_users()
        assert [u.name for u in users] == ["local"]
        assert len(tk.list_all_tokens()) == 1
        assert tk.authenticate(issued[0]).user_id == users[0].id
    for s in both:
        assert s.stop() == 0


def test_first_start_race_creates_one_user_and_prints_one_token(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both instances found no user (the race, made certain): the fixed id of
    the local user lets only one of them create it and print a token."""
    stores = [Threadkeep.open(db_url) for _ in range(2)]
    try:
        for tk in stores:
            monkeypatch.setattr(tk, "list_users", lambda: [])
        outputs = [io.StringIO() for _ in stores]
        barrier = threading.Barrier(len(stores))

        def start(i: int) -> None:
            barrier.wait()
            console = Console(file=outputs[i], width=200, highlight=False)
            _first_start(stores[i], "http://127.0.0.1:1", console)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        printed = [o.getvalue() for o in outputs]
        assert sum("token: tk_" in p for p in printed) == 1, printed
        assert sum("a user already exists" in p for p in printed) == 1, printed
    finally:
        for tk in stores:
            tk.close()
    with Threadkeep.open(db_url) as tk:
        assert [(u.id, u.name) for u in tk.list_users()] == [(LOCAL_USER_ID, "local")]
        assert len(tk.list_all_tokens()) == 1

"""Proxy mode: ``THREADKEEP_ELECTRIC_URL`` set, the shape route forwards to an
Electric service, with the definition and the secret set by threadkeep.

The upstream is tests/sync/fake_electric.py, a protocol-compatible process on
loopback (a real Electric service cannot run here: it needs Docker and logical
replication). The client is the real @electric-sql/client, through a real
``threadkeep serve``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sync_helpers import Probe, Serve, new_caller, probes, require_node, up_to_date

from threadkeep import Threadkeep

SECRET = "s3cret-for-the-upstream"


@pytest.fixture
def upstream() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fake_electric.py"), SECRET],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[1]
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _seen(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    return [json.loads(line) for line in proc.stdout if line.startswith("{")]


def test_the_proxy_sets_the_shape_and_secret_itself_and_streams_the_answer_back(
    tk: Threadkeep, tmp_path: Path, upstream: tuple[str, subprocess.Popen[str]]
) -> None:
    require_node()
    url, proc = upstream
    tk.create_user("alice", id="alice")
    alice = new_caller(tk)
    # The caller's token is for a fresh user; make one for "alice" to match the upstream rows.
    from threadkeep import Actor

    token = tk.create_token(Actor("alice"), "proxy").value.token
    server = Serve(
        tk.engine.url,
        tmp_path,
        {"THREADKEEP_ELECTRIC_URL": url, "THREADKEEP_ELECTRIC_SECRET": SECRET},
    )
    try:
        hostile = {"table": "sessions", "where": "true", "params": {"1": "bob"}, "secret": "mine"}
        with probes() as ps:
            ps.append(p := Probe(server.shape_url(), token, params=hostile))
            first = p.wait_for(up_to_date)
            titles = sorted(m["value"]["title"] for m in first["messages"] if "key" in m)
            assert titles == ["alice's", "alice's other"]
            p.wait_for(
                lambda e: e["kind"] == "batch" and e is not first and up_to_date(e), timeout=10
            )
        r = httpx.get(
            server.shape_url(),
            params={"table": "sessions", "offset": "-1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200
        assert r.headers["cache-control"] == "private, max-age=60"  # never public: per-user answers
        assert "authorization" in r.headers["vary"].lower()
        stale = httpx.get(
            server.shape_url(),
            params={"table": "sessions", "offset": "7_0", "handle": "expired-1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert stale.status_code == 409 and stale.headers["electric-handle"] == "h-2"
        unauth = httpx.get(server.shape_url(), params={"table": "sessions", "offset": "-1"})
        assert unauth.status_code == 401
    finally:
        server.kill()
    seen = _seen(proc)
    assert seen, "the upstream got no request"
    for req in seen:
        q = req["query"]
        keys = [k for k, _ in q]
        table = "sessions" if tk.engine.schema is None else f"{tk.engine.schema}.sessions"
        assert dict(q)["table"] == table and keys.count("table") == 1
        assert dict(q)["where"] == "owner_id = $1 AND deleted_at IS NULL"
        assert dict(q)["params[1]"] == "alice" and keys.count("params[1]") == 1
        assert dict(q)["secret"] == SECRET and keys.count("secret") == 1
        # The declared columns, never the client's nor the search index's.
        assert keys.count("columns") == 1 and "search_vector" not in dict(q)["columns"]
        assert dict(q)["columns"].split(",")[:2] == ["id", "owner_id"]
    assert any(dict(r["query"]).get("live") == "true" for r in seen)
    del alice

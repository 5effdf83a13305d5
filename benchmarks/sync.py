"""Sync: write-to-visible latency, idle live subscribers per process, initial sync.

    python -m benchmarks.sync                  # SQLite and PostgreSQL (if reachable)
    python -m benchmarks.sync --engines sqlite --subscribers 1,100

Each case runs a real ``threadkeep serve`` on loopback.

* Latency: N live subscribers (the real @electric-sql/client in one Node
  process, all following the same session's messages, so every write wakes
  all N) while writes go through the REST API one at a time. A sample is
  "POST sent" to "the client's callback has the row" for every
  (write, subscriber) pair; p50/p99 over them.
* Idle subscribers: K raw live long-polls held open (hand-written HTTP/1.1 on
  asyncio streams, so the load generator is cheap), the server's resident
  memory read from /proc before and after; per-subscriber cost and how many
  fit in 1 GB.
* Initial sync: the first response of a 10k-message session's shape
  (offset=-1), measured in Python (HTTP) and by the Node client (stream
  creation to first up-to-date).

There is no peer here: the peer a user would pick is a real Electric service,
which cannot run on this machine (no Docker). Figures are absolute, on a shared
2-core machine; quote them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "tests" / "sync" / "node"
SUBSCRIBERS_JS = REPO / "benchmarks" / "sync_subscribers.mjs"
PG_ADMIN = os.environ.get("THREADKEEP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

sys.path.insert(0, str(REPO / "tests" / "sync"))
from sync_helpers import Serve  # noqa: E402

from threadkeep import Actor, Threadkeep  # noqa: E402


def log(msg: str) -> None:
    print(f"[sync-bench] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def new_pg_db() -> str:
    import psycopg

    name = f"tk_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg_db(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def latency(server: Serve, token: str, sid: str, n: int, writes: int) -> dict[str, Any]:
    env = dict(
        os.environ,
        URL=server.shape_url(),
        TOKEN=token,
        N=str(n),
        SESSION=sid,
        NODE_DIR=str(NODE_DIR),
    )
    proc = subprocess.Popen(
        ["node", str(SUBSCRIBERS_JS)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    lags: list[float] = []
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready.get("ready"), ready
        time.sleep(1.0)  # every stream is now holding a live request
        with httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {token}"}
        ) as api:
            for _ in range(writes):
                sent_ms = time.time() * 1000
                r = api.post(
                    f"/v1/sessions/{sid}/messages",
                    json={"messages": [{"role": "user", "content": f"{sent_ms:.3f}"}]},
                )
                r.raise_for_status()
                got = 0
                deadline = time.monotonic() + 30
                while got < n and time.monotonic() < deadline:
                    line = proc.stdout.readline()
                    if not line:
                        break
                    lags.append(json.loads(line)["lag"])
                    got += 1
                time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return {
        "subscribers": n,
        "writes": writes,
        "samples": len(lags),
        "expected": n * writes,
        "p50_ms": round(pct(lags, 50), 2),
        "p99_ms": round(pct(lags, 99), 2),
        "ready_ms": round(ready["ms"], 1),
    }


async def _raw_round(
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    path: str,
    token: str,
    api: httpx.AsyncClient,
    sid: str,
) -> tuple[list[float], str]:
    """Every connection sends a live request; one write; when each answer arrives."""
    req = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    for _, w in conns:
        w.write(req)
    await asyncio.sleep(1.0)

    async def answer(r: asyncio.StreamReader) -> tuple[float, str]:
        head = await r.readuntil(b"\r\n\r\n")
        fields = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        await r.readexactly(int(fields["content-length"]))
        return time.perf_counter(), fields["electric-offset"]

    waits = [asyncio.ensure_future(answer(r)) for r, _ in conns]
    t0 = time.perf_counter()
    await api.post(
        f"/v1/sessions/{sid}/messages", json={"messages": [{"role": "user", "content": "x"}]}
    )
    done = await asyncio.gather(*waits)
    return [(t - t0) * 1000 for t, _ in done], done[0][1]


def raw_latency(server: Serve, token: str, sid: str, n: int, writes: int) -> dict[str, Any]:
    """N live long-polls from cheap raw HTTP clients: the server's fan-out alone."""
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.get(
        server.shape_url(),
        params={"table": "messages", "session_id": sid, "offset": "-1"},
        headers=headers,
    )
    handle, offset = r.headers["electric-handle"], r.headers["electric-offset"]
    lags: list[float] = []

    async def run() -> None:
        nonlocal offset
        conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(n)]
        async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=60) as api:
            for _ in range(writes):
                path = (
                    f"/v1/shape?table=messages&session_id={sid}&offset={offset}"
                    f"&handle={handle}&live=true&cursor="
                )
                got, offset = await _raw_round(conns, path, token, api, sid)
                lags.extend(got)
        for _, w in conns:
            w.close()

    asyncio.run(run())
    return {
        "subscribers": n,
        "writes": writes,
        "p50_ms": round(pct(lags, 50), 2),
        "p99_ms": round(pct(lags, 99), 2),
        "samples": len(lags),
        "expected": n * writes,
    }


async def _hold(
    host: str, port: int, path: str, token: str, count: int
) -> list[asyncio.StreamWriter]:
    writers = []
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    for i in range(count):
        _, w = await asyncio.open_connection(host, port)
        w.write(req)
        writers.append(w)
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    return writers


def idle_subscribers(
    server: Serve, token: str, sid: str, counts: list[int]
) -> list[dict[str, Any]]:
    r = httpx.get(
        server.shape_url(),
        params={"table": "messages", "session_id": sid, "offset": "-1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    handle, offset = r.headers["electric-handle"], r.headers["electric-offset"]
    path = (
        f"/v1/shape?table=messages&session_id={sid}&offset={offset}"
        f"&handle={handle}&live=true&cursor="
    )
    host, port = "127.0.0.1", server.port
    out = []

    async def run() -> None:
        base = rss_mb(server.proc.pid)
        prev_held, prev_mb = 0, base
        held: list[asyncio.StreamWriter] = []
        for count in counts:
            held += await _hold(host, port, path, token, count - len(held))
            await asyncio.sleep(2.0)
            mb = rss_mb(server.proc.pid)
            # The marginal cost: memory freed by earlier cases can hide the first step.
            per_kb = (mb - prev_mb) * 1024 / (len(held) - prev_held)
            fit = len(held) + int((1024 - mb) * 1024 / per_kb) if per_kb > 0 else None
            out.append(
                {
                    "held": len(held),
                    "rss_mb": round(mb, 1),
                    "base_mb": round(base, 1),
                    "per_subscriber_kb": round(per_kb, 1),
                    "fit_in_1gb": fit,
                }
            )
            prev_held, prev_mb = len(held), mb
            log(f"  {len(held)} held: rss {mb:.0f} MB")
        for w in held:
            w.close()

    asyncio.run(run())
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll_cpu(server: Serve, token: str, sid: str, polls: int) -> dict[str, Any]:
    """The server's CPU per caught-up, non-live poll of one session's
    messages, over one keep-alive connection: the request every synced
    client repeats for each of its shapes every long-poll period."""
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        r = c.get(
            server.shape_url(), params={"table": "messages", "session_id": sid, "offset": "-1"}
        )
        params = {
            "table": "messages",
            "session_id": sid,
            "offset": r.headers["electric-offset"],
            "handle": r.headers["electric-handle"],
        }
        for _ in range(100):  # warm: connection, caches, prepared plans
            c.get(server.shape_url(), params=params)
        per_poll = []
        for _ in range(3):
            cpu0, t0 = _cpu_seconds(server.proc.pid), time.perf_counter()
            for _ in range(polls):
                r = c.get(server.shape_url(), params=params)
                assert r.status_code == 200, r.text
            cpu1, t1 = _cpu_seconds(server.proc.pid), time.perf_counter()
            per_poll.append(((cpu1 - cpu0) / polls * 1e6, (t1 - t0) / polls * 1e6))
    return {
        "polls": polls,
        "runs": 3,
        "server_cpu_us_median": round(statistics.median(x for x, _ in per_poll)),
        "wall_us_median": round(statistics.median(y for _, y in per_poll)),
    }


def initial_sync(
    server: Serve, tk: Threadkeep, me: Actor, token: str, messages: int
) -> dict[str, Any]:
    s = tk.create_session(me, title="big").value
    for i in range(0, messages, 1000):
        tk.append_messages(
            me,
            s.id,
            [{"role": "user", "content": f"message {j} " + "x" * 200} for j in range(i, i + 1000)],
        )
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    size = 0
    for _ in range(5):
        t = time.perf_counter()
        r = httpx.get(
            server.shape_url(),
            params={"table": "messages", "session_id": s.id, "offset": "-1"},
            headers=headers,
            timeout=60,
        )
        times.append((time.perf_counter() - t) * 1000)
        size = len(r.content)
    env = dict(
        os.environ, URL=server.shape_url(), TOKEN=token, N="1", SESSION=s.id, NODE_DIR=str(NODE_DIR)
    )
    node_ms = []
    for _ in range(3):
        p = subprocess.Popen(
            ["node", str(SUBSCRIBERS_JS)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert p.stdout is not None
        node_ms.append(json.loads(p.stdout.readline())["ms"])
        p.kill()
        p.wait()
        p.stdout.close()
    return {
        "messages": messages,
        "http_p50_ms": round(statistics.median(times), 1),
        "bytes": size,
        "node_client_p50_ms": round(statistics.median(node_ms), 1),
    }


def run_engine(engine: str, subs: list[int], idle: list[int], writes: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tk-sync-bench-"))
    url = f"sqlite:///{tmp / 'bench.db'}" if engine == "sqlite" else new_pg_db()
    tk = Threadkeep.open(url)
    try:
        user = tk.create_user("bench").value
        me = Actor(user.id)
        token = tk.create_token(me, "bench").value.token
        server = Serve(url, tmp)
        try:
            out: dict[str, Any] = {
                "raw_latency": [],
                "engine": engine,
                "latency": [],
                "fsync": "synchronous=FULL" if engine == "sqlite" else "synchronous_commit=on",
            }
            for n in subs:
                sid = tk.create_session(me).value.id
                log(f"{engine}: {n} subscribers")
                out["latency"].append(latency(server, token, sid, n, writes))
                log(f"  {out['latency'][-1]}")
            for n in subs:
                sid = tk.create_session(me).value.id
                log(f"{engine}: {n} raw HTTP subscribers")
                out["raw_latency"].append(raw_latency(server, token, sid, n, writes))
                log(f"  {out['raw_latency'][-1]}")
            log(f"{engine}: server CPU per caught-up poll")
            out["poll_cpu"] = poll_cpu(server, token, tk.create_session(me).value.id, 1000)
            log(f"  {out['poll_cpu']}")
            log(f"{engine}: initial sync of 10k messages")
            out["initial_sync"] = initial_sync(server, tk, me, token, 10_000)
            log(f"  {out['initial_sync']}")
            log(f"{engine}: idle subscribers")
            out["idle"] = idle_subscribers(server, token, tk.create_session(me).value.id, idle)
        finally:
            server.kill()
        return out
    finally:
        tk.close()
        if engine != "sqlite":
            drop_pg_db(url)
        shutil.rmtree(tmp, ignore_errors=True)  # the database and the server's files


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


INTRO = (
    "Real `threadkeep serve` on loopback; subscribers are the real `@electric-sql/client` "
    "(one Node process), all following one session's messages, so each write wakes every "
    "subscriber. A sample is POST sent → the row in the client's callback. No peer ran: a "
    "real Electric service cannot run here."
)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["## Sync (issue 5): write-to-visible latency, idle subscribers, initial sync", ""]
    lines += [INTRO, ""]
    lines.append(_row("engine", "live subscribers", "p50 ms", "p99 ms", "samples"))
    lines.append("|---|---:|---:|---:|---:|")
    for r in results:
        for x in r["latency"]:
            got = f"{x['samples']}/{x['expected']}"
            engine = f"{r['engine']} ({r['fsync']})"
            lines.append(_row(engine, x["subscribers"], x["p50_ms"], x["p99_ms"], got))
    lines.append("")
    lines.append(
        "The same with raw HTTP long-polls as subscribers (cheap clients: the server's fan-out "
        "alone, from POST sent to each held request's answer received):"
    )
    lines.append("")
    lines.append(_row("engine", "live subscribers", "p50 ms", "p99 ms", "samples"))
    lines.append("|---|---:|---:|---:|---:|")
    for r in results:
        for x in r["raw_latency"]:
            got = f"{x['samples']}/{x['expected']}"
            lines.append(_row(r["engine"], x["subscribers"], x["p50_ms"], x["p99_ms"], got))
    lines.append("")
    lines.append(
        _row("engine", "idle long-polls held", "server RSS MB (base)", "KB each", "fit in 1 GB")
    )
    lines.append("|---|---:|---:|---:|---:|")
    for r in results:
        for x in r["idle"]:
            rss = f"{x['rss_mb']} ({x['base_mb']})"
            lines.append(_row(r["engine"], x["held"], rss, x["per_subscriber_kb"], x["fit_in_1gb"]))
    lines.append("")
    lines.append(
        "Server CPU per caught-up poll (non-live, nothing new; one keep-alive connection; "
        "median of 3 runs):"
    )
    lines.append("")
    lines.append(_row("engine", "polls per run", "server CPU µs per poll", "wall µs per poll"))
    lines.append("|---|---:|---:|---:|")
    for r in results:
        x = r.get("poll_cpu")
        if x:
            lines.append(
                _row(r["engine"], x["polls"], x["server_cpu_us_median"], x["wall_us_median"])
            )
    lines.append("")
    lines.append(_row("engine", "messages", "HTTP p50 ms", "bytes", "Node client p50 ms"))
    lines.append("|---|---:|---:|---:|---:|")
    for r in results:
        x = r["initial_sync"]
        lines.append(
            _row(r["engine"], x["messages"], x["http_p50_ms"], x["bytes"], x["node_client_p50_ms"])
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--subscribers", default="1,100,1000")
    ap.add_argument("--idle", default="1000,5000,10000")
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sync.json"))
    a = ap.parse_args()
    results = [
        run_engine(
            e,
            [int(x) for x in a.subscribers.split(",")],
            [int(x) for x in a.idle.split(",")],
            a.writes,
        )
        for e in a.engines.split(",")
    ]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()

"""The HTTP benchmark: ``threadkeep serve`` beside FastAPI + the best peer.

    python -m benchmarks.http                    # ~2-3 min; updates benchmarks/RESULTS.md
    python -m benchmarks.http --duration 0.5 --rounds 1 --no-results-md   # smoke test

Two routes, through HTTP/1.1 keep-alive connections on loopback:

* **append**: ``POST /v1/sessions/{id}/messages`` with one message (~400 bytes
  of text plus a metadata dict, like peersbench's), durable on return; each
  connection appends to its own session.
* **last-50**: ``GET /v1/sessions/{id}/messages?last=50`` of a session holding
  2,000 messages (all connections read the same session).

Servers, each its own process bound to 127.0.0.1, all durable at commit:

* ``threadkeep serve`` on SQLite (the default: WAL, synchronous=FULL) and on
  PostgreSQL (a fresh database on ``$THREADKEEP_BENCH_PG_URL``'s server,
  dropped afterwards; skipped when unreachable). Real bearer-token auth, its
  JSON access log (to a file), metrics, request ids: what a user runs.
* **FastAPI + oai-sqlitesession**, the best SQLite peer of the core benchmark
  (openai-agents ``SQLiteSession``), and **FastAPI + raw-sqlite-wal-full**
  (stdlib sqlite3, WAL + synchronous=FULL: the physical floor): the minimal
  app in ``benchmarks/http_peer_app.py`` over the peersbench adapters
  themselves, run in the peers' virtualenv as its own uvicorn process.

The load generator is this process: asyncio (uvloop when installed), one
coroutine per connection sending pre-built requests and reading each answer
in full before the next (closed loop), with 1 and 16 connections. Every cell
runs a warm-up, then for ``--duration`` seconds (and at most
``--max-requests`` requests); the servers are interleaved within each round
and each figure is the median over ``--rounds`` rounds. Any non-2xx answer is
counted as an error. The machine has 2 cores shared by the load generator and
the server under test, so absolute figures are a floor; compare the ratios.

Results: a JSON file and one markdown table (``render_section``), which
``benchmarks/report.py`` appends to RESULTS.md when the file is in a run
directory (``python -m benchmarks``), and which a standalone run writes into
``benchmarks/RESULTS.md`` itself (replacing the previous HTTP section).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.normpath(os.path.join(REPO, "..", "shared", "bench", "peers"))
PEERS_PY = os.path.join(os.environ.get("PEERS_VENV", "/tmp/peers-venv"), "bin", "python")
RESULTS = os.path.join(REPO, "benchmarks", "results")
RESULTS_MD = os.path.join(REPO, "benchmarks", "RESULTS.md")
PG_URL = os.environ.get("THREADKEEP_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HTTP_JSON = "threadkeep-http.json"  # its name inside a `python -m benchmarks` run dir
BASELINE = "fastapi+oai-sqlitesession"
ROUTES = ("append", "last-50")
START = "<!-- http-benchmark:start -->"
END = "<!-- http-benchmark:end -->"
STARTUP_TIMEOUT = 60.0
X, DASH = "\u00d7", "\u2013"  # the signs RESULTS.md uses for ratios and gaps

TEXT = (
    "The quick brown fox jumps over the lazy dog while the assistant explains how "
    "durable storage works: every acknowledged message must survive a crash, so the "
    "write goes through the write-ahead log and an fsync before the answer leaves. "
    "Sessions hold ordered turns, tool calls and timeline events; clients page "
    "through them by sequence number and keep their own idempotency keys. "
)[:400]


def log(msg: str) -> None:
    print(f"[benchmarks.http] {msg}", file=sys.stderr, flush=True)


def message(i: int) -> dict[str, Any]:
    return {
        "role": "user" if i % 2 == 0 else "assistant",
        "content": TEXT,
        "metadata": {"i": i, "model": "gpt-bench", "tokens": 93, "tags": ["bench", "http"]},
    }


# --- servers -------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    what: str
    base: str
    token: str
    proc: subprocess.Popen[str]
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for fn in self.cleanup:
            try:
                fn()
            except Exception as exc:  # cleanup must not hide the results
                log(f"cleanup of {self.name} failed: {exc}")


def _wait_healthy(proc: subprocess.Popen[str], base: str) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server at {base} exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} never answered /healthz")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_database() -> tuple[str, Callable[[], None]] | None:
    """A fresh PostgreSQL database and its dropper, or None when unreachable."""
    import psycopg
    import sqlalchemy as sa

    name = f"tk_http_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        log(f"PostgreSQL not reachable at {PG_URL} ({' '.join(str(exc).split())[:200]})")
        return None

    def drop() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    return url, drop


def start_threadkeep(engine: str, tmp: str) -> Server | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADKEEP_")}
    env["THREADKEEP_DATA_DIR"] = os.path.join(tmp, f"tk-{engine}")
    env["THREADKEEP_CONFIG"] = os.path.join(tmp, "no-config.toml")
    cleanup: list[Callable[[], None]] = []
    what = "threadkeep serve, SQLite (WAL, synchronous=FULL)"
    if engine == "postgres":
        made = _pg_database()
        if made is None:
            return None
        env["THREADKEEP_DATABASE_URL"], drop = made
        cleanup.append(drop)
        what = "threadkeep serve, PostgreSQL (synchronous_commit=on)"
    errlog = open(os.path.join(tmp, f"tk-{engine}.log"), "w")
    cleanup.append(errlog.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "threadkeep.cli", "serve", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errlog,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    base = token = None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while (base is None or token is None) and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if m := re.search(r"serving (http://127\.0\.0\.1:\d+)", line):
            base = m.group(1)
        if m := re.search(r"token: (tk_\S+)", line):
            token = m.group(1)
    server = Server(f"threadkeep-{engine}", what, base or "http://127.0.0.1:0", token or "", proc)
    server.cleanup = cleanup
    if base is None or token is None:
        server.stop()
        raise RuntimeError(f"threadkeep serve ({engine}) printed no URL and token")
    _wait_healthy(proc, base)
    return server


def ensure_peer_server() -> None:
    """FastAPI, uvloop and httptools in the peers' venv (setup_venv.sh has only
    the peers): the same FastAPI version as ours, installed once with pip."""
    probe = subprocess.run(
        [PEERS_PY, "-c", "import fastapi, uvicorn, uvloop, httptools"], capture_output=True
    )
    if probe.returncode == 0:
        return
    from importlib.metadata import version

    want = [f"fastapi=={version('fastapi')}", "uvicorn", "uvloop", "httptools"]
    log(f"installing {' '.join(want)} into {os.path.dirname(os.path.dirname(PEERS_PY))}")
    subprocess.run([PEERS_PY, "-m", "pip", "install", "-q", *want], check=True, timeout=600)


def start_peer(adapter: str, tmp: str) -> Server:
    port = _free_port()
    token = uuid.uuid4().hex
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, PEERS, env.get("PYTHONPATH")) if p)
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    errlog = open(os.path.join(tmp, f"{adapter}.log"), "w")
    cmd = [PEERS_PY, "-m", "benchmarks.http_peer_app", "--adapter", adapter]
    cmd += ["--port", str(port), "--workdir", os.path.join(tmp, adapter), "--token", token]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, text=True, env=env, cwd=REPO
    )
    what = f"FastAPI + peersbench `{adapter}` (benchmarks/http_peer_app.py)"
    server = Server(f"fastapi+{adapter}", what, f"http://127.0.0.1:{port}", token, proc)
    server.cleanup = [errlog.close]
    try:
        _wait_healthy(proc, server.base)
    except Exception:
        server.stop()
        raise
    return server


# --- fixtures on each server ------------------------------------------------------------


@dataclass
class Fixture:
    load_session: str
    append_sessions: list[str]
    verified: bool


def prepare(server: Server, messages: int, connections: int) -> Fixture:
    """The 2,000-message session (appended in batches) and one session per connection."""
    import httpx

    auth = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.base, headers=auth, timeout=60) as c:

        def new_session() -> str:
            r = c.post("/v1/sessions", json={"title": "http-bench"})
            r.raise_for_status()
            return str(r.json()["id"])

        sid = new_session()
        for start in range(0, messages, 50):
            batch = [message(i) for i in range(start, min(start + 50, messages))]
            c.post(f"/v1/sessions/{sid}/messages", json={"messages": batch}).raise_for_status()
        r = c.get(f"/v1/sessions/{sid}/messages", params={"last": 50})
        r.raise_for_status()
        got = [item["metadata"]["i"] for item in r.json()["items"]]
        verified = got == list(range(max(0, messages - 50), messages))
        if not verified:
            log(f"{server.name}: last-50 read back {got[:3]}...{got[-3:]}, not the last 50")
        return Fixture(sid, [new_session() for _ in range(connections)], verified)


# --- the load generator -------------------------------------------------------------------


def request_bytes(method: str, path: str, token: str, body: bytes | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        raise RuntimeError("an answer with neither Content-Length nor chunked encoding")
    return status


@dataclass
class Cell:
    requests: int
    errors: int
    seconds: float
    latencies_us: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_us)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def run_cell(
    port: int, reqs: list[bytes], warmup: float, duration: float, max_requests: int
) -> Cell:
    """len(reqs) connections, connection i sending reqs[i] in a closed loop."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in reqs]
    latencies: list[float] = []
    errors = 0
    sent = 0
    try:
        # Warm-up: connections, the server's caches and thread pool.
        warm_until = time.perf_counter() + warmup

        async def warm(i: int) -> None:
            r, w = conns[i]
            while time.perf_counter() < warm_until:
                await _exchange(r, w, reqs[i])

        await asyncio.wait_for(asyncio.gather(*(warm(i) for i in range(len(reqs)))), warmup + 60)

        started = time.perf_counter()
        until = started + duration

        async def work(i: int) -> None:
            nonlocal errors, sent
            r, w = conns[i]
            req = reqs[i]
            while sent < max_requests:
                t0 = time.perf_counter()
                if t0 >= until:
                    return
                sent += 1
                status = await _exchange(r, w, req)
                latencies.append((time.perf_counter() - t0) * 1e6)
                if not 200 <= status < 300:
                    errors += 1

        await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(len(reqs)))), duration + 60)
        seconds = time.perf_counter() - started
    finally:
        for _, w in conns:
            w.close()
    return Cell(len(latencies), errors, seconds, latencies)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


# --- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    conc = [int(c) for c in args.concurrency.split(",") if c]
    started_at = datetime.now().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    servers: list[Server] = []
    out: dict[str, Any] = {
        "started": started_at,
        "messages": args.messages,
        "concurrency": conc,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "max_requests": args.max_requests,
        "servers": {},
        "cells": [],
        "errors": [],
    }
    with tempfile.TemporaryDirectory(prefix="tk-http-bench-") as tmp:
        try:
            starters: list[tuple[str, Callable[[], Server | None]]] = [
                ("threadkeep-sqlite", lambda: start_threadkeep("sqlite", tmp)),
            ]
            if not args.no_pg:
                starters.append(("threadkeep-postgres", lambda: start_threadkeep("postgres", tmp)))
            for adapter in args.peers.split(","):
                starters.append((f"fastapi+{adapter}", lambda a=adapter: start_peer(a, tmp)))
            for name, start in starters:
                try:
                    server = start()
                except Exception as exc:
                    out["errors"].append(f"{name}: {exc}")
                    log(f"{name} did not start: {exc}")
                    continue
                if server is None:
                    out["errors"].append(f"{name}: skipped (PostgreSQL not reachable)")
                    continue
                servers.append(server)
            fixtures: dict[str, Fixture] = {}
            for s in servers:
                log(f"{s.name} at {s.base}: writing the {args.messages}-message session")
                fixtures[s.name] = prepare(s, args.messages, max(conc))
                out["servers"][s.name] = {"what": s.what, "verified": fixtures[s.name].verified}

            samples: dict[tuple[str, str, int], list[Cell]] = {}
            body = json.dumps({"messages": [message(10**6)]}).encode()
            loop = _new_loop()
            try:
                for rnd in range(args.rounds):
                    log(f"round {rnd + 1}/{args.rounds}")
                    for s in servers:
                        fx = fixtures[s.name]
                        for route in ROUTES:
                            for c in conc:
                                if route == "append":
                                    reqs = [
                                        request_bytes(
                                            "POST", f"/v1/sessions/{sid}/messages", s.token, body
                                        )
                                        for sid in fx.append_sessions[:c]
                                    ]
                                else:
                                    path = f"/v1/sessions/{fx.load_session}/messages?last=50"
                                    reqs = [request_bytes("GET", path, s.token)] * c
                                cell = loop.run_until_complete(
                                    run_cell(
                                        s.port, reqs, args.warmup, args.duration, args.max_requests
                                    )
                                )
                                samples.setdefault((s.name, route, c), []).append(cell)
            finally:
                loop.close()
        finally:
            for s in servers:
                s.stop()

    for (name, route, c), cells in samples.items():
        out["cells"].append(
            {
                "server": name,
                "route": route,
                "connections": c,
                "rps": statistics.median(x.rps for x in cells),
                "p50_us": statistics.median(x.pct(0.50) for x in cells),
                "p99_us": statistics.median(x.pct(0.99) for x in cells),
                "requests": sum(x.requests for x in cells),
                "errors": sum(x.errors for x in cells),
                "rounds_rps": [round(x.rps, 1) for x in cells],
            }
        )
    out["finished"] = datetime.now().isoformat(timespec="seconds")
    out["total_s"] = round(time.perf_counter() - t0, 1)
    try:
        out["loadavg_after"] = list(os.getloadavg())
    except OSError:
        pass
    return out


# --- the report --------------------------------------------------------------------------


def _ms(us: float) -> str:
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def _x(r: float | None) -> str:
    if r is None or r != r:
        return DASH
    return f"{X}{r:.2f}" if r < 10 else f"{X}{r:.0f}"


def render_section(data: dict[str, Any]) -> str:
    """The HTTP section of RESULTS.md: one table, between markers."""
    L = [START, "## HTTP: `threadkeep serve` vs FastAPI + the best peer (benchmarks/http.py)", ""]
    L.append(
        f"Run {data.get('started', '?')} to {data.get('finished', '?')} "
        f"({data.get('total_s', '?')} s). Closed-loop HTTP/1.1 keep-alive load from one asyncio "
        f"process on loopback, {' and '.join(map(str, data['concurrency']))} connections; "
        f"each cell {data['warmup_s']} s warm-up + {data['duration_s']} s measured, "
        f"{data['rounds']} rounds with the servers interleaved; medians over the rounds. "
        "**append** = `POST /v1/sessions/{id}/messages` with one ~400-byte message "
        "(one session per connection, durable on return); **last-50** = "
        f"`GET /v1/sessions/{{id}}/messages?last=50` of a {data['messages']:,}-message session. "
        f"The ratios compare with `{BASELINE}` for the same route and connections: "
        "req/s ratio > 1 and latency ratio < 1 mean threadkeep is ahead. The load generator "
        "and the server share the machine's 2 cores."
    )
    L.append("")
    L.append(
        "| server | route | conns | req/s | p50 ms | p99 ms | req/s vs base | p50 vs base "
        "| p99 vs base | errors |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    cells = data.get("cells", [])
    base = {(c["route"], c["connections"]): c for c in cells if c["server"] == BASELINE}
    order = list(data.get("servers", {}))
    for c in sorted(
        cells,
        key=lambda c: (ROUTES.index(c["route"]), c["connections"], order.index(c["server"])),
    ):
        b = base.get((c["route"], c["connections"]))
        is_base = c["server"] == BASELINE
        name = f"**{c['server']}**" if c["server"].startswith("threadkeep") else c["server"]
        rr = c["rps"] / b["rps"] if b and b["rps"] else None
        r50 = c["p50_us"] / b["p50_us"] if b and b["p50_us"] else None
        r99 = c["p99_us"] / b["p99_us"] if b and b["p99_us"] else None
        L.append(
            f"| {name} | {c['route']} | {c['connections']} | {c['rps']:,.0f} "
            f"| {_ms(c['p50_us'])} | {_ms(c['p99_us'])} "
            f"| {'base' if is_base else _x(rr)} | {'base' if is_base else _x(r50)} "
            f"| {'base' if is_base else _x(r99)} | {c['errors']} |"
        )
    L.append("")
    for name, s in data.get("servers", {}).items():
        ok = "verified" if s.get("verified") else "**NOT verified**"
        L.append(f"- `{name}`: {s['what']}; last-50 read back {ok}.")
    for err in data.get("errors", []):
        L.append(f"- **not run**: {err}")
    if "loadavg_after" in data:
        la = " / ".join(f"{x:.1f}" for x in data["loadavg_after"])
        L.append(f"- Load average (1/5/15 min) at the end: {la}.")
    L.append(END)
    return "\n".join(L) + "\n"


def write_section(md_path: str, section: str) -> None:
    """Put ``section`` into ``md_path``: in place of the previous one, or at the end."""
    text = open(md_path).read() if os.path.exists(md_path) else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(md_path, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.http", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--messages", type=int, default=2000, help="messages in the last-50 session")
    ap.add_argument("--concurrency", default="1,16", help="connections, comma-separated")
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per cell")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-requests", type=int, default=50_000, help="per cell and round")
    ap.add_argument(
        "--peers",
        default="oai-sqlitesession,raw-sqlite-wal-full",
        help="peersbench adapters to serve with FastAPI (the first is the ratio base)",
    )
    ap.add_argument("--no-pg", action="store_true", help="skip threadkeep on PostgreSQL")
    ap.add_argument("--out-json", default=None, help="default: benchmarks/results/http-<ts>.json")
    ap.add_argument("--no-results-md", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)
    if not os.path.exists(PEERS_PY):
        log(f"no peers venv at {PEERS_PY}: run `python -m benchmarks` once (or setup_venv.sh)")
        return 1

    ensure_peer_server()
    data = run(args)
    path = args.out_json
    if path is None:
        os.makedirs(RESULTS, exist_ok=True)
        path = os.path.join(RESULTS, f"http-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    section = render_section(data)
    print(section)
    if not args.no_results_md:
        write_section(RESULTS_MD, section)
        log(f"wrote the HTTP section of {RESULTS_MD}")
    log(f"results {path}; total {data['total_s']} s")
    bad = data["errors"] or any(c["errors"] for c in data["cells"])
    bad = bad or not all(s["verified"] for s in data["servers"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

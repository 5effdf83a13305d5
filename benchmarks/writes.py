"""The everyday calls besides append: what a chat or agent app makes around
its messages (create a session, rename it, star it, trash it, fork and
rewind it, stream a reply, record a tool call, keep a todo list, search).

    python -m benchmarks.writes [--engines sqlite,postgres] [--rounds 2] [--calls 200]
                                [--baseline OTHER_CHECKOUT/src] [--out FILE]

Each call's p50 and the client's CPU per call (``time.process_time``; on
PostgreSQL the server's CPU is not in it), on a fresh store per run. No peer
has these calls, so each p50 is given as a ratio to the physical floor
measured in the same process: one durable single-row insert by the raw
driver (sqlite3 WAL + ``synchronous=FULL``; psycopg, autocommit). A write
cannot cost less than one such commit.
PostgreSQL is reached as ``benchmarks.extra`` reaches it (``PEERS_PG_HOST``,
``PEERS_PG_PORT``, ``PEERS_PG_USER``), in a database made fresh for each run.

``--baseline`` runs another checkout's ``src`` (e.g. a ``git worktree`` of
an older commit) alternately with this one, round after round, each run in
its own process, and adds the ratio of this code's median to the baseline's:
the fair comparison on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = "\u00d7"  # the sign RESULTS.md uses for ratios


def _median_call(fn: Callable[[int], Any], calls: int) -> tuple[float, float]:
    """(p50 in µs, client CPU per call in µs) of ``calls`` calls of ``fn(i)``."""
    lat = []
    cpu0 = time.process_time()
    for i in range(calls):
        t = time.perf_counter_ns()
        fn(i)
        lat.append(time.perf_counter_ns() - t)
    cpu = (time.process_time() - cpu0) * 1e6 / calls
    return statistics.median(lat) / 1000, cpu


def _raw_floor(engine: str, workdir: str, calls: int) -> float:
    """p50 in µs of one durable single-row insert by the bare driver (on
    PostgreSQL, into the database ``benchmarks.extra.open_store`` made)."""
    row = ("x" * 32, "s", "y" * 400)
    if engine == "sqlite":
        db = sqlite3.connect(os.path.join(workdir, "raw.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE m (id TEXT PRIMARY KEY, session TEXT, content TEXT)")

        def insert(i: int) -> None:
            db.execute("BEGIN")
            db.execute("INSERT INTO m VALUES (?, ?, ?)", (f"{i}", row[1], row[2]))
            db.execute("COMMIT")

        p50, _ = _median_call(insert, calls)
        db.close()
        return p50
    import psycopg

    from benchmarks.extra import PG, PG_DB

    info = f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={PG_DB}"
    with psycopg.connect(info, autocommit=True) as c:
        c.execute("CREATE TABLE raw_m (id TEXT PRIMARY KEY, session TEXT, content TEXT)")
        p50, _ = _median_call(
            lambda i: c.execute("INSERT INTO raw_m VALUES (%s, %s, %s)", (f"{i}", *row[1:])),
            calls,
        )
        return p50


def child(engine: str, calls: int) -> dict[str, Any]:
    """One run of every call on a fresh store, in this process."""
    import threadkeep
    from benchmarks.extra import open_store
    from threadkeep import Actor

    workdir = tempfile.mkdtemp(prefix="tk-bench-writes-")
    tk, cleanup = open_store(engine, workdir)  # a fresh store: SQLite file or PG database
    try:
        floor = _raw_floor(engine, workdir, calls)
        me = Actor(tk.create_user("bench").value.id)
        sid = tk.create_session(me, title="Everyday calls").value.id
        big = tk.create_session(me, title="A long history").value.id
        for start in range(0, 2000, 500):
            batch = [
                {"role": "user", "content": f"message {j} " * 20} for j in range(start, start + 500)
            ]
            tk.append_messages(me, big, batch)
        tk.append_messages(
            me, sid, [{"role": "user", "content": f"hello world {j}"} for j in range(50)]
        )
        tools: list[str] = []
        todos: list[str] = []
        stream: list[str] = []

        def extend(i: int) -> None:
            if i % 50 == 0:  # a reply of 50 flushes, then the next one
                stream.append(tk.start_message(me, sid, {"role": "assistant"}).value.id)
            tk.extend_message(me, stream[-1], f"token{i} ")

        def rewind(i: int) -> None:  # "regenerate": the last reply moves to a branch
            tk.append_message(me, sid, {"role": "assistant", "content": "x"})
            tk.rewind_session(me, sid, to_seq=50)

        ops: list[tuple[str, Callable[[int], Any]]] = [
            ("create_session", lambda i: tk.create_session(me)),
            ("create_session, titled", lambda i: tk.create_session(me, title=f"Chat {i}")),
            ("fork_session of 2,000 at 1,000", lambda i: tk.fork_session(me, big, at_seq=1000)),
            ("update_session title", lambda i: tk.update_session(me, sid, title=f"t{i}")),
            ("update_session starred", lambda i: tk.update_session(me, sid, starred=i % 2 == 0)),
            (
                "delete_session + restore_session",
                lambda i: (tk.delete_session(me, sid), tk.restore_session(me, sid)),
            ),
            ("append_message + rewind_session", rewind),
            ("extend_message", extend),
            (
                "start_tool_event",
                lambda i: tools.append(
                    tk.start_tool_event(me, sid, {"name": "search", "input": {"q": i}}).value.id
                ),
            ),
            ("finish_tool_event", lambda i: tk.finish_tool_event(me, tools[i], output={"r": i})),
            (
                "add_todo",
                lambda i: todos.append(tk.add_todo(me, sid, {"content": f"task {i}"}).value.id),
            ),
            (
                "update_todo",
                lambda i: tk.update_todo(me, sid, todos[i], {"status": "completed"}),
            ),
            ("get_session", lambda i: tk.get_session(me, sid)),
            ("list_branches", lambda i: tk.list_branches(me, big)),
            ("search, 20 hits", lambda i: tk.search(me, "hello")),
        ]
        out = {name: _median_call(fn, calls) for name, fn in ops}
        return {"floor_us": floor, "ops": out, "threadkeep": threadkeep.__file__}
    finally:
        tk.close()
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def _run(code: str | None, engine: str, calls: int) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in (code, REPO) if p])
    got = subprocess.run(
        [sys.executable, "-m", "benchmarks.writes", "--child", engine, "--calls", str(calls)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(got.stdout))


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def report(runs: dict[tuple[str, str], list[dict[str, Any]]], baseline: bool) -> str:
    engines = sorted({e for e, _ in runs}, key=lambda e: e != "sqlite")
    lines = [
        f"| engine | call | p50 ms | {X} raw durable insert | client CPU µs |"
        + (" baseline p50 ms | this / baseline |" if baseline else ""),
        "|---|---|---|---|---|" + ("---|---|" if baseline else ""),
    ]
    for engine in engines:
        mine = runs[(engine, "this")]
        floor = statistics.median(r["floor_us"] for r in mine)
        for name in mine[0]["ops"]:
            p50 = statistics.median(r["ops"][name][0] for r in mine)
            cpu = statistics.median(r["ops"][name][1] for r in mine)
            row = f"| {engine} | {name} | {_ms(p50)} | {X}{p50 / floor:.1f} | {cpu:,.0f} |"
            if baseline:
                base = statistics.median(r["ops"][name][0] for r in runs[(engine, "baseline")])
                row += f" {_ms(base)} | {X}{p50 / base:.2f} |"
            lines.append(row)
        lines.append(f"| {engine} | *raw durable insert* | {_ms(floor)} | {X}1.0 | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.writes")
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--baseline", help="another checkout's src directory, run alternately")
    ap.add_argument("--out", help="write the table here too")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.calls)))
        return 0
    codes: list[tuple[str, str | None]] = [("this", None)]
    if args.baseline:
        codes.insert(0, ("baseline", os.path.abspath(args.baseline)))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for label, code in codes if r % 2 == 0 else codes[::-1]:
            for engine in [e for e in args.engines.split(",") if e]:
                print(f"[writes] round {r + 1}: {label} on {engine}", file=sys.stderr, flush=True)
                runs.setdefault((engine, label), []).append(_run(code, engine, args.calls))
    table = report(runs, bool(args.baseline))
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

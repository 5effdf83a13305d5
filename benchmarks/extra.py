"""threadkeep-only workloads, beyond what peersbench measures (the peers have
no listing API worth the name, no keyset pagination and no fork).

    python -m benchmarks.extra --out FILE [--engines sqlite,postgres] [--scale 1]

Per engine, on a fresh store:

* **W4-100k list**: one user with 100,000 sessions; ``list_sessions(limit=50)``
  p50/p99 over 50 runs, checked against the true 50 most recent.
  The newest session is made by ``create_session``; the other 99,999 copy
  its stored row (new id, title and times) and are inserted 1,000 per
  transaction through ``tk.engine.write``, each with the change-log row
  ``create_session`` writes: same rows and indexes, only the per-call cost is
  skipped (``create_session`` in a loop manages about 1k/s on SQLite and
  0.5k/s on PostgreSQL here: 2-3 minutes per engine just to set up).
  Activity times are distinct and spread at random over 90 days, not in id
  order, as a real history would be.
* **keyset depth**: walk every page of 50 with ``next_cursor`` (the last, page
  2,000 at full scale, holds the 50 oldest), then time page 1 and the deepest
  page with its cursor, 50 runs each; the ratio deep/page-1 should be ~1.
* **filtered views** of those 100,000 sessions: tags carried by half of
  them, a tenth, a hundredth, 20 of them, none of them, and the 5,000 oldest
  (a common tag that no recent session carries); 20 starred sessions; title
  texts that 10 sessions hold, a hundredth, a tenth, all, none, and a
  two-letter one that none hold. p50 over 20 runs of the first page of
  50, checked against the truth computed in Python, and its ratio to the
  unfiltered page's p50 in the same run.
* **fork 10k**: a session holding 10,000 messages; ``fork_session(at_seq=k)``
  at 20 random k, p50; each fork is checked (its length is k, its last
  message is the parent's k-th).
* **last-50 of 10k**: ``last_messages(n=50)`` on that session, and on a
  branch forked at its middle (reads through the parent segment), 50 runs.

All latencies are wall-clock ``perf_counter_ns`` around one library call.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sys
import time
import traceback
from datetime import timedelta
from typing import Any

from threadkeep import Actor, Threadkeep

try:  # the peers' message generator (~400 bytes + metadata), when on the path
    from peersbench.messages import make_messages
except ImportError:  # pragma: no cover - standalone use

    def make_messages(n: int, writer: int = 0) -> list[dict]:
        return [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": ("lorem ipsum dolor sit amet " * 15)[:400],
                "metadata": {"seq": i, "writer": writer},
            }
            for i in range(n)
        ]


SIZES = {
    "SESSIONS": 100_000,
    "PAGE": 50,
    "LIST_RUNS": 50,
    "VIEW_RUNS": 20,
    "CREATE_BATCH": 1_000,
    "FORK_MSGS": 10_000,
    "FORK_RUNS": 20,
    "LAST": 50,
    "LAST_RUNS": 50,
}

PG = {
    "host": os.environ.get("PEERS_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("PEERS_PG_PORT", "5432")),
    "user": os.environ.get("PEERS_PG_USER", "postgres"),
}
PG_DB = "tk_bench_extra"


def scaled(scale: float) -> dict[str, int]:
    s = dict(SIZES)
    s["SESSIONS"] = max(int(SIZES["SESSIONS"] * scale) // s["PAGE"] * s["PAGE"], 2 * s["PAGE"])
    s["FORK_MSGS"] = max(int(SIZES["FORK_MSGS"] * scale), 2 * s["LAST"])
    return s


def pct(values_ns: list[int], p: float) -> float:
    """p-th percentile (nearest rank, as peersbench) in milliseconds."""
    v = sorted(values_ns)
    k = max(0, min(len(v) - 1, round(p / 100.0 * len(v) + 0.5) - 1))
    return v[k] / 1e6


def timed(fn: Any, runs: int) -> tuple[list[int], Any]:
    lat = []
    out = None
    for _ in range(runs):
        t = time.perf_counter_ns()
        out = fn()
        lat.append(time.perf_counter_ns() - t)
    return lat, out


# --- engines -----------------------------------------------------------------


def _pg_admin(sql: str) -> None:
    import psycopg

    info = f"host={PG['host']} port={PG['port']} user={PG['user']} dbname=postgres"
    with psycopg.connect(info, autocommit=True, connect_timeout=5) as c:
        c.execute(sql)


def open_store(engine: str, datadir: str) -> tuple[Threadkeep, Any]:
    """A fresh store and a cleanup function."""
    if engine == "sqlite":
        d = os.path.join(datadir, "tk-extra-sqlite")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        tk = Threadkeep.open(f"sqlite:///{d}/threadkeep.db")

        def cleanup() -> None:
            shutil.rmtree(d, ignore_errors=True)

        return tk, cleanup
    _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{PG_DB}"')
    tk = Threadkeep.open(f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{PG_DB}")

    def cleanup_pg() -> None:
        _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')

    return tk, cleanup_pg


def settings_in_force(tk: Threadkeep) -> dict[str, Any]:
    with tk.engine.sa_engine.connect() as c:
        if tk.dialect == "sqlite":
            sync = int(c.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
            return {
                "journal_mode": c.exec_driver_sql("PRAGMA journal_mode").scalar(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
            }
        return {
            k: c.exec_driver_sql(f"SHOW {k}").scalar()
            for k in ("synchronous_commit", "fsync", "wal_sync_method", "server_version")
        }


# --- workloads ---------------------------------------------------------------


def bulk_sessions(tk: Threadkeep, me: Actor, sz: dict[str, int]) -> tuple[list[tuple], float]:
    """Create SESSIONS sessions for ``me``; returns [(last_activity_at, id)] and
    the seconds it took.

    The newest session is made with ``create_session``; its stored row is the
    template for the others, which are inserted ``CREATE_BATCH`` per
    transaction through ``tk.engine.write`` (executemany), each with the
    change-log row ``create_session`` would have logged. Their activity times
    are distinct, random, over the 90 days before it, and not in id order.
    """
    import sqlalchemy as sa

    from threadkeep.store.changes import row_json
    from threadkeep.store.tables import sessions

    n = sz["SESSIONS"]
    t0 = time.perf_counter()
    first = tk.create_session(me, id=f"s{n - 1:06d}", title=f"Chat s{n - 1:06d}").value
    template = dict(
        tk.engine.read(
            lambda c: c.execute(sa.select(sessions).where(sessions.c.id == first.id)).one()._mapping
        )
    )
    rows = [(first.last_activity_at, first.id)]
    rng = random.Random(42)
    span_us = 90 * 86_400 * 1_000_000
    offsets = rng.sample(range(span_us), n - 1)  # distinct: no ties in activity time
    base = first.last_activity_at - timedelta(days=91)
    todo = []
    for i, off in enumerate(offsets):
        at = base + timedelta(microseconds=off)
        todo.append((at, f"s{i:06d}"))
    rows.extend(todo)
    tags, starred = view_tags(todo, rng)
    b = sz["CREATE_BATCH"]
    for start in range(0, len(todo), b):
        values = [
            {
                **template,
                "id": sid,
                "title": f"Chat {sid}",
                "tags": tags.get(sid, []),
                "starred": sid in starred,
                "created_at": at,
                "updated_at": at,
                "last_activity_at": at,
            }
            for at, sid in todo[start : start + b]
        ]

        def op(tx: Any, values: list[dict[str, Any]] = values) -> None:
            tx.conn.execute(sessions.insert(), values)
            for v in values:
                tx.log("sessions", v["id"], "insert", row_json(v), me.user_id, v["id"])

        tk.engine.write(op)
    return rows, time.perf_counter() - t0


# The tags of the filtered views, by the share of sessions that carry them.
VIEW_SHARES = {"half": 0.5, "tenth": 0.1, "hundredth": 0.01}
VIEW_FEW = 20  # sessions carrying the "few" tag, and starred ones
VIEW_OLD = 5_000  # the oldest sessions, which alone carry the "old" tag


# Title texts for the filtered views; every title is "Chat s<6 digits>".
VIEW_TITLES = {
    "10": "chat s00001",  # s000010-s000019
    "hundredth": "s001",  # s001000-s001999
    "tenth": "s01",  # s010000-s019999
    "all": "chat",
    "absent": "no such title",
    "2 letters, absent": "9z",  # shorter than a trigram (SQLite: a scan of the titles)
    "1 letter, absent": "z",
}


def view_tags(todo: list[tuple], rng: random.Random) -> tuple[dict[str, list[str]], set[str]]:
    """Each session's tags for the filtered views, by id, and the ids of the
    starred sessions."""
    ids = [sid for _, sid in todo]
    chosen = {name: rng.sample(ids, int(len(ids) * share)) for name, share in VIEW_SHARES.items()}
    chosen["few"] = rng.sample(ids, min(VIEW_FEW, len(ids)))
    chosen["old"] = [sid for _, sid in sorted(todo)[:VIEW_OLD]]
    tags: dict[str, list[str]] = {}
    for name, picked in chosen.items():
        for sid in picked:
            tags.setdefault(sid, []).append(name)
    return tags, set(rng.sample(ids, min(VIEW_FEW, len(ids))))


def w_views(tk: Threadkeep, me: Actor, rows: list[tuple], sz: dict[str, int]) -> dict[str, Any]:
    """The first page of each filtered view, timed and checked, beside the
    unfiltered page in the same run."""
    page, runs = sz["PAGE"], sz["VIEW_RUNS"]
    by_recency = [sid for _, sid in sorted(rows, reverse=True)]
    every: dict[str, Any] = {}
    cursor = None
    while True:  # what each session holds, as stored
        p = tk.list_sessions(me, limit=500, cursor=cursor)
        every.update({s.id: s for s in p.items})
        if p.next_cursor is None:
            break
        cursor = p.next_cursor
    views: dict[str, tuple[dict[str, Any], Any]] = {
        "none": ({}, lambda s: True),
        **{
            f"tag {name}": ({"tag": name}, lambda s, t=name: t in s.tags)
            for name in (*VIEW_SHARES, "few", "old", "absent")
        },
        "starred": ({"starred": True}, lambda s: s.starred),
        **{
            f"title {name}": ({"title_contains": text}, lambda s, t=text: t in s.title.lower())
            for name, text in VIEW_TITLES.items()
        },
    }
    out: dict[str, Any] = {"sessions": len(rows), "page": page, "runs": runs}
    ok = True
    base = None
    for name, (flt, holds) in views.items():
        matching = [sid for sid in by_recency if holds(every[sid])]
        truth = matching[:page]
        tk.list_sessions(me, flt, limit=page)  # warm
        gc.collect()
        lat, got = timed(lambda flt=flt: tk.list_sessions(me, flt, limit=page), runs)
        right = [s.id for s in got.items] == truth
        ok &= right
        p50 = pct(lat, 50)
        base = p50 if base is None else base
        out[name] = {
            "p50_ms": p50,
            "p99_ms": pct(lat, 99),
            "vs_unfiltered": p50 / base,
            "matching": len(matching),
            "correct": right,
        }
    out["verified"] = ok
    return out


def w_list(tk: Threadkeep, me: Actor, rows: list[tuple], sz: dict[str, int]) -> dict[str, Any]:
    page = sz["PAGE"]
    truth = [sid for _, sid in sorted(rows, reverse=True)]  # newest activity, then id desc
    out: dict[str, Any] = {"sessions": len(rows), "page": page}

    tk.list_sessions(me, limit=page)  # warm
    gc.collect()
    lat, got = timed(lambda: tk.list_sessions(me, limit=page), sz["LIST_RUNS"])
    out["list_p50_ms"] = pct(lat, 50)
    out["list_p99_ms"] = pct(lat, 99)
    ok = [s.id for s in got.items] == truth[:page]
    out["list_correct"] = ok

    # walk every page with the cursor; remember the deepest page's cursor
    t0 = time.perf_counter()
    seen: list[str] = []
    cursor = None
    deep_cursor = None
    pages = 0
    while True:
        p = tk.list_sessions(me, limit=page, cursor=cursor)
        pages += 1
        seen.extend(s.id for s in p.items)
        if p.next_cursor is None:
            break
        deep_cursor = p.next_cursor  # the cursor that fetches the following page
        cursor = p.next_cursor
    out["walk_all_s"] = time.perf_counter() - t0
    out["pages"] = pages
    walk_ok = seen == truth
    out["walk_correct"] = walk_ok
    ok &= walk_ok

    deep_page = pages  # the page the last cursor fetches
    gc.collect()
    lat1, _ = timed(lambda: tk.list_sessions(me, limit=page), sz["LIST_RUNS"])
    latd, gotd = timed(
        lambda: tk.list_sessions(me, limit=page, cursor=deep_cursor), sz["LIST_RUNS"]
    )
    deep_ok = [s.id for s in gotd.items] == truth[(deep_page - 1) * page : deep_page * page]
    ok &= deep_ok
    out.update(
        deep_page=deep_page,
        page1_p50_ms=pct(lat1, 50),
        deep_p50_ms=pct(latd, 50),
        deep_p99_ms=pct(latd, 99),
        deep_vs_page1=pct(latd, 50) / pct(lat1, 50),
        deep_correct=deep_ok,
        verified=ok,
    )
    return out


def w_fork_last(tk: Threadkeep, me: Actor, sz: dict[str, int]) -> dict[str, Any]:
    n, last = sz["FORK_MSGS"], sz["LAST"]
    sid = "big"
    tk.create_session(me, id=sid, title="10k messages")
    msgs = make_messages(n)
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        tk.append_messages(me, sid, msgs[i : i + 1000])
    out: dict[str, Any] = {"messages": n, "populate_s": time.perf_counter() - t0}

    # fork at 20 random points, each a fresh branch
    rng = random.Random(7)
    points = [rng.randint(1, n) for _ in range(sz["FORK_RUNS"])]
    tk.fork_session(me, sid, at_seq=n // 3, id="warm-fork")  # warm
    gc.collect()
    lat = []
    for i, k in enumerate(points):
        t = time.perf_counter_ns()
        tk.fork_session(me, sid, at_seq=k, id=f"fork-{i}")
        lat.append(time.perf_counter_ns() - t)
    ok = True
    for i, k in enumerate(points):
        b = f"fork-{i}"
        tail = tk.last_messages(me, b, 1)
        ok &= tk.count_messages(me, b) == k and tail[0].seq == k
        ok &= tail[0].metadata["seq"] == k - 1
    out.update(fork_at=points, fork_p50_ms=pct(lat, 50), fork_p99_ms=pct(lat, 99), fork_ok=ok)

    # last-50 of the 10k session, and of a branch forked at its middle
    tk.last_messages(me, sid, last)
    gc.collect()
    lat, got = timed(lambda: tk.last_messages(me, sid, last), sz["LAST_RUNS"])
    last_ok = [m.metadata["seq"] for m in got] == list(range(n - last, n))
    mid = n // 2
    tk.fork_session(me, sid, at_seq=mid, id="mid-fork")
    tk.last_messages(me, "mid-fork", last)
    latb, gotb = timed(lambda: tk.last_messages(me, "mid-fork", last), sz["LAST_RUNS"])
    branch_ok = [m.metadata["seq"] for m in gotb] == list(range(mid - last, mid))
    out.update(
        last_p50_ms=pct(lat, 50),
        last_p99_ms=pct(lat, 99),
        last_ok=last_ok,
        branch_last_p50_ms=pct(latb, 50),
        branch_last_ok=branch_ok,
        verified=ok and last_ok and branch_ok,
    )
    return out


def run_engine(engine: str, sz: dict[str, int], datadir: str) -> dict[str, Any]:
    res: dict[str, Any] = {"engine": engine, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tk = cleanup = None
    try:
        tk, cleanup = open_store(engine, datadir)
        res["settings"] = settings_in_force(tk)
        me = Actor(tk.create_user("bench").value.id)
        rows, secs = bulk_sessions(tk, me, sz)
        res["create"] = {
            "sessions": len(rows),
            "seconds": secs,
            "sessions_per_s": len(rows) / secs,
            "how": (
                f"1 create_session + engine.write(executemany of {sz['CREATE_BATCH']} rows "
                "+ their change-log rows) per transaction"
            ),
        }
        print(f"[extra {engine}] {len(rows)} sessions in {secs:.1f}s", file=sys.stderr)
        res["list"] = w_list(tk, me, rows, sz)
        print(f"[extra {engine}] list done", file=sys.stderr)
        res["views"] = w_views(tk, me, rows, sz)
        print(f"[extra {engine}] views done", file=sys.stderr)
        res["fork"] = w_fork_last(tk, me, sz)
        print(f"[extra {engine}] fork/last done", file=sys.stderr)
    except Exception as e:  # recorded; the other engine still runs
        res["error"] = repr(e)[:500]
        res["traceback"] = traceback.format_exc()[-3000:]
        print(f"[extra {engine}] FAILED: {e!r}", file=sys.stderr)
    finally:
        try:
            if tk is not None:
                tk.close()
        finally:
            if cleanup is not None:
                cleanup()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.extra")
    ap.add_argument("--out", required=True)
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--datadir", default=os.environ.get("PEERS_DATADIR", "/tmp/peers-bench-data"))
    args = ap.parse_args(argv)
    sz = scaled(args.scale)
    out: dict[str, Any] = {"scale": args.scale, "sizes": sz, "engines": {}}
    for engine in [e for e in args.engines.split(",") if e]:
        out["engines"][engine] = run_engine(engine, sz, args.datadir)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

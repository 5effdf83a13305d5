"""What a transaction pooler costs: threadkeep directly and through PgBouncer.

``?pgbouncer=true`` (store/pg_connect.py) turns off psycopg's prepared
statements and moves every session setting into the transactions, so a store
behind a pooler does more per call than one on the server's own port. This
prices it, beside the raw driver both ways, on a PgBouncer in transaction mode
started for the run (tests/pgbouncer.py; Debian's ``pgbouncer`` package):

* ``raw``: one autocommit INSERT of a 400-byte message row (psycopg, no
  prepared statements: the floor a pooler allows).
* ``threadkeep``: ``append_message`` of the same message, durable at commit;
  ``get_session`` as the read a client makes first.

Variants run interleaved, round after round, each on the same fresh database,
so machine noise hits them alike; figures are medians, and ratios are taken
within a round.

    python -m benchmarks.pooler [--rounds 5] [--n 400]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from tests.pgbouncer import PgBouncer, find_binary

from threadkeep import Actor, Threadkeep
from threadkeep.store import pg_url

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
CONTENT = "x" * 400


def _p50(fn: Callable[[], Any], n: int) -> float:
    """Median microseconds of ``fn`` over ``n`` calls, after 20 warm-up calls."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _raw(url: str, n: int) -> float:
    with psycopg.connect(pg_url.conninfo(url), autocommit=True, prepare_threshold=None) as c:
        c.execute("CREATE TABLE IF NOT EXISTS raw_messages (id bigserial PRIMARY KEY, c text)")
        return _p50(lambda: c.execute("INSERT INTO raw_messages (c) VALUES (%s)", (CONTENT,)), n)


def _threadkeep(url: str, n: int) -> tuple[float, float]:
    with Threadkeep.open(url) as tk:
        me = Actor(tk.create_user(f"bench-{uuid.uuid4().hex[:6]}").value.id)
        sid = tk.create_session(me).value.id
        msg = {"role": "user", "content": CONTENT}
        append = _p50(lambda: tk.append_message(me, sid, msg), n)
        read = _p50(lambda: tk.get_session(me, sid), n)
    return append, read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=400, help="calls per variant and round")
    ap.add_argument("--admin-url", default=ADMIN)
    args = ap.parse_args(argv)
    binary = find_binary()
    if binary is None:
        raise SystemExit("PgBouncer is not installed (apt install pgbouncer)")
    name = f"tk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    direct = pg_url.parse(args.admin_url).set(database=name).render_as_string(False)
    bouncer = PgBouncer(binary, args.admin_url)
    pooled = bouncer.url(direct)
    rows: list[dict[str, float]] = []
    try:
        for r in range(args.rounds):
            raw_d, raw_p = _raw(direct, args.n), _raw(pooled, args.n)
            (tk_d, get_d), (tk_p, get_p) = _threadkeep(direct, args.n), _threadkeep(pooled, args.n)
            rows.append(
                {
                    "raw_d": raw_d,
                    "raw_p": raw_p,
                    "tk_d": tk_d,
                    "tk_p": tk_p,
                    "get_d": get_d,
                    "get_p": get_p,
                }
            )
            print(
                f"round {r + 1}: append direct {tk_d:.0f} us, pooled {tk_p:.0f} us; "
                f"raw {raw_d:.0f} / {raw_p:.0f} us; get_session {get_d:.0f} / {get_p:.0f} us",
                flush=True,
            )
    finally:
        bouncer.stop()
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def ratio(a: str, b: str) -> float:
        return statistics.median(row[a] / row[b] for row in rows)

    print()
    print(f"## Through a transaction pooler (PgBouncer, {args.rounds} rounds x {args.n} calls)")
    print()
    print("| | direct | through PgBouncer | pooled / direct |")
    print("|---|---|---|---|")
    for label, d, p in (
        ("raw INSERT p50", "raw_d", "raw_p"),
        ("threadkeep append p50", "tk_d", "tk_p"),
        ("threadkeep get_session p50", "get_d", "get_p"),
    ):
        print(f"| {label} | {med(d):.0f} us | {med(p):.0f} us | x{ratio(p, d):.2f} |")
    print(f"| append / raw | x{ratio('tk_d', 'raw_d'):.2f} | x{ratio('tk_p', 'raw_p'):.2f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

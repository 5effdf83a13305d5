"""Concurrent readers in one process: the last 50 messages, 1 to 16 at once.

A server answers many chat UIs at once, each asking for the last messages of
a session; what matters is how reads per second hold up as readers are
added. Every adapter here is the peers' own (``peersbench.adapters``, the
same classes the main benchmark drives) or threadkeep's
(benchmarks/peers_adapter.py), through the same ``load(session, 50)`` call:

* a session of 2,000 messages (peersbench's messages, batches of 100);
* for 1, 4 and 16 readers: OS threads for a threads adapter, asyncio tasks
  for an asyncio one (as the harness's W5 does), each reading the last 50 in
  a loop for ``--seconds``;
* rounds interleave the adapters, figures are medians over the rounds.

Runs in the peers' virtualenv (it imports their packages); ``python -m
benchmarks`` starts it there. Prints one Markdown section.

    python -m benchmarks.readers [--engines sqlite,postgres] [--rounds 3] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from typing import Any

from peersbench.adapters import load_adapter
from peersbench.messages import make_messages
from peersbench.worker import Ctx
from peersbench.workloads import call

ADAPTERS = {
    "sqlite": ("threadkeep-sqlite", "raw-sqlite-wal-full", "oai-sqlitesession"),
    "postgres": ("threadkeep-pg", "raw-psycopg", "lc-postgres"),
}
READERS = (1, 4, 16)
SESSION = "readers-s1"
X = "\u00d7"  # multiplication sign


def _reads_per_second(ad: Any, n: int, seconds: float) -> float:
    """Reads of the last 50 per second with ``n`` concurrent readers."""
    stop = time.monotonic() + seconds
    if ad.concurrency == "asyncio":

        async def main() -> int:
            async def reader() -> int:
                done = 0
                while time.monotonic() < stop:
                    got = await call(ad.load(SESSION, 50))
                    assert len(got) == 50
                    done += 1
                return done

            return sum(await asyncio.gather(*(reader() for _ in range(n))))

        return asyncio.run(main()) / seconds
    counts = [0] * n

    def reader(i: int) -> None:
        while time.monotonic() < stop:
            got = ad.load(SESSION, 50)
            assert len(got) == 50
            counts[i] += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def measure(names: list[str], rounds: int, seconds: float) -> dict[str, dict[int, float]]:
    samples: dict[str, dict[int, list[float]]] = {a: {n: [] for n in READERS} for a in names}
    root = tempfile.mkdtemp(prefix="tk-readers-")
    try:
        for _ in range(rounds):
            for name in names:
                ad = load_adapter(name)
                ctx = Ctx(root, ad, "readers")
                asyncio.run(call(ad.setup(ctx)))
                try:
                    for k in range(20):
                        batch = make_messages(100, start=100 * k)
                        asyncio.run(call(ad.append_many(SESSION, batch)))
                    for n in READERS:
                        samples[name][n].append(_reads_per_second(ad, n, seconds))
                finally:
                    asyncio.run(call(ad.teardown()))
                    ctx.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {a: {n: statistics.median(v) for n, v in by_n.items()} for a, by_n in samples.items()}


def render(results: dict[str, dict[str, dict[int, float]]], rounds: int, seconds: float) -> str:
    head = " | ".join(f"{n} reader{'s' if n > 1 else ''}" for n in READERS)
    lines = [
        "## Concurrent readers: last 50 of a 2,000-message session (benchmarks/readers.py)",
        "",
        f"Reads per second in one process, {rounds} rounds of {seconds:g} s per cell, adapters "
        "interleaved, medians. Threads adapters read from OS threads, asyncio ones from "
        "tasks. The last column: reads/s with 16 readers divided by reads/s with 1 "
        "(below 1: adding readers lowers the total).",
        "",
        f"| engine | adapter | {head} | 16 vs 1 |",
        "|---|---|" + "---|" * len(READERS) + "---|",
    ]
    for engine, by_adapter in results.items():
        for name, by_n in by_adapter.items():
            cells = " | ".join(f"{by_n[n]:,.0f}" for n in READERS)
            bold = f"**{name}**" if name.startswith("threadkeep") else name
            lines.append(f"| {engine} | {bold} | {cells} | {X}{by_n[16] / by_n[1]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.readers")
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    args = ap.parse_args(argv)
    results = {
        e: measure(list(ADAPTERS[e]), args.rounds, args.seconds)
        for e in args.engines.split(",")
        if e
    }
    print(render(results, args.rounds, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

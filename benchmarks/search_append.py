"""What the search index costs an append: revision 0005 (no index) against the
head (0006, the index kept by the database), on both engines.

    python -m benchmarks.search_append                 # ~2 min
    python -m benchmarks.search_append --rounds 5 --engines sqlite

Each round makes a fresh database per revision (alternating, so drift on a
shared machine hits both alike) and times, through ``Threadkeep``: single
appends (one message per transaction) and batches of 100 messages. Message
text: 40 words. The figures are per message: the best round (least disturbed
by other load on the machine), then the median; SQLite also reports the
process CPU time of the batches (the triggers run in-process), which is the
steadiest figure on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid

from threadkeep import Actor, Threadkeep
from threadkeep.store import migrate, open_engine

PG_ADMIN = os.environ.get("THREADKEEP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WORDS = [f"w{i}x" for i in range(5000)]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=40))


def _measure(url: str, revision: str, singles: int, batches: int) -> tuple[float, float, float]:
    engine = open_engine(url, migrate=False)
    migrate.upgrade(engine.sa_engine, revision)
    tk = Threadkeep(engine)
    rng = random.Random(1)
    try:
        me = Actor(tk.create_user("b").value.id)
        sid = tk.create_session(me, title="append cost").value.id
        for _ in range(20):  # warm up
            tk.append_message(me, sid, {"role": "user", "content": _text(rng)})
        t = time.perf_counter()
        for _ in range(singles):
            tk.append_message(me, sid, {"role": "user", "content": _text(rng)})
        single_us = (time.perf_counter() - t) / singles * 1e6
        t = time.perf_counter()
        cpu = time.process_time()
        for _ in range(batches):
            tk.append_messages(
                me, sid, [{"role": "user", "content": _text(rng)} for _ in range(100)]
            )
        batch_us = (time.perf_counter() - t) / (batches * 100) * 1e6
        cpu_us = (time.process_time() - cpu) / (batches * 100) * 1e6
        return single_us, batch_us, cpu_us
    finally:
        tk.close()


def _fresh(engine: str, tmp: str) -> tuple[str, str | None]:
    if engine == "sqlite":
        return f"sqlite:///{tmp}/{uuid.uuid4().hex}.db", None
    import psycopg

    name = f"tk_append_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def _drop(name: str | None) -> None:
    if name is None:
        return
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--singles", type=int, default=300)
    p.add_argument("--batches", type=int, default=30)
    a = p.parse_args()
    for engine in a.engines.split(","):
        got: dict[str, list[tuple[float, float, float]]] = {"0005": [], "0006": []}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(a.rounds):
                for rev in ("0005", "0006"):
                    url, name = _fresh(engine, tmp)
                    try:
                        got[rev].append(_measure(url, rev, a.singles, a.batches))
                    finally:
                        _drop(name)
        for label, pick in (("best", min), ("median", statistics.median)):
            s0, s1 = (pick(r[0] for r in got[rev]) for rev in ("0005", "0006"))
            b0, b1 = (pick(r[1] for r in got[rev]) for rev in ("0005", "0006"))
            c0, c1 = (pick(r[2] for r in got[rev]) for rev in ("0005", "0006"))
            cpu = (
                f", batch CPU in-process {c0:.1f} -> {c1:.1f} us/message "
                f"({(c1 / c0 - 1) * 100:+.0f}%)"
                if engine == "sqlite"
                else ""
            )
            print(
                f"{engine} ({label} of {a.rounds}): single append {s0:.0f} -> {s1:.0f} us "
                f"({(s1 / s0 - 1) * 100:+.0f}%), batch of 100 {b0:.1f} -> {b1:.1f} us/message "
                f"({(b1 / b0 - 1) * 100:+.0f}%){cpu}",
                flush=True,
            )


if __name__ == "__main__":
    main()

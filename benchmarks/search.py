"""Full-text search at 1M messages: p50/p99 of a two-word query, both engines.

    python -m benchmarks.search                       # 1M messages, SQLite and PostgreSQL
    python -m benchmarks.search --messages 100000 --engines sqlite

The schema comes from ``Threadkeep.open`` (migrated to the head, so the search
index of revisions 0006 and 0007 is in place). Sessions are created through
the library; the messages and tool events are then bulk-loaded straight into
the tables for speed: ``executemany`` INSERTs on SQLite, each batch then
indexed by the store's own statement (``store/search.py`` ``index_messages``,
as an append does; tool events by their trigger) and ``COPY`` on PostgreSQL
(the generated tsvector column is computed per row, as for an append). Then
``ANALYZE``, as autovacuum would. The text is synthetic: words from a
30,000-word vocabulary drawn with Zipf frequencies (rank r has weight 1/r),
8-60 words a message.

Each query is two words drawn from the vocabulary ranks 20-5,000 (from words in
a few percent of the messages to rare ones), timed through ``Threadkeep.search``
(all three kinds, 20 hits, snippets included), after 5 warm-up queries. A
second set uses two of the 10-40 most frequent words (the worst case: each word
in a large share of the messages).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from threadkeep import Actor, Threadkeep
from threadkeep.store.search import index_messages

VOCAB = 30_000
SESSIONS = 1_000
PG_ADMIN = os.environ.get("THREADKEEP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_SYLLABLES = [a + b for a in "bcdfghjklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    out: list[str] = []
    while len(out) < VOCAB:
        w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if w not in words:
            words.add(w)
            out.append(w)
    return out


def texts(rng: random.Random, vocab: list[str], n: int) -> Iterator[str]:
    cum = list(itertools.accumulate(1.0 / r for r in range(1, VOCAB + 1)))
    for _ in range(n):
        yield " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 60)))


def queries(rng: random.Random, vocab: list[str], lo: int, hi: int, n: int) -> list[str]:
    return [f"{vocab[rng.randint(lo, hi)]} {vocab[rng.randint(lo, hi)]}" for _ in range(n)]


def _stamp(i: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)


def load(url: str, n_messages: int, seed: int) -> tuple[Actor, list[str], float]:
    """Create the store and load it; returns the actor, the vocabulary, seconds."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    t0 = time.perf_counter()
    with Threadkeep.open(url) as tk:
        me = Actor(tk.create_user("bench").value.id)
        other = Actor(tk.create_user("other").value.id)
        per = n_messages // SESSIONS
        sessions = []
        for i in range(SESSIONS):
            # One session in ten is someone else's: scoping has rows to skip.
            who = other if i % 10 == 9 else me
            title = " ".join(rng.choices(vocab[:5000], k=4))
            sessions.append((who, tk.create_session(who, title=title).value.id))
        pg = tk.dialect == "postgresql"
    rows = texts(rng, vocab, n_messages)
    if pg:
        _load_pg(url, sessions, per, rows, rng, vocab)
    else:
        _load_sqlite(url, sessions, per, rows, rng, vocab)
    return me, vocab, time.perf_counter() - t0


def _message_rows(
    sessions: list[tuple[Actor, str]], per: int, rows: Iterator[str]
) -> Iterator[tuple[str, str, str, int, str, str, datetime]]:
    i = 0
    for who, sid in sessions:
        for seq in range(1, per + 1):
            role = "user" if seq % 2 else "assistant"
            yield (str(uuid.uuid4()), who.user_id, sid, seq, role, next(rows), _stamp(i))
            i += 1


def _tool_rows(
    sessions: list[tuple[Actor, str]], rng: random.Random, vocab: list[str]
) -> Iterator[tuple[str, str, str, str, str, datetime]]:
    i = 0
    for who, sid in sessions:
        for _ in range(100):  # 100k tool events at SESSIONS = 1,000
            out = " ".join(rng.choices(vocab[:8000], k=rng.randint(5, 40)))
            yield (str(uuid.uuid4()), who.user_id, sid, "bash", f'{{"stdout": "{out}"}}', _stamp(i))
            i += 1


def _load_sqlite(
    url: str,
    sessions: list[tuple[Actor, str]],
    per: int,
    rows: Iterator[str],
    rng: random.Random,
    vocab: list[str],
) -> None:
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")

    def ts(d: datetime) -> str:
        return d.strftime("%Y-%m-%d %H:%M:%S.%f")

    msgs = _message_rows(sessions, per, rows)
    while batch := list(itertools.islice(msgs, 50_000)):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO messages (id, owner_id, session_id, seq, role, content, metadata, "
            "created_at, status) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, 'complete')",
            [(*r[:6], ts(r[6])) for r in batch],
        )
        index_messages(db, [r[0] for r in batch])
        db.execute("COMMIT")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO tool_events (id, owner_id, session_id, name, status, output, started_at, "
        "version, created_at, updated_at) VALUES (?, ?, ?, ?, 'succeeded', ?, ?, 1, ?, ?)",
        [(*r[:5], ts(r[5]), ts(r[5]), ts(r[5])) for r in _tool_rows(sessions, rng, vocab)],
    )
    db.execute("UPDATE sessions SET head_seq = ?", (per,))
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


def _load_pg(
    url: str,
    sessions: list[tuple[Actor, str]],
    per: int,
    rows: Iterator[str],
    rng: random.Random,
    vocab: list[str],
) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur:
            with cur.copy(
                "COPY messages (id, owner_id, session_id, seq, role, content, metadata, "
                "created_at) FROM STDIN"
            ) as copy:
                for r in _message_rows(sessions, per, rows):
                    copy.write_row((*r[:6], "{}", r[6]))
            with cur.copy(
                "COPY tool_events (id, owner_id, session_id, name, status, output, started_at, "
                "version, created_at, updated_at) FROM STDIN"
            ) as copy:
                for t in _tool_rows(sessions, rng, vocab):
                    copy.write_row((*t[:4], "succeeded", t[4], t[5], 1, t[5], t[5]))
            cur.execute("UPDATE sessions SET head_seq = %s", (per,))
            cur.execute("VACUUM ANALYZE messages")
            cur.execute("VACUUM ANALYZE tool_events")
            cur.execute("VACUUM ANALYZE sessions")


def time_queries(tk: Threadkeep, me: Actor, qs: list[str]) -> dict[str, float]:
    for q in qs[:5]:
        tk.search(me, q)
    took: list[float] = []
    found: list[int] = []
    for q in qs:
        t = time.perf_counter()
        res = tk.search(me, q)
        took.append((time.perf_counter() - t) * 1000)
        found.append(len(res.items))
    took.sort()
    return {
        "p50_ms": statistics.median(took),
        "p99_ms": took[min(len(took) - 1, round(0.99 * (len(took) - 1)))],
        "mean_hits": statistics.mean(found),
    }


def run(engine: str, n_messages: int, n_queries: int, seed: int) -> None:
    tmp = tempfile.mkdtemp(prefix="tk-search-bench-")
    pg_db = None
    if engine == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        import psycopg

        pg_db = f"tk_search_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {pg_db}")
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_db}"
    try:
        me, vocab, load_s = load(url, n_messages, seed)
        rng = random.Random(seed + 1)
        varied = queries(rng, vocab, 20, 5000, n_queries)
        frequent = queries(rng, vocab, 10, 40, n_queries)
        with Threadkeep.open(url) as tk:
            a = time_queries(tk, me, varied)
            b = time_queries(tk, me, frequent)
            size = _size(tk, url)
        print(
            f"{engine}: {n_messages:,} messages, {SESSIONS * 100:,} tool events, loaded in "
            f"{load_s:.0f} s; {size}\n"
            f"  two words, ranks 20-5000 ({n_queries} queries): p50 {a['p50_ms']:.1f} ms, "
            f"p99 {a['p99_ms']:.1f} ms, {a['mean_hits']:.1f} hits on average\n"
            f"  two frequent words, ranks 10-40 ({n_queries} queries): p50 {b['p50_ms']:.1f} ms, "
            f"p99 {b['p99_ms']:.1f} ms, {b['mean_hits']:.1f} hits on average",
            flush=True,
        )
    finally:
        if pg_db is not None:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


def _size(tk: Threadkeep, url: str) -> str:
    with tk.engine.sa_engine.connect() as conn:
        if tk.dialect == "postgresql":
            total = conn.exec_driver_sql(
                "SELECT sum(pg_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relname LIKE 'search\\_%%' AND c.relkind = 'i'"
            ).scalar_one()
            return f"GIN indexes {int(total) / 2**20:.0f} MiB"
        page = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        pages = conn.exec_driver_sql(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'search%'"
        ).scalar()
        if pages is None:  # no dbstat in this build
            size = os.path.getsize(url.removeprefix("sqlite:///"))
            return f"database file {size / 2**20:.0f} MiB"
        return f"FTS5 tables {int(pages) / 2**20:.0f} MiB (page size {page})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--engines", default="sqlite,postgresql")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    for engine in a.engines.split(","):
        run(engine.strip(), a.messages, a.queries, a.seed)


if __name__ == "__main__":
    main()

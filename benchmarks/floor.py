"""The SQL floor: what threadkeep's schema costs per append with no Python at all.

The issue's speed bars compare threadkeep with the raw driver writing one
message row and bumping one session row. threadkeep's append also allocates
seq, writes the message's change-log row (a JSON copy of the message), the
session's change row, keeps the full-text index current in the same
transaction (issue 3) and, on SQLite, numbers the log. This benchmark asks how
much of the gap is the database work itself, by replaying threadkeep's own
statements through the bare driver (no SQLAlchemy, no pydantic, no service
layer) on a database made by ``Threadkeep.open``:

* ``raw``: the peers' raw baseline (peersbench/adapters/raw_sqlite.py and
  raw_pg.py): INSERT message + UPSERT session in one transaction (SQLite) or
  one autocommit CTE (PostgreSQL).
* ``tk-sql``: threadkeep's statements, compiled from the store's own Core
  statements (store/messages.py, store/sqlite.py) or the store's one-statement
  append (store/pg_append.py), with the values the store would bind. Building
  those parameters (a dict and an orjson dump per row) is inside the timing:
  a few microseconds per message, so tk-sql is a floor within that margin.
* ``tk-sql, no search``: the same, with the search upkeep removed (SQLite:
  the store's indexing statement left out; PostgreSQL: the generated
  tsvector column and its GIN index dropped). Only here, to price what
  issue 3's same-transaction search costs; threadkeep itself always keeps it.
* ``threadkeep``: the library call, ``append_message`` / ``append_messages``.

Variants run interleaved, round after round, each on its own fresh store, so
machine noise hits them alike; figures are medians and ratios to ``raw`` from
this one run. Durability is the same everywhere: SQLite WAL +
``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``.

    python -m benchmarks.floor [--engines sqlite,postgres] [--rounds 5] [--n 300]

Prints a Markdown section (appended to RESULTS.md by ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson

from threadkeep import Actor, Threadkeep
from threadkeep.model.ids import new_id
from threadkeep.store.search import index_messages

TEXT = ("the quick brown fox jumps over the lazy dog and keeps running far away " * 6)[:400]
PG_ADMIN = os.environ.get("THREADKEEP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def metadata(i: int) -> dict[str, Any]:
    return {"seq": i, "writer": 0, "model": "gpt-x", "tokens": 123, "latency_ms": 45.6}


def message(i: int) -> dict[str, Any]:
    return {"role": "user", "content": TEXT, "metadata": metadata(i)}


# --- one variant = setup() -> (append_one, append_batch, close) ----------------

Variant = Callable[[str], tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]]


def _library(url: str) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
    tk = Threadkeep.open(url)
    actor = Actor(tk.create_user("bench").value.id)
    tk.create_session(actor, id="s1")

    def one(i: int) -> None:
        tk.append_message(actor, "s1", message(i))

    def batch(i: int) -> None:
        tk.append_messages(actor, "s1", [message(i + k) for k in range(100)])

    return one, batch, tk.close


# --- SQLite ---------------------------------------------------------------------

RAW_SQLITE_SCHEMA = [
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at REAL, updated_at REAL)",
    "CREATE INDEX sessions_updated ON sessions(updated_at DESC)",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, "
    "role TEXT NOT NULL, content TEXT NOT NULL, metadata TEXT NOT NULL, created_at REAL)",
    "CREATE INDEX messages_session ON messages(session_id, id)",
]


def _sqlite_connect(path: str) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("PRAGMA foreign_keys=ON")
    return c


def sqlite_raw(
    workdir: str,
) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
    c = _sqlite_connect(os.path.join(workdir, "raw.db"))
    for s in RAW_SQLITE_SCHEMA:
        c.execute(s)
    ins = "INSERT INTO messages(session_id, role, content, metadata, created_at) VALUES (?,?,?,?,?)"
    ups = (
        "INSERT INTO sessions(id, created_at, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at"
    )

    def one(i: int) -> None:
        now = time.time()
        c.execute("BEGIN")
        c.execute(ins, ("s1", "user", TEXT, orjson.dumps(metadata(i)).decode(), now))
        c.execute(ups, ("s1", now, now))
        c.execute("COMMIT")

    def batch(i: int) -> None:
        now = time.time()
        rows = [
            ("s1", "user", TEXT, orjson.dumps(metadata(i + k)).decode(), now) for k in range(100)
        ]
        c.execute("BEGIN")
        c.executemany(ins, rows)
        c.execute(ups, ("s1", now, now))
        c.execute("COMMIT")

    return one, batch, c.close


def _tk_sqlite_statements(url: str) -> tuple[str, str, dict[str, str]]:
    """A store made by the library, and the SQL text its append path runs."""
    from threadkeep.store import messages as mq
    from threadkeep.store.prepared import prepared
    from threadkeep.store.sqlite import _changes_insert

    tk = Threadkeep.open(url)
    owner = tk.create_user("bench").value.id
    tk.create_session(Actor(owner), id="s1")
    dialect = tk.engine.sa_engine.dialect
    fake_tx = SimpleNamespace(store=tk.engine)
    sql = {
        "bump": prepared(dialect, "floor.bump", mq._bump_statement),
        "insert": prepared(dialect, "floor.insert", lambda: mq._insert_statement(fake_tx)),  # type: ignore[arg-type]
        "changes": prepared(dialect, "floor.changes", _changes_insert),
    }
    order = {k: [n for n, _ in p.plan] for k, p in sql.items()}
    tk.close()
    return owner, url.removeprefix("sqlite:///"), {k: (p.sql, order[k]) for k, p in sql.items()}  # type: ignore[misc]


def _sqlite_tk_sql(search: bool) -> Variant:
    def setup(
        workdir: str,
    ) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
        owner, path, sql = _tk_sqlite_statements(f"sqlite:///{workdir}/tk.db")
        c = _sqlite_connect(path)
        id_at = sql["insert"][1].index("id")  # type: ignore[index]

        def bind(kind: str, values: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(values[n] for n in sql[kind][1])  # type: ignore[index]

        def append(first: int, n: int) -> None:
            now = datetime.now(UTC)
            now_db = now.strftime("%Y-%m-%d %H:%M:%S.%f")
            c.execute("BEGIN IMMEDIATE")
            offset, txid = c.execute(
                "SELECT last_offset, last_txid FROM log_state WHERE id = 1"
            ).fetchone()
            txid += 1

            def log_row(
                offset: int, table: str, key: str, op: str, row: dict[str, Any]
            ) -> tuple[Any, ...]:
                return bind(
                    "changes",
                    {
                        "log_offset": offset,
                        "txid": txid,
                        "table_name": table,
                        "row_key": key,
                        "op": op,
                        "row": orjson.dumps(row).decode(),
                        "owner_id": owner,
                        "session_id": "s1",
                        "created_at": now_db,
                    },
                )

            bump = {"n": n, "events": 0, "in_tok": 0, "out_tok": 0, "now": now_db}
            head = c.execute(
                sql["bump"][0],
                bind("bump", {**bump, "sid": "s1", "owner": owner}),  # type: ignore[index]
            ).fetchone()[0]
            rows, changes = [], []
            for k in range(n):
                meta = orjson.dumps(metadata(first + k)).decode()
                row = {
                    "id": new_id(), "owner_id": owner, "session_id": "s1",
                    "seq": head - n + k + 1, "role": "user", "content": TEXT, "parts": None,
                    "tool_calls": None, "model": None, "input_tokens": None,
                    "output_tokens": None, "client_id": None, "metadata": meta,
                    "created_at": now_db, "txid": txid, "status": "complete",
                }  # fmt: skip
                rows.append(bind("insert", row))
                change = {**row, "metadata": metadata(first + k), "created_at": now.isoformat()}
                del change["txid"]
                offset += 1
                changes.append(log_row(offset, "messages", row["id"], "insert", change))
            session_row = {"id": "s1", "head_seq": head, "last_activity_at": now.isoformat()}
            offset += 1
            changes.append(log_row(offset, "sessions", "s1", "update", session_row))
            c.executemany(sql["insert"][0], rows)  # type: ignore[index]
            if search:  # the store's own statement (store/search.py)
                index_messages(c, [r[id_at] for r in rows])
            c.executemany(sql["changes"][0], changes)  # type: ignore[index]
            c.execute(
                "UPDATE log_state SET last_offset = ?, last_txid = ? WHERE id = 1", (offset, txid)
            )
            c.execute("COMMIT")

        return (lambda i: append(i, 1)), (lambda i: append(i, 100)), c.close

    return setup


def sqlite_library(
    workdir: str,
) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
    return _library(f"sqlite:///{workdir}/lib.db")


def wal_pages_per_append(workdir: str, variant: Variant, db: str) -> float:
    """4 KiB pages each durable single append adds to the WAL (checkpoints off)."""
    one, _, close = variant(workdir)
    for i in range(50):
        one(i)
    path = os.path.join(workdir, db)
    c = sqlite3.connect(path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    # Checkpointing off for the measuring connection's writes: the appends run
    # on the variant's own connection, so measure growth over a few appends
    # small enough not to reach the default autocheckpoint (1,000 pages).
    before = os.path.getsize(path + "-wal")
    for i in range(40):
        one(100 + i)
    grown = os.path.getsize(path + "-wal") - before
    close()
    return grown / 40 / (4096 + 24)


# --- PostgreSQL -------------------------------------------------------------------


def _pg_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_pg_counter = iter(range(10**9))


def pg_raw(
    _workdir: str,
) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
    import psycopg
    from psycopg.types.json import Jsonb

    name = f"tk_floor_raw_{next(_pg_counter)}"
    c = psycopg.connect(_pg_database(name), autocommit=True)
    c.execute(
        "CREATE TABLE sessions (id text PRIMARY KEY, "
        "created_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
        "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    c.execute("CREATE INDEX sessions_updated ON sessions(updated_at DESC)")
    c.execute(
        "CREATE TABLE messages (id bigserial PRIMARY KEY, session_id text NOT NULL, "
        "role text NOT NULL, content text NOT NULL, metadata jsonb NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    c.execute("CREATE INDEX messages_session ON messages(session_id, id)")
    one_sql = (
        "WITH s AS (INSERT INTO sessions(id) VALUES (%(sid)s) ON CONFLICT (id) DO UPDATE "
        "SET updated_at = clock_timestamp() RETURNING id) "
        "INSERT INTO messages(session_id, role, content, metadata) "
        "VALUES (%(sid)s, %(role)s, %(content)s, %(meta)s)"
    )

    def one(i: int) -> None:
        c.execute(
            one_sql, {"sid": "s1", "role": "user", "content": TEXT, "meta": Jsonb(metadata(i))}
        )

    def batch(i: int) -> None:
        with c.transaction():
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO messages(session_id, role, content, metadata) "
                    "VALUES (%s, %s, %s, %s)",
                    [("s1", "user", TEXT, Jsonb(metadata(i + k))) for k in range(100)],
                )
            c.execute(
                "INSERT INTO sessions(id) VALUES (%s) ON CONFLICT (id) DO UPDATE "
                "SET updated_at = clock_timestamp()",
                ("s1",),
            )

    def close() -> None:
        c.close()
        _pg_drop(name)

    return one, batch, close


def _pg_tk_sql(search: bool) -> Variant:
    def setup(
        _workdir: str,
    ) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
        import psycopg

        from threadkeep.model.messages import NewMessage, Role
        from threadkeep.store import pg_append
        from threadkeep.store.messages import message_rows

        name = f"tk_floor_sql_{next(_pg_counter)}"
        url = _pg_database(name)
        tk = Threadkeep.open(url)
        owner = tk.create_user("bench").value.id
        tk.create_session(Actor(owner), id="s1")
        tk.close()
        c = psycopg.connect(url, autocommit=True)
        c.execute("SET synchronous_commit TO on")
        if not search:
            c.execute("DROP INDEX search_messages")
            c.execute("ALTER TABLE messages DROP COLUMN search_vector")

        def append(first: int, n: int) -> None:
            # The statement and parameters the store's one-statement append
            # sends (store/pg_append.py), built by the store's own code.
            now = datetime.now(UTC)
            new = [
                NewMessage.model_construct(
                    role=Role.USER, content=TEXT, metadata=metadata(first + k)
                )
                for k in range(n)
            ]
            rows = message_rows(new, owner, "s1", now, 0, None)
            query, params = pg_append.statement(owner, "s1", rows, now)
            c.execute(query, params).fetchone()

        def close() -> None:
            c.close()
            _pg_drop(name)

        return (lambda i: append(i, 1)), (lambda i: append(i, 100)), close

    return setup


def pg_library(
    _workdir: str,
) -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
    name = f"tk_floor_lib_{next(_pg_counter)}"
    one, batch, close = _library(_pg_database(name))

    def done() -> None:
        close()
        _pg_drop(name)

    return one, batch, done


# --- the run ----------------------------------------------------------------------

ENGINES: dict[str, list[tuple[str, Variant]]] = {
    "sqlite": [
        ("raw", sqlite_raw),
        ("tk-sql", _sqlite_tk_sql(search=True)),
        ("tk-sql, no search", _sqlite_tk_sql(search=False)),
        ("threadkeep", sqlite_library),
    ],
    "postgres": [
        ("raw", pg_raw),
        ("tk-sql", _pg_tk_sql(search=True)),
        ("tk-sql, no search", _pg_tk_sql(search=False)),
        ("threadkeep", pg_library),
    ],
}


def measure(engine: str, rounds: int, n: int, batches: int) -> dict[str, dict[str, Any]]:
    singles: dict[str, list[float]] = {name: [] for name, _ in ENGINES[engine]}
    rates: dict[str, list[float]] = {name: [] for name, _ in ENGINES[engine]}
    for _ in range(rounds):
        for name, setup in ENGINES[engine]:
            workdir = tempfile.mkdtemp(prefix="tk-floor-")
            try:
                one, batch, close = setup(workdir)
                try:
                    for i in range(20):  # warm-up: statement caches, first pages
                        one(i)
                    for i in range(n):
                        t = time.perf_counter()
                        one(1000 + i)
                        singles[name].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    for b in range(batches):
                        batch(10_000 + b * 100)
                    rates[name].append(batches * 100 / (time.perf_counter() - t))
                finally:
                    close()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    out: dict[str, dict[str, Any]] = {}
    for name in singles:
        out[name] = {
            "w1_p50_us": statistics.median(singles[name]) * 1e6,
            "w2_msg_s": statistics.median(rates[name]),
        }
    if engine == "sqlite":
        for name, setup in ENGINES[engine]:
            db = {"raw": "raw.db", "threadkeep": "lib.db"}.get(name, "tk.db")
            workdir = tempfile.mkdtemp(prefix="tk-floor-")
            try:
                out[name]["wal_pages"] = wal_pages_per_append(workdir, setup, db)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    return out


def render(results: dict[str, dict[str, dict[str, Any]]], rounds: int, n: int) -> str:
    lines = [
        "## The SQL floor: threadkeep's statements without Python (benchmarks/floor.py)",
        "",
        f"W1: {n} single appends per round; W2: batches of 100; {rounds} rounds, variants "
        "interleaved, each round on a fresh store; medians. xN = N times raw's latency, "
        "or raw's msg/s divided by N (>1 = slower than raw). Durable at commit everywhere.",
        "",
        "| engine | variant | W1 append p50 µs | x raw | W2 msg/s | x raw | WAL pages per append |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine, rows in results.items():
        raw = rows["raw"]
        for name, r in rows.items():
            pages = f"{r['wal_pages']:.1f}" if "wal_pages" in r else "-"
            lines.append(
                f"| {engine} | {name} | {r['w1_p50_us']:,.0f} | "
                f"x{r['w1_p50_us'] / raw['w1_p50_us']:.2f} | {r['w2_msg_s']:,.0f} | "
                f"x{raw['w2_msg_s'] / r['w2_msg_s']:.2f} | {pages} |"
            )
    lines += [
        "",
        "`tk-sql` is the cost of the database work threadkeep's append does (seq, the "
        "message, its change-log rows, the search index, log numbering) with no Python "
        "around it; `threadkeep` minus `tk-sql` is the library's own overhead.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.floor", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=300, help="single appends per round")
    ap.add_argument("--batches", type=int, default=10, help="batches of 100 per round")
    args = ap.parse_args(argv)
    results = {
        e: measure(e, args.rounds, args.n, args.batches) for e in args.engines.split(",") if e
    }
    print(render(results, args.rounds, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Import throughput: a generated Claude-Code-style transcript of 100,000
messages (one session, one transaction), imported into SQLite and PostgreSQL.

    python -m benchmarks.importers [--messages 100000] [--engines sqlite,postgres]

The transcript is written once (user prompts, assistant replies split over
two lines like real responses, and a tool_use / tool_result pair every tenth
turn, ~400 bytes of text each). Each engine's import runs in a fresh child
process on a fresh database, so its peak RSS (``ru_maxrss``) is the import's
alone; the baseline RSS of the child before importing is reported beside it.
The figure to watch is how peak memory grows with the file: the importer
keeps a small index per record, never the transcript.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PG_URL = os.environ.get("THREADKEEP_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEXT = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit; sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure "
    "dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. "
    "Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia."
)


def generate(path: Path, n: int) -> int:
    """Write a linear transcript of ``n`` message records; returns its size."""
    session = str(uuid.uuid4())
    parent: str | None = None
    base = {
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/bench/proj",
        "sessionId": session,
        "version": "2.0.76",
        "gitBranch": "main",
    }
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            uid = f"{session[:8]}-{i:08d}"
            ts = f"2025-06-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000Z"
            rec: dict[str, object] = {**base, "parentUuid": parent, "uuid": uid, "timestamp": ts}
            turn = i % 4
            if turn == 0:
                rec.update(type="user", message={"role": "user", "content": f"{i}: {TEXT}"})
            elif turn in (1, 2):
                content: list[dict[str, object]] = [{"type": "text", "text": TEXT}]
                if turn == 2 and i % 40 == 2:
                    content = [
                        {
                            "type": "tool_use",
                            "id": f"toolu_{i}",
                            "name": "Bash",
                            "input": {"command": "pytest -q"},
                        }
                    ]
                rec.update(
                    type="assistant",
                    requestId=f"req_{i // 4}",
                    message={
                        "model": "claude-sonnet-4-5",
                        "id": f"msg_{i // 4}",
                        "type": "message",
                        "role": "assistant",
                        "content": content,
                        "stop_reason": None,
                        "usage": {"input_tokens": 100, "output_tokens": 50},
                    },
                )
            else:
                if (i - 1) % 40 == 2:
                    content = [
                        {
                            "type": "tool_result",
                            "tool_use_id": f"toolu_{i - 1}",
                            "content": "2 passed",
                        }
                    ]
                    rec.update(
                        type="user",
                        message={"role": "user", "content": content},
                        toolUseResult={"stdout": "2 passed", "stderr": ""},
                    )
                else:
                    rec.update(type="user", message={"role": "user", "content": f"ok {i}"})
            f.write(json.dumps(rec) + "\n")
            parent = uid
    return path.stat().st_size


def child(url: str, path: Path) -> dict[str, object]:
    from threadkeep import Actor, Threadkeep
    from threadkeep.importers import FORMATS, run_import

    with Threadkeep.open(url) as tk:
        me = Actor(tk.create_user("bench").value.id)
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        report = run_import(
            tk,
            me,
            FORMATS["claude-code"].read(path, me.user_id),
            format="claude-code",
            path=str(path),
        )
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        created = report.totals("created")
        assert not report.failed, report.failed
        return {
            "messages": created.messages,
            "tool_events": created.tool_events,
            "seconds": round(elapsed, 2),
            "messages_per_second": round(created.messages / elapsed),
            "baseline_rss_mb": round(base_rss / 1024, 1),
            "peak_rss_mb": round(peak / 1024, 1),
        }


def _pg_database() -> str | None:
    try:
        import psycopg
        import sqlalchemy as sa

        name = f"tk_bench_import_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    except Exception as exc:
        print(f"PostgreSQL not reachable at {PG_URL} ({exc}); skipping it", file=sys.stderr)
        return None


def _drop(url: str) -> None:
    import psycopg
    import sqlalchemy as sa

    name = sa.make_url(url).database
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "transcript.jsonl"
        size = generate(src, args.messages)
        print(f"transcript: {args.messages} records, {size / 1e6:.1f} MB")
        for engine in args.engines.split(","):
            url = f"sqlite:///{Path(tmp) / 'bench.db'}" if engine == "sqlite" else _pg_database()
            if url is None:
                continue
            try:
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.importers", "--child", url, str(src)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                print(f"{engine}: {out.stdout.strip()}")
            finally:
                if engine != "sqlite":
                    _drop(url)


if __name__ == "__main__":
    main()

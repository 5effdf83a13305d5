"""One command: threadkeep beside every peer, plus threadkeep-only workloads.

    python -m benchmarks                 # full run (~6-10 min), writes benchmarks/RESULTS.md
    python -m benchmarks --scale 0.05    # smoke test (~1 min), RESULTS.md in the run dir
    python -m benchmarks --adapters threadkeep-sqlite,raw-sqlite-wal-full --workloads W1,W5
    python -m benchmarks --report benchmarks/results/run-...   # re-render RESULTS.md only

Steps:

1. The peers' virtualenv (``$PEERS_VENV``, default /tmp/peers-venv): created
   with the peers' ``setup_venv.sh`` if absent; threadkeep is installed into it
   (``pip install -e <repo>``) if it does not import from this checkout.
2. ``python -m peersbench run`` in that venv, with threadkeep's two adapters
   added through ``PEERS_EXTRA_ADAPTERS``: all adapters in ONE run, so that
   every ratio is taken within one run. Results go to benchmarks/results/
   (gitignored), never into the read-only peers folder.
3. ``benchmarks.extra`` in the same venv: threadkeep-only workloads (100k
   sessions, keyset depth, fork and last-50 of a 10k-message session), on
   SQLite and, when reachable, PostgreSQL.
4. ``benchmarks.http`` (in this venv): requests/s and p50/p99 of append and
   last-50 through ``threadkeep serve`` (SQLite, PostgreSQL) beside FastAPI +
   the best peer, each server its own process on loopback (``--no-http`` skips it).
5. ``benchmarks/RESULTS.md`` from the run's JSON (benchmarks/report.py).

If PostgreSQL is not reachable, only the SQLite adapters and workloads run,
and RESULTS.md says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared"))
PEERS = os.path.join(SHARED, "bench", "peers")
VENV = os.environ.get("PEERS_VENV", "/tmp/peers-venv")
PY = os.path.join(VENV, "bin", "python")
RESULTS = os.path.join(REPO, "benchmarks", "results")
OURS = {
    "threadkeep-sqlite": "benchmarks.peers_adapter:ThreadkeepSqlite",
    "threadkeep-pg": "benchmarks.peers_adapter:ThreadkeepPg",
}
PG_NAME = re.compile(r"pg|psycopg|postgres")


def log(msg: str) -> None:
    print(f"[benchmarks] {msg}", file=sys.stderr, flush=True)


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PEERS_EXTRA_ADAPTERS"] = ",".join(f"{k}={v}" for k, v in OURS.items())
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO, PEERS, os.environ.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PEERS_PG_HOST", "127.0.0.1")
    env.setdefault("PEERS_PG_PORT", "5432")
    env.setdefault("PEERS_PG_USER", "postgres")
    env["PEERS_VENV"] = VENV
    return env


def ensure_venv() -> None:
    if not os.path.exists(PY):
        log(f"no venv at {VENV}: creating it with {PEERS}/setup_venv.sh")
        subprocess.run(
            ["bash", os.path.join(PEERS, "setup_venv.sh")],
            check=True,
            env={**os.environ, "PEERS_VENV": VENV},
        )
    probe = "import os, threadkeep; print(os.path.realpath(os.path.dirname(threadkeep.__file__)))"
    # run from / without our PYTHONPATH: only an installed threadkeep counts
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([PY, "-c", probe], capture_output=True, text=True, cwd="/", env=env)
    want = os.path.realpath(os.path.join(REPO, "src", "threadkeep"))
    if p.returncode == 0 and p.stdout.strip() == want:
        return
    log(f"installing threadkeep from {REPO} into {VENV} (pip install -e)")
    subprocess.run([PY, "-m", "pip", "install", "-q", "-e", REPO], check=True)


def pg_reachable(env: dict[str, str]) -> tuple[bool, str]:
    code = (
        "import os, sys, psycopg\n"
        "try:\n"
        "    c = psycopg.connect(host=os.environ['PEERS_PG_HOST'],"
        " port=os.environ['PEERS_PG_PORT'], user=os.environ['PEERS_PG_USER'],"
        " dbname='postgres', connect_timeout=3)\n"
        "except Exception as e:\n"
        "    print(' '.join(str(e).split())[:300]); sys.exit(1)\n"
        "print(c.execute('SHOW server_version').fetchone()[0]); c.close()\n"
    )
    try:
        p = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env, timeout=30)
    except subprocess.TimeoutExpired:
        return False, "connection attempt timed out"
    msg = p.stdout.strip() or p.stderr.strip()[-300:] or "unknown error"
    return p.returncode == 0, msg


def adapter_backends(env: dict[str, str]) -> dict[str, str]:
    """name -> backend for every registered adapter (imports each one)."""
    code = (
        "import json\n"
        "from peersbench.adapters import REGISTRY, load_adapter\n"
        "out = {}\n"
        "for n in REGISTRY:\n"
        "    try:\n"
        "        out[n] = load_adapter(n).backend\n"
        "    except Exception:\n"
        "        out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env, cwd=PEERS)
    known: dict[str, str] = {}
    if p.returncode == 0:
        known = json.loads(p.stdout.strip().splitlines()[-1])
    else:
        q = subprocess.run(
            [PY, "-m", "peersbench", "list"], capture_output=True, text=True, env=env, cwd=PEERS
        )
        known = dict.fromkeys(q.stdout.split())
    return {n: b or ("postgres" if PG_NAME.search(n) else "sqlite") for n, b in known.items()}


def run_order(env: dict[str, str]) -> list[str]:
    """Every registered adapter (the peers' and ours), raw baselines first, then
    threadkeep, then the peers: peersbench runs them one after another, so on a
    shared VM whose load drifts, the ratios that matter most (threadkeep vs the
    raw floor) are then taken minutes apart, not a quarter of an hour."""
    p = subprocess.run(
        [PY, "-m", "peersbench", "list"], capture_output=True, text=True, env=env, cwd=PEERS
    )
    names = p.stdout.split() if p.returncode == 0 else []
    if not names:
        return []  # let peersbench pick its default: all adapters

    def rank(n: str) -> int:
        return 0 if n.startswith("raw-") else 1 if n in OURS else 2

    return sorted(names, key=rank)  # stable: registry order within each group


def machine() -> dict[str, object]:
    info: dict[str, object] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["ram_gib"] = round(kb / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def run_dirs() -> set[str]:
    if not os.path.isdir(RESULTS):
        return set()
    return {d for d in os.listdir(RESULTS) if d.startswith("run-")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="peersbench --scale (and extras)")
    ap.add_argument("--adapters", default="", help="peersbench --adapters (default: all + ours)")
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5", help="peersbench --workloads")
    ap.add_argument("--timeout", type=int, default=420, help="per adapter, seconds")
    ap.add_argument("--no-extra", action="store_true", help="skip the threadkeep-only workloads")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP benchmark")
    ap.add_argument(
        "--no-features",
        action="store_true",
        help="skip the feature benchmarks (sync, import, search), appended to RESULTS.md",
    )
    ap.add_argument("--out", default=None, help="RESULTS.md path (default: see below)")
    ap.add_argument(
        "--report", metavar="RUN_DIR", help="only re-render RESULTS.md from an existing run"
    )
    args = ap.parse_args(argv)

    from benchmarks.http import HTTP_JSON
    from benchmarks.report import render

    if args.report:
        rdir = os.path.abspath(args.report)
        out = args.out or os.path.join(rdir, "RESULTS.md")
        with open(out, "w") as f:
            f.write(render(rdir))
        log(f"wrote {out}")
        return 0

    t0 = time.perf_counter()
    ensure_venv()
    env = bench_env()
    pg_ok, pg_info = pg_reachable(env)
    if pg_ok:
        log(f"PostgreSQL {pg_info} at {env['PEERS_PG_HOST']}:{env['PEERS_PG_PORT']}")
    else:
        log(f"PostgreSQL NOT reachable ({pg_info}): SQLite only")

    names: list[str] = [n for n in args.adapters.split(",") if n]
    if not names:
        names = run_order(env)
    if not pg_ok:
        backends = adapter_backends(env)
        pool = names or list(backends)
        names = [n for n in pool if backends.get(n, "sqlite") != "postgres"]
        skipped = [n for n in pool if n not in names]
        log(f"skipping PostgreSQL adapters: {', '.join(skipped)}")

    os.makedirs(RESULTS, exist_ok=True)
    before = run_dirs()
    cmd = [PY, "-m", "peersbench", "run", "--results", RESULTS, "--scale", str(args.scale)]
    cmd += ["--workloads", args.workloads, "--timeout", str(args.timeout)]
    if names:
        cmd += ["--adapters", ",".join(names)]
    log("running: " + " ".join(cmd))
    with open(os.path.join(RESULTS, "last-peersbench-stdout.md"), "w") as out_f:
        p = subprocess.run(cmd, env=env, cwd=REPO, stdout=out_f)
    new = sorted(run_dirs() - before)
    if not new:
        log(f"peersbench wrote no run directory (exit {p.returncode})")
        return 1
    rdir = os.path.join(RESULTS, new[-1])
    meta = {
        "machine": machine(),
        "pg_reachable": pg_ok,
        "pg_info": pg_info,
        "pg_addr": f"{env['PEERS_PG_HOST']}:{env['PEERS_PG_PORT']} as {env['PEERS_PG_USER']}",
        "peersbench_exit": p.returncode,
        "command": " ".join(
            ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "peersbench_command": cmd,
        "peers_dir": PEERS,
        "venv": VENV,
    }

    if not args.no_extra:
        engines = "sqlite,postgres" if pg_ok else "sqlite"
        xcmd = [PY, "-m", "benchmarks.extra", "--out", os.path.join(rdir, "threadkeep-extra.json")]
        xcmd += ["--scale", str(args.scale), "--engines", engines]
        log("running: " + " ".join(xcmd))
        try:
            x = subprocess.run(xcmd, env=env, cwd=REPO, timeout=1800)
            meta["extra_exit"] = x.returncode
        except subprocess.TimeoutExpired:
            meta["extra_exit"] = "timeout (1800 s)"
    if not args.no_http:
        # The load generator runs in this (the project's) venv; the peer's
        # FastAPI app in the peers' venv. Shorter cells for a smoke run.
        hcmd = [sys.executable, "-m", "benchmarks.http", "--no-results-md"]
        hcmd += ["--out-json", os.path.join(rdir, HTTP_JSON)]
        hcmd += ["--duration", str(max(0.3, 2.0 * min(args.scale, 1.0)))]
        if not pg_ok:
            hcmd.append("--no-pg")
        log("running: " + " ".join(hcmd))
        try:
            h = subprocess.run(hcmd, env=env, cwd=REPO, timeout=900, stdout=subprocess.DEVNULL)
            meta["http_exit"] = h.returncode
        except subprocess.TimeoutExpired:
            meta["http_exit"] = "timeout (900 s)"
    features: list[str] = []
    if not args.no_features:
        features = run_features(rdir, env, pg_ok)
    meta["total_s"] = time.perf_counter() - t0
    try:
        meta["loadavg_after"] = os.getloadavg()
    except OSError:
        pass
    with open(os.path.join(rdir, "threadkeep-meta.json"), "w") as f:
        json.dump(meta, f, indent=1)

    md = render(rdir)
    with open(os.path.join(rdir, "RESULTS.md"), "w") as f:
        f.write(md)
        for section in features:
            f.write("\n" + section)
    full = args.scale == 1.0 and not args.adapters and args.workloads == "W1,W2,W3,W4,W5"
    out = args.out or (os.path.join(REPO, "benchmarks", "RESULTS.md") if full else None)
    if out:
        shutil.copyfile(os.path.join(rdir, "RESULTS.md"), out)
    log(f"run dir {rdir}; RESULTS.md -> {out or os.path.join(rdir, 'RESULTS.md')}")
    log(f"total {meta['total_s']:.0f} s")
    return 0


# The benchmarks of later issues: each prints its own Markdown section (sync)
# or a few lines of figures (import), appended to RESULTS.md. ``readers``
# drives the peers' adapters too, so it runs in the peers' virtualenv.
FEATURES = (
    ("floor", ["-m", "benchmarks.floor"], True),
    ("readers", ["-m", "benchmarks.readers"], True),
    ("sync", ["-m", "benchmarks.sync"], True),
    ("import", ["-m", "benchmarks.importers"], False),
    ("search", ["-m", "benchmarks.search"], False),
)
IN_PEERS_VENV = {"readers"}


def run_features(rdir: str, env: dict[str, str], pg_ok: bool) -> list[str]:
    sections = []
    for name, args, markdown in FEATURES:
        if not os.path.exists(os.path.join(REPO, "benchmarks", args[-1].split(".")[-1] + ".py")):
            continue
        cmd = [PY if name in IN_PEERS_VENV else sys.executable, *args]
        if not pg_ok:
            cmd += ["--engines", "sqlite"]
        log("running: " + " ".join(cmd))
        try:
            got = subprocess.run(
                cmd, env=env, cwd=REPO, timeout=3600, capture_output=True, text=True
            )
        except subprocess.TimeoutExpired:
            sections.append(f"## {name}\n\nTimed out after 3600 s.\n")
            continue
        with open(os.path.join(rdir, f"feature-{name}.txt"), "w") as f:
            f.write(got.stdout + "\n--- stderr ---\n" + got.stderr)
        if got.returncode != 0:
            sections.append(
                f"## {name}\n\nFailed (exit {got.returncode}); see feature-{name}.txt.\n"
            )
        elif markdown:
            sections.append(got.stdout)
        else:
            sections.append(f"## {name}\n\n```\n{got.stdout.strip()}\n```\n")
    return sections


if __name__ == "__main__":
    sys.exit(main())

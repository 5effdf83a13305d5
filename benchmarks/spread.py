"""The ratio bars of issue 2 over several runs: min, median, max.

On a shared 2-core machine one run's sub-millisecond cells vary by 2x from
run to run (W3 against raw went from x0.92 to x3.2 in one afternoon), so a
bar judged on one run is a coin toss. This runs the bars' workloads N times
(``python -m benchmarks`` with only the adapters and workloads they need), or
reads run directories already made, and judges each bar on the median of its
per-run ratios::

    python -m benchmarks.spread --runs 3          # ~30 s a run; prints Markdown
    python -m benchmarks.spread RUN_DIR RUN_DIR   # judge existing runs
    python -m benchmarks.spread --runs 3 --out benchmarks/SPREAD.md

Each ratio is taken within one run, threadkeep against the raw baseline of
the same engine, as in RESULTS.md. W2 (against the best peer) is not here:
it needs every peer, and its gap is not within the noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from benchmarks.__main__ import RESULTS, run_dirs
from benchmarks.report import DASH, FLOOR, TK, X, _get, _load

# (label, workload, key, "lat" | "tput", engine, limit): latency bars hold
# when threadkeep / raw <= limit, throughput bars when threadkeep / raw >= limit.
BARS = [
    ("W1 single append p50", "W1", "append_p50_us", "lat", "sqlite", 1.5),
    ("W1 single append p50", "W1", "append_p50_us", "lat", "postgres", 1.5),
    ("W3 last-50 of 10k p50", "W3", "load_last_p50_ms", "lat", "sqlite", 2.0),
    ("W3 last-50 of 10k p50", "W3", "load_last_p50_ms", "lat", "postgres", 2.0),
    ("W5 8 writers msg/s", "W5", "msgs_per_s", "tput", "sqlite", 3.0),
    ("W5 8 writers msg/s", "W5", "msgs_per_s", "tput", "postgres", 1.0),
]
ADAPTERS = ",".join([*TK.values(), *FLOOR.values()])
WORKLOADS = "W1,W3,W5"


@dataclass(frozen=True)
class Spread:
    label: str
    engine: str
    bar: str
    ratios: list[float]
    passed: bool | None  # None: no run measured it

    def row(self) -> str:
        if not self.ratios:
            none = f"| {DASH} " * 3
            return f"| {self.label}, {self.engine} | {self.bar} {none}| no figures |"
        lo, mid, hi = min(self.ratios), statistics.median(self.ratios), max(self.ratios)
        each = ", ".join(f"{X}{r:.2f}" for r in self.ratios)
        status = "**PASS**" if self.passed else "**FAIL**"
        return (
            f"| {self.label}, {self.engine} | {self.bar} | {X}{lo:.2f} | {X}{mid:.2f} "
            f"| {X}{hi:.2f} | {status} ({each}) |"
        )


def ratio(res: dict, engine: str, workload: str, key: str) -> float | None:
    """threadkeep's figure over raw's, within one run."""
    tk = _get(res, TK[engine], workload, key)
    raw = _get(res, FLOOR[engine], workload, key)
    if not tk or not raw:
        return None
    return float(tk) / float(raw)


def spreads(run_dirs: list[str]) -> list[Spread]:
    results = [_load(d)[1] for d in run_dirs]
    out = []
    for label, workload, key, kind, engine, limit in BARS:
        got = [ratio(res, engine, workload, key) for res in results]
        ratios = [r for r in got if r is not None]
        sign = "≤" if kind == "lat" else "≥"
        bar = f"{sign} {limit:g}{X} {FLOOR[engine]}"
        if not ratios:
            out.append(Spread(label, engine, bar, [], None))
            continue
        mid = statistics.median(ratios)
        passed = mid <= limit if kind == "lat" else mid >= limit
        out.append(Spread(label, engine, bar, ratios, passed))
    return out


def render(run_dirs: list[str]) -> str:
    names = ", ".join(os.path.basename(d) for d in run_dirs)
    lines = [
        f"Ratio bars over {len(run_dirs)} runs ({names}): "
        "each bar is judged on the median of its per-run ratios.",
        "",
        "| bar | target | min | median | max | status (each run) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [s.row() for s in spreads(run_dirs)]
    return "\n".join(lines) + "\n"


def _run_once() -> str:
    before = run_dirs()
    cmd = [sys.executable, "-m", "benchmarks", "--adapters", ADAPTERS, "--workloads", WORKLOADS]
    cmd += ["--no-extra", "--no-http", "--no-features"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    new = sorted(run_dirs() - before)
    if not new:
        raise SystemExit("python -m benchmarks wrote no run directory")
    return os.path.join(RESULTS, new[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="*", help="existing run directories to judge")
    ap.add_argument("--runs", type=int, default=0, help="make this many new runs first")
    ap.add_argument("--out", help="also write the table to this file (e.g. benchmarks/SPREAD.md)")
    args = ap.parse_args(argv)
    dirs = list(args.run_dirs)
    for i in range(args.runs):
        print(f"[spread] run {i + 1}/{args.runs}", file=sys.stderr)
        dirs.append(_run_once())
    if not dirs:
        ap.error("give run directories or --runs N")
    table = render(dirs)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Issue 2's ratio bars over several runs (benchmarks/spread.py)\n\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

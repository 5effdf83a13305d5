"""Render benchmarks/RESULTS.md from one run directory: peersbench's JSON
(``env.json`` + one ``<adapter>.json`` each, see peersbench/worker.py), the
threadkeep-only workloads (``threadkeep-extra.json``) and
``threadkeep-meta.json``. Pure stdlib: runs under any Python."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from benchmarks.http import HTTP_JSON, render_section

TK = {"sqlite": "threadkeep-sqlite", "postgres": "threadkeep-pg"}
FLOOR = {"sqlite": "raw-sqlite-wal-full", "postgres": "raw-psycopg"}
DASH = "\u2013"
X = "\u00d7"  # multiplication sign
ENGINE_TITLE = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

# (title, workload, key, kind): kind "lat" = lower is better, "tput" = higher is better
COLUMNS = [
    ("W1 append p50 µs", "W1", "append_p50_us", "lat"),
    ("W1 append p99 µs", "W1", "append_p99_us", "lat"),
    ("W2 msg/s (batch 100)", "W2", "msgs_per_s", "tput"),
    ("W3 last-50 ms", "W3", "load_last_p50_ms", "lat"),
    ("W3 all-10k ms", "W3", "load_all_p50_ms", "lat"),
    ("W4 list-50 ms", "W4", "list_p50_ms", "lat"),
    ("W4 load-one ms", "W4", "load_one_p50_ms", "lat"),
    ("W5 8 writers msg/s", "W5", "msgs_per_s", "tput"),
]


def _json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _load(rdir: str) -> tuple[dict, dict[str, dict], dict | None, dict]:
    env = _json(os.path.join(rdir, "env.json")) or {}
    res: dict[str, dict] = {}
    for name in env.get("adapters", []):
        d = _json(os.path.join(rdir, f"{name}.json"))
        if d is not None:
            res[name] = d
    extra = _json(os.path.join(rdir, "threadkeep-extra.json"))
    meta = _json(os.path.join(rdir, "threadkeep-meta.json")) or {}
    return env, res, extra, meta


def _get(res: dict, name: str, w: str, key: str) -> Any:
    try:
        v = res[name]["workloads"][w][key]
    except (KeyError, TypeError):
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _backend(res: dict, name: str) -> str:
    b = res.get(name, {}).get("backend")
    if b:
        return b
    return "postgres" if any(s in name for s in ("pg", "psycopg", "postgres")) else "sqlite"


def _is_peer(name: str) -> bool:
    return not name.startswith("raw-") and not name.startswith("threadkeep")


def fnum(v: Any, kind: str = "") -> str:
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    a = abs(v)
    if kind == "int" or a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fx(r: float | None) -> str:
    if r is None:
        return DASH
    return f"{X}{r:.2f}" if r < 10 else f"{X}{r:.0f}"


def _cost_ratio(v: Any, base: Any, kind: str) -> float | None:
    """How many times the baseline's cost (>1 = worse than the baseline)."""
    if not v or not base:
        return None
    return v / base if kind == "lat" else base / v


def _speedup(tk: Any, other: Any, kind: str) -> float | None:
    """How many times better threadkeep is (>1 = threadkeep ahead)."""
    if not tk or not other:
        return None
    return other / tk if kind == "lat" else tk / other


def _verified(res: dict, name: str) -> tuple[bool, list[str]]:
    bad = []
    d = res.get(name, {})
    if d.get("error"):
        bad.append(f"adapter: {d['error']}")
    for w, r in d.get("workloads", {}).items():
        if r.get("error"):
            bad.append(f"{w}: FAILED {r['error']}")
        elif r.get("verified") is False:
            detail = ""
            if w == "W4" and r.get("list_correct") is False:
                detail = " (list_recent was not the true 50 most recent)"
            if w == "W5":
                detail = (
                    f" (lost {r.get('lost_acked')}, reordered sessions "
                    f"{r.get('reordered_sessions')}, errors {r.get('errors')}: "
                    f"{r.get('error_samples')})"
                )
            bad.append(f"{w}: verification FAILED{detail}")
    return not bad, bad


def _settings(res: dict, name: str) -> dict:
    for w in ("W1", "W5", "W2", "W3", "W4"):
        s = _get(res, name, w, "settings")
        if isinstance(s, dict) and "error" not in s:
            return s
    return {}


_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _short_settings(s: dict) -> str:
    if "journal_mode" in s:
        sync = next((v for k, v in s.items() if k.startswith("synchronous")), "?")
        sync = _SYNC_NAMES.get(sync, sync) if isinstance(sync, int) else sync
        return f"journal={s.get('journal_mode')}, synchronous={sync}"
    if "synchronous_commit" in s:
        out = f"synchronous_commit={s.get('synchronous_commit')}"
        return out + (f", fsync={s['fsync']}" if s.get("fsync") else "")
    return DASH


class Target:
    def __init__(self, label: str, bar: str, value: str, ok: bool | None, note: str = ""):
        self.label, self.bar, self.value, self.ok, self.note = label, bar, value, ok, note

    def row(self) -> str:
        status = {True: "**PASS**", False: "**FAIL**", None: "n/a"}[self.ok]
        return f"| {self.label} | {self.bar} | {self.value} | {status} | {self.note} |"


def _targets(res: dict, extra: dict | None, engines: list[str], scale: float) -> list[Target]:
    out: list[Target] = []
    unverified = {e: not _verified(res, TK[e])[0] for e in engines if TK[e] in res}

    def wl_ok(name: str, w: str) -> bool:
        r = res.get(name, {}).get("workloads", {}).get(w, {})
        return not r.get("error") and r.get("verified") is not False

    def check(label, bar, engine, w, key, kind, base_name, limit, cmp_note=""):
        tk = TK[engine]
        v = _get(res, tk, w, key)
        b = _get(res, base_name, w, key)
        if engine not in engines:
            out.append(Target(label, bar, DASH, None, "PostgreSQL not reachable"))
            return
        if v is None or b is None:
            miss = tk if v is None else base_name
            out.append(Target(label, bar, DASH, None, f"no figure from {miss}"))
            return
        r = v / b
        ok = r <= limit if kind == "lat" else r >= limit
        note = cmp_note
        if not wl_ok(tk, w):
            ok, note = False, f"{w} not verified for {tk}. " + note
        unit = "µs" if key.endswith("_us") else ("ms" if key.endswith("_ms") else "msg/s")
        value = f"{fnum(v)} vs {fnum(b)} {unit} = {X}{r:.2f}"
        out.append(Target(label, bar, value, ok, note))

    # W1 SQLite: <= 1.5x raw WAL+FULL and ahead of every SQLite peer
    check(
        "W1 single append, SQLite",
        "p50 ≤ 1.5x raw-sqlite-wal-full",
        "sqlite",
        "W1",
        "append_p50_us",
        "lat",
        FLOOR["sqlite"],
        1.5,
    )
    if "sqlite" in engines:
        tkv = _get(res, TK["sqlite"], "W1", "append_p50_us")
        peers = {
            n: _get(res, n, "W1", "append_p50_us")
            for n in res
            if _is_peer(n) and _backend(res, n) == "sqlite"
        }
        have = {n: v for n, v in peers.items() if v is not None}
        if tkv is None or not have:
            out.append(Target("W1 single append, SQLite", "ahead of every SQLite peer", DASH, None))
        else:
            best = min(have, key=lambda n: have[n])
            ok = all(tkv < v for v in have.values()) and wl_ok(TK["sqlite"], "W1")
            missing = sorted(set(peers) - set(have))
            note = f"compared with {', '.join(sorted(have))}"
            if missing:
                note += f"; no W1 figure from {', '.join(missing)}"
            out.append(
                Target(
                    "W1 single append, SQLite",
                    "p50 ahead of every SQLite peer",
                    f"{fnum(tkv)} µs vs best peer {best} {fnum(have[best])} µs",
                    ok,
                    note,
                )
            )
    check(
        "W1 single append, PostgreSQL",
        "p50 ≤ 1.5x raw-psycopg",
        "postgres",
        "W1",
        "append_p50_us",
        "lat",
        FLOOR["postgres"],
        1.5,
    )
    check(
        "W5 8 writers, SQLite",
        "msg/s ≥ 3x raw-sqlite-wal-full",
        "sqlite",
        "W5",
        "msgs_per_s",
        "tput",
        FLOOR["sqlite"],
        3.0,
    )
    check(
        "W5 8 writers, PostgreSQL",
        "msg/s ≥ 1x raw-psycopg",
        "postgres",
        "W5",
        "msgs_per_s",
        "tput",
        FLOOR["postgres"],
        1.0,
    )
    for e in ("sqlite", "postgres"):
        label = f"W2 batch-100, {ENGINE_TITLE[e]}"
        bar = f"msg/s ≥ best {ENGINE_TITLE[e]} peer"
        if e not in engines:
            out.append(Target(label, bar, DASH, None, "PostgreSQL not reachable"))
            continue
        tkv = _get(res, TK[e], "W2", "msgs_per_s")
        have = {
            n: _get(res, n, "W2", "msgs_per_s")
            for n in res
            if _is_peer(n) and _backend(res, n) == e
        }
        have = {n: v for n, v in have.items() if v is not None}
        if tkv is None or not have:
            out.append(Target(label, bar, DASH, None, "no figures"))
            continue
        best = max(have, key=lambda n: have[n])
        ok = tkv >= have[best] and wl_ok(TK[e], "W2")
        out.append(
            Target(
                label,
                bar,
                f"{fnum(tkv)} vs {best} {fnum(have[best])} msg/s = {X}{tkv / have[best]:.2f}",
                ok,
                "raw baselines are not peers; see the main table for them",
            )
        )
    for e in ("sqlite", "postgres"):
        check(
            f"W3 last-50 of 10k, {ENGINE_TITLE[e]}",
            f"p50 ≤ 2{X} {FLOOR[e]}",
            e,
            "W3",
            "load_last_p50_ms",
            "lat",
            FLOOR[e],
            2.0,
        )
    small = f" (scale {scale}: not the target size)" if scale != 1.0 else ""
    for e in ("sqlite", "postgres"):
        for label, bar, sect, key, limit in (
            ("W4 list-50 of 100k sessions", "p50 ≤ 1 ms", "list", "list_p50_ms", 1.0),
            ("fork of a 10k-message session", "p50 ≤ 5 ms", "fork", "fork_p50_ms", 5.0),
        ):
            lab = f"{label}, {ENGINE_TITLE[e]}"
            er = (extra or {}).get("engines", {}).get(e)
            if e not in engines:
                out.append(Target(lab, bar, DASH, None, "PostgreSQL not reachable"))
                continue
            if not er or er.get("error") or sect not in er:
                why = (er or {}).get("error") or "extra workloads not run"
                out.append(Target(lab, bar, DASH, False if er else None, why))
                continue
            v = er[sect][key]
            ok = v <= limit and er[sect].get("verified", True)
            note = "" if er[sect].get("verified", True) else "NOT verified. "
            out.append(Target(lab, bar, f"{v:.3f} ms", ok, note + small.strip()))
    for e in engines:
        if TK[e] in res:
            out.append(
                Target(
                    f"every workload verified, {TK[e]}",
                    "read back: nothing lost, reordered or duplicated",
                    "yes" if not unverified[e] else "no",
                    not unverified[e],
                    "" if not unverified[e] else "see Failures below",
                )
            )
    return out


def render(rdir: str) -> str:
    env, res, extra, meta = _load(rdir)
    scale = env.get("scale", 1.0)
    pg_ok = meta.get("pg_reachable", env.get("postgres") is not None)
    engines = ["sqlite", "postgres"] if pg_ok else ["sqlite"]
    mach = meta.get("machine", {})
    fs = env.get("fsync_probe", {})
    pgs = env.get("postgres_settings", {})
    L: list[str] = []
    add = L.append

    add("# threadkeep vs. the peers and the physical limit\n")
    add(
        f"Run `{env.get('run_id')}`, {env.get('started', '?')} to {env.get('finished', '?')} "
        f"(peersbench {env.get('total_s', 0):.0f} s, everything {meta.get('total_s', 0):.0f} s), "
        f"scale {scale}. Produced by `{meta.get('command', 'python -m benchmarks')}` "
        "(benchmarks/__main__.py); raw JSON in "
        f"`benchmarks/results/{os.path.basename(rdir)}/`.\n"
    )
    add(
        f"**Machine:** {mach.get('cpu_model', '?')}, {mach.get('cpus', env.get('cpus'))} CPUs, "
        f"{mach.get('ram_gib', '?')} GiB RAM, {mach.get('platform', env.get('platform'))}; "
        f"Python {env.get('python')}, SQLite {env.get('sqlite')}, "
        f"PostgreSQL {env.get('postgres') or 'not reachable'}. A shared, noisy VM: compare "
        "ratios taken within this run, not absolute figures across runs.\n"
    )
    la0, la1 = env.get("loadavg_before"), meta.get("loadavg_after")
    ncpu = mach.get("cpus", env.get("cpus")) or 1
    if max([*(la0 or [0])[:1], *(la1 or [0])[:1]]) > ncpu:
        add(
            "> **Warning: the machine was busy.** The 1-minute load average exceeded the "
            f"CPU count ({ncpu}) during this run, so other processes competed with the "
            "benchmark. Adapters measured while the load was high (see the run order and "
            "times under Notes) are penalised against those measured before it rose; "
            "ratios between adapters run minutes apart are then unreliable. Re-run on a "
            "quiet machine before drawing conclusions.\n"
        )
    if la0 or la1:
        fmt = lambda la: " / ".join(f"{x:.1f}" for x in la) if la else "?"  # noqa: E731
        add(
            f"**Load average** (1/5/15 min) at the start: {fmt(la0)}; at the end: {fmt(la1)} "
            f"(on {mach.get('cpus', env.get('cpus'))} CPUs; above that, other processes "
            "competed with the benchmark for CPU).\n"
        )
    add(
        f"**fsync floor** (4 KiB write + fdatasync on the data disk): "
        f"p50 {fnum(fs.get('p50_us'))} µs, p99 {fnum(fs.get('p99_us'))} µs.\n"
    )
    if pg_ok:
        add(
            "**PostgreSQL server settings:** "
            + ", ".join(f"{k}={v}" for k, v in pgs.items())
            + f" (reached over TCP at {meta.get('pg_addr', '?')}; threadkeep forces "
            "`synchronous_commit=on` on its own connections).\n"
        )
    else:
        add(
            "**PostgreSQL was NOT reachable** "
            f"({meta.get('pg_info') or env.get('postgres_error', '?')}): only the SQLite "
            "adapters and workloads ran; every PostgreSQL target below is n/a.\n"
        )

    # --- targets ------------------------------------------------------------------
    add("## Targets\n")
    targets = _targets(res, extra, engines, scale)
    add("| target | bar | measured (threadkeep vs reference) | status | note |")
    add("|---|---|---|---|---|")
    for t in targets:
        add(t.row())
    npass = sum(t.ok is True for t in targets)
    nfail = sum(t.ok is False for t in targets)
    add(f"\n{npass} PASS, {nfail} FAIL, {len(targets) - npass - nfail} n/a.\n")

    # --- main table ---------------------------------------------------------------
    add("## Main table (medians; one run)\n")
    add(
        f"Each cell is the p50 unless marked p99. **({X}N)** is the cost relative to the "
        "durable raw baseline of the same engine (`raw-sqlite-wal-full` for SQLite, "
        "`raw-psycopg` for PostgreSQL): N times its latency, or for msg/s N times fewer "
        f"messages per second. {X}<1 = better than raw. `raw-sqlite-wal-normal` is NOT "
        "durable at commit (shown for reference).\n"
    )
    head = ["adapter", *[c[0] for c in COLUMNS], "verified", "durability settings in force"]
    add("| " + " | ".join(head) + " |")
    add("|" + "---|" * len(head))
    for e in engines:
        names = [n for n in env.get("adapters", []) if n in res and _backend(res, n) == e]
        order = [TK[e], FLOOR[e]]
        names = [n for n in order if n in names] + [n for n in names if n not in order]
        add(f"| ***{ENGINE_TITLE[e]}*** |" + " |" * (len(head) - 1))
        for n in names:
            cells = []
            for _, w, key, kind in COLUMNS:
                v = _get(res, n, w, key)
                wr = res[n].get("workloads", {}).get(w)
                if wr is not None and wr.get("error"):
                    cells.append("FAILED")
                    continue
                if v is None:
                    cells.append("n/a" if w == "W4" and wr is not None else DASH)
                    continue
                r = _cost_ratio(v, _get(res, FLOOR[e], w, key), kind)
                cells.append(fnum(v) + (f" ({fx(r)})" if r is not None and n != FLOOR[e] else ""))
            ok, _ = _verified(res, n)
            label = f"**{n}**" if n.startswith("threadkeep") else n
            row = [label, *cells, "yes" if ok else "**NO**", _short_settings(_settings(res, n))]
            add("| " + " | ".join(row) + " |")
    add("")

    # --- threadkeep vs each adapter -----------------------------------------------
    add("## threadkeep vs. every adapter of the same engine\n")
    add(
        "How many times better threadkeep is (>1 = threadkeep ahead, <1 = behind): the "
        "other's p50 / threadkeep's p50 for latencies, threadkeep's msg/s / the other's "
        "for throughput. W4 list is n/a where the peer has no listing API.\n"
    )
    cols = [c for c in COLUMNS if c[2] != "append_p99_us"]
    short = [c[0].removesuffix(" µs").removesuffix(" ms") for c in cols]
    head = ["engine", "threadkeep vs", *short]
    add("| " + " | ".join(head) + " |")
    add("|" + "---|" * len(head))
    for e in engines:
        tk = TK[e]
        if tk not in res:
            continue
        for n in env.get("adapters", []):
            if n == tk or n not in res or _backend(res, n) != e:
                continue
            cells = [
                fx(_speedup(_get(res, tk, w, key), _get(res, n, w, key), kind))
                for _, w, key, kind in cols
            ]
            add(f"| {ENGINE_TITLE[e]} | {n} | " + " | ".join(cells) + " |")
    add("")

    # --- secondary ---------------------------------------------------------------
    add("### Secondary figures for threadkeep\n")
    add(
        "| adapter | W1 first-100 p50 µs | W1 last-100 p50 µs | W1 msg/s | W1 bytes/msg on disk "
        "| W2 batch p50 ms | W4 load-one warm ms | W4 populate sessions/s | W5 append p50 µs "
        "| W5 append p99 µs | W5 errors / lost / reordered |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in engines:
        for n in (TK[e], FLOOR[e]):
            if n not in res:
                continue
            w1b = _get(res, n, "W1", "storage_bytes")
            w1n = _get(res, n, "W1", "n")
            per = (w1b / (w1n + 1)) if w1b and w1n else None
            b2 = _get(res, n, "W2", "batch_p50_us")
            integ = (
                f"{fnum(_get(res, n, 'W5', 'errors'))} / {fnum(_get(res, n, 'W5', 'lost_acked'))}"
                f" / {fnum(_get(res, n, 'W5', 'reordered_sessions'))}"
            )
            add(
                f"| {n} | {fnum(_get(res, n, 'W1', 'first_100_p50_us'))} "
                f"| {fnum(_get(res, n, 'W1', 'last_100_p50_us'))} "
                f"| {fnum(_get(res, n, 'W1', 'msgs_per_s'))} | {fnum(per, 'int')} "
                f"| {fnum(b2 / 1000 if b2 else None)} "
                f"| {fnum(_get(res, n, 'W4', 'load_one_warm_p50_ms'))} "
                f"| {fnum(_get(res, n, 'W4', 'populate_sessions_per_s'))} "
                f"| {fnum(_get(res, n, 'W5', 'append_p50_us'))} "
                f"| {fnum(_get(res, n, 'W5', 'append_p99_us'))} | {integ} |"
            )
    add("")

    # --- extra workloads ------------------------------------------------------------
    add("## threadkeep-only workloads (benchmarks/extra.py)\n")
    if not extra:
        add("Not run (`--no-extra`, or it failed before writing its JSON).\n")
    else:
        sz = extra.get("sizes", {})
        add(
            f"{sz.get('SESSIONS', '?'):,} sessions of one user, pages of {sz.get('PAGE')}; "
            f"a session of {sz.get('FORK_MSGS', '?'):,} messages; p50 (p99) over "
            f"{sz.get('LIST_RUNS')} runs ({sz.get('FORK_RUNS')} forks at random points). "
            "Every result is checked against the truth (`verified`). How the sessions are "
            "bulk-created: see the module docstring of benchmarks/extra.py.\n"
        )
        ex = extra.get("engines", {})
        heads = [e for e in engines if e in ex]
        add("| workload | " + " | ".join(f"threadkeep {ENGINE_TITLE[e]}" for e in heads) + " |")
        add("|---|" + "---|" * len(heads))

        def xrow(label: str, fn: Any) -> None:
            cells = []
            for e in heads:
                r = ex[e]
                try:
                    cells.append(fn(r))
                except (KeyError, TypeError, ZeroDivisionError):
                    cells.append("FAILED" if r.get("error") else DASH)
            add(f"| {label} | " + " | ".join(cells) + " |")

        xrow(
            "bulk-create the sessions",
            lambda r: f"{r['create']['seconds']:.1f} s ({fnum(r['create']['sessions_per_s'])}/s)",
        )
        xrow(
            "**W4-100k: list the 50 most recent**",
            lambda r: f"**{fnum(r['list']['list_p50_ms'])} ms** ({fnum(r['list']['list_p99_ms'])})",
        )
        xrow("keyset page 1", lambda r: f"{fnum(r['list']['page1_p50_ms'])} ms")
        xrow(
            "keyset deepest page (page N)",
            lambda r: (
                f"{fnum(r['list']['deep_p50_ms'])} ms (p99 {fnum(r['list']['deep_p99_ms'])}), "
                f"page {r['list']['deep_page']:,}"
            ),
        )
        xrow("deep page / page 1", lambda r: fx(r["list"]["deep_vs_page1"]))
        xrow(
            "walk every page with next_cursor",
            lambda r: f"{r['list']['walk_all_s']:.2f} s for {r['list']['pages']:,} pages",
        )
        xrow(
            "**fork of a 10k-message session**",
            lambda r: f"**{fnum(r['fork']['fork_p50_ms'])} ms** ({fnum(r['fork']['fork_p99_ms'])})",
        )
        xrow(
            "last-50 of the 10k session",
            lambda r: f"{fnum(r['fork']['last_p50_ms'])} ms ({fnum(r['fork']['last_p99_ms'])})",
        )
        xrow(
            "last-50 of a branch forked at 5k (no own messages)",
            lambda r: f"{fnum(r['fork']['branch_last_p50_ms'])} ms",
        )
        xrow(
            "verified",
            lambda r: (
                "yes"
                if r["list"]["verified"] and r["fork"]["verified"]
                else "**NO** "
                + json.dumps({k: v for k, v in r["list"].items() if k.endswith("correct")})
                + json.dumps({k: v for k, v in r["fork"].items() if k.endswith("_ok")})
            ),
        )
        xrow("durability settings in force", lambda r: _short_settings(r["settings"]))
        add("")

    # --- settings ---------------------------------------------------------------
    add("## Durability settings each figure used\n")
    add(
        "As reported by each adapter's `describe()` after its workloads (the settings "
        "actually in force, not the requested ones):\n"
    )
    for e in engines:
        for n in env.get("adapters", []):
            if n in res and _backend(res, n) == e:
                s = _settings(res, n)
                add(f"- `{n}`: `{json.dumps(s)}`" if s else f"- `{n}`: not reported")
    if extra:
        for e, r in extra.get("engines", {}).items():
            add(f"- threadkeep extra workloads ({e}): `{json.dumps(r.get('settings', {}))}`")
    add("")

    # --- failures ---------------------------------------------------------------
    add("## Failures and oddities\n")
    any_bad = False
    for n in env.get("adapters", []):
        if n not in res:
            add(f"- **{n}**: no result file")
            any_bad = True
            continue
        ok, bad = _verified(res, n)
        for b in bad:
            who = f"**{n}** (threadkeep: a bug)" if n.startswith("threadkeep") else f"**{n}**"
            add(f"- {who}: {b}")
            any_bad = True
    if extra:
        for e, r in extra.get("engines", {}).items():
            if r.get("error"):
                add(f"- **threadkeep extra ({e})**: FAILED {r['error']}")
                any_bad = True
    if meta.get("peersbench_exit") not in (0, None):
        add(f"- peersbench exited with {meta['peersbench_exit']}")
        any_bad = True
    if meta.get("extra_exit") not in (0, None):
        add(f"- benchmarks.extra exited with {meta['extra_exit']}")
        any_bad = True
    if meta.get("http_exit") not in (0, None):
        add(f"- benchmarks.http exited with {meta['http_exit']}")
        any_bad = True
    if not any_bad:
        add("- none: every adapter ran every workload that applies to it and passed verification.")
    add("")
    add("## Notes\n")
    order = []
    for n in env.get("adapters", []):
        d = res.get(n, {})
        t0, t1 = str(d.get("started", "?"))[11:], str(d.get("finished", "?"))[11:]
        order.append(f"{n} ({t0}-{t1})")
    if extra:
        for e, r in extra.get("engines", {}).items():
            order.append(
                f"extra {e} ({str(r.get('started', '?'))[11:]}-{str(r.get('finished', '?'))[11:]})"
            )
    add(
        "- The adapters ran one after another, each in its own process, in this order "
        "(start-end): " + ", ".join(order) + ".\n"
    )
    add(
        "- threadkeep's adapters (benchmarks/peers_adapter.py) call the public library API "
        "only, through one `Threadkeep` instance shared by all threads; a session is created "
        "on its first append (`create_session(id=<harness name>)`), which is part of the "
        "first timed append of W1/W5 and of every W4 populate call. No `client_id` is sent "
        "(the peers have no idempotency key); with one, each append also looks it up.\n"
        "- Ratios are within this run. The peers' own figures and caveats are in "
        "`../shared/bench/peers/RESULTS.md`.\n"
    )
    http_json = os.path.join(rdir, HTTP_JSON)
    if os.path.exists(http_json):
        add(render_section(_json(http_json)))
    return "\n".join(L)

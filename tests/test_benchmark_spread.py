"""benchmarks/spread.py judges issue 2's ratio bars on the median of several
runs. Checked on hand-made run directories, so the verdicts are known."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import spread


def _run(tmp: Path, name: str, figures: dict[str, dict[str, dict[str, float]]]) -> str:
    d = tmp / name
    d.mkdir()
    (d / "env.json").write_text(json.dumps({"adapters": list(figures)}))
    for adapter, workloads in figures.items():
        (d / f"{adapter}.json").write_text(json.dumps({"workloads": workloads}))
    return str(d)


def _sqlite(tk_w1: float, raw_w1: float, tk_w5: float, raw_w5: float) -> dict:
    return {
        "threadkeep-sqlite": {
            "W1": {"append_p50_us": tk_w1},
            "W5": {"msgs_per_s": tk_w5},
        },
        "raw-sqlite-wal-full": {
            "W1": {"append_p50_us": raw_w1},
            "W5": {"msgs_per_s": raw_w5},
        },
    }


def test_each_bar_is_judged_on_the_median_of_its_run_ratios(tmp_path: Path) -> None:
    # W1 ratios 1.2, 3.0, 1.4 -> median 1.4 <= 1.5: PASS although one run fails.
    # W5 ratios 3.5, 2.0, 2.5 -> median 2.5 < 3: FAIL although one run passes.
    runs = [
        _run(tmp_path, "run-a", _sqlite(120, 100, 3500, 1000)),
        _run(tmp_path, "run-b", _sqlite(300, 100, 2000, 1000)),
        _run(tmp_path, "run-c", _sqlite(140, 100, 2500, 1000)),
    ]
    got = {(s.label, s.engine): s for s in spread.spreads(runs)}
    w1 = got[("W1 single append p50", "sqlite")]
    assert [round(r, 2) for r in w1.ratios] == [1.2, 3.0, 1.4]
    assert w1.passed is True
    w5 = got[("W5 8 writers msg/s", "sqlite")]
    assert [round(r, 2) for r in w5.ratios] == [3.5, 2.0, 2.5]
    assert w5.passed is False
    # No PostgreSQL figures in these runs: no verdict, and the table says so.
    pg = got[("W1 single append p50", "postgres")]
    assert pg.ratios == [] and pg.passed is None
    table = spread.render(runs)
    x = spread.X
    assert f"**PASS** ({x}1.20, {x}3.00, {x}1.40)" in table
    assert f"**FAIL** ({x}3.50, {x}2.00, {x}2.50)" in table
    assert "no figures" in table

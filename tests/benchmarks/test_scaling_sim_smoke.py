"""Smoke test of ``benchmarks/scaling_sim.py``: the quick run and a user trace report every figure.

Not a timed test and not the target check (the quick run replays one day, too short for the
forecaster to learn a profile): it checks the JSON contract the issue names and the accounting
relations that hold on any trace (the oracle is the cheapest, static peak never falls short).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scaling_sim.py"
POLICIES = ("static", "hpa", "predictive", "hybrid", "oracle")
FIGURES = ("replica_minutes", "cost_ratio", "short_pct", "unserved_pct", "scale_events")


def _run(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(report: dict, traces: tuple[str, ...], delays: tuple[str, ...]) -> None:
    assert report["default_policy"] == "predictive"
    assert tuple(report["traces"]) == traces
    for trace in traces:
        assert tuple(report["traces"][trace]) == delays
        for row in report["traces"][trace].values():
            for pol in POLICIES:
                for key in FIGURES:
                    v = row[pol][key]
                    assert isinstance(v, int | float) and math.isfinite(v), (trace, pol, key, v)
            assert row["oracle"]["cost_ratio"] == 1.0 and row["oracle"]["short_pct"] == 0.0
            assert row["static"]["short_pct"] == 0.0
            for pol in ("static", "hpa", "predictive", "hybrid"):
                assert row[pol]["replica_minutes"] >= row["oracle"]["replica_minutes"] or row[pol]["short_pct"] > 0


def test_quick_run_reports_every_figure() -> None:
    report = _run("--quick")
    _check(report, ("nasa-jul", "nasa-aug", "worldcup98", "azure-vm-2019"), ("60", "120", "180"))


def test_user_trace_is_replayed_under_its_file_stem(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    minutes = np.arange(2 * 1440)
    rate = rng.poisson(50 + 30 * np.sin(2 * np.pi * minutes / 1440))
    f = tmp_path / "shop_api.csv"
    f.write_text("ts,hits\n" + "".join(f"{1_700_000_040 + 60 * m},{r}\n" for m, r in zip(minutes, rate, strict=True)))
    report = _run("--trace", str(f), "--time-col", "ts", "--value-col", "hits", "--delay", "120")
    _check(report, ("shop_api",), ("120",))

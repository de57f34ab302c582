"""Smoke test of ``benchmarks/alerts_bench.py``: the quick run completes and reports every figure.

Not a timed test: it checks that the script runs end to end (tmp lake, rules, ticks, reference
sample) and that its JSON line carries the figures, with the engine agreeing with the reference
on every sampled rule and no rule falling back to it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "alerts_bench.py"
KEYS = ("rules", "series", "tick_s", "rules_per_s", "peak_rss_mb", "cold_tick_s", "sql_queries", "fallbacks")


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert key in figures, key
        assert isinstance(figures[key], int | float) and math.isfinite(figures[key]), (key, figures[key])
    assert figures["rules"] == 300 and figures["series"] == 300
    assert figures["tick_s"] > 0 and math.isclose(figures["rules_per_s"], 300 / figures["tick_s"], rel_tol=1e-2)
    assert figures["peak_rss_mb"] > 0
    assert figures["fallbacks"] == 0
    assert figures["shapes"] >= 5 and figures["sql_queries"] >= figures["shapes"]
    assert figures["agreement_sample"] > 0 and figures["agreement"] == figures["agreement_sample"]
    assert figures["rules_with_results"] > 0
    assert list(tmp_path.iterdir()) == [], "the temporary lake is removed"


def test_promtool_option_reports_the_oracles_agreement(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--dir", str(tmp_path), "--promtool-cases", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["promtool_cases"] == 3 and figures["promtool_agreement"] == 3

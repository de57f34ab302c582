"""Smoke test of ``benchmarks/report_bench.py``: the quick run renders the performance report on a
1-day demo lake and reports every figure (not a timed test: the figures are for BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_figure() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report_bench.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    (rep,) = r["reports"]
    assert rep["report"] == "performance_report" and rep["images"] >= 1 and rep["html_kb"] > 0
    assert 0 < r["kernel_startup_s"] < r["total_s"] and r["peak_rss_mb"] > 0 and r["samples"] == 48_960

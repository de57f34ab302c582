"""Smoke test of ``benchmarks/lake_bench.py``: the quick run completes and reports every figure.

Benchmarks are not timed tests: this checks that the script runs end to end (lake, queries,
Redis, scrape targets, collect child) and that its JSON line carries the figures, not that the
figures meet their targets.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "lake_bench.py"
KEYS = (
    "ingest_samples_per_s",
    "raw_samples_per_s",
    "ingest_ratio_vs_raw",
    "last_hour_p95_s",
    "week_rollup_p95_s",
    "top10_p95_s",
    "collect_tick_s",
    "peak_rss_mb",
)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines, "no output"
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict)
    for key in KEYS:
        value = figures.get(key)
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{key}: {value!r}"
        assert math.isfinite(value) and value > 0, f"{key}: {value!r}"
    # the lake directory (and the collect child's) is cleaned up
    assert list(tmp_path.iterdir()) == []

"""Smoke test of ``benchmarks/forecast_bench.py --quick``: it runs end to end and reports every figure.

Not a timed test (the figures' targets are the full run's business); marked slow because the quick
run still fits every model on three NAB series and 100 synthetic ones (about a minute).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "forecast_bench.py"
NAB_KEYS = (
    "xgb_median_mase_h12",
    "best_baseline",
    "best_baseline_median_mase_h12",
    "mase_ratio_vs_best",
    "xgb_median_mase_h1",
)


@pytest.mark.slow
def test_quick_run_reports_every_figure() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["retrain_100x7d_s"] > 0 and figures["retrain_peak_rss_mb"] > 0
    if figures.get("nab") == "absent":
        pytest.skip("NAB data set absent: only the synthetic part ran")
    for key in NAB_KEYS:
        assert key in figures
    assert figures["series"] == 3 and "xgboost" in figures["models"]

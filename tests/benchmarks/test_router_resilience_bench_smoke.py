"""``benchmarks/router_resilience_bench.py`` runs as a script and prints the JSON shape its
docstring promises (tiny batches: the figures themselves are in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_json_shape_from_a_tiny_run() -> None:
    script = ROOT / "benchmarks" / "router_resilience_bench.py"
    cmd = [sys.executable, str(script), "--json", "--calls", "200", "--batches", "3"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout)
    assert set(out["per_request_us"]) == {"breaker", "ejection", "retry_budget", "total"}
    for v in out["per_request_us"].values():
        assert 0 < v["p50"] <= v["p99"]
    # 4 pools × 25 targets: 7 target series each, 2 per pool, 3 router-wide
    assert out["health"]["targets"] == 100 and out["health"]["samples"] == 100 * 7 + 4 * 2 + 3
    assert out["calls"] == 200 and out["batches"] == 3


def test_bad_arguments_are_refused() -> None:
    script = ROOT / "benchmarks" / "router_resilience_bench.py"
    res = subprocess.run([sys.executable, str(script), "--calls", "0"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--calls must be 1..10000000" in res.stderr

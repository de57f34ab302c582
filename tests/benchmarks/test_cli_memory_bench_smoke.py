"""The CLI memory benchmark's --quick run: every command succeeds and every figure is printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "cli_memory_bench.py"


def test_cli_memory_bench_quick(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["samples"] == 40_000
    for key in ("import_mb", "query_json_mb", "query_csv_mb", "query_table_mb", "baseline_polars_read_csv_mb"):
        assert figures[key] > 10, key  # a real process's peak RSS, in MB
    assert not list(tmp_path.iterdir())  # the temporary lake and CSV are removed

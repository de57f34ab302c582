"""``benchmarks/report_bench.py --big``: the big lake's builder and cache (in-process, a tiny lake),
and one report rendered from it through the command line (the figures are for BENCHMARKS.md, not
asserted: this checks that the big path runs end to end and reports every figure)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest
from rich.console import Console

from tasks.lake import Lake
from tasks.lake import schema as S

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "report_bench.py"


@pytest.fixture(scope="module")
def rb() -> ModuleType:
    spec = importlib.util.spec_from_file_location("report_bench", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["report_bench"] = mod  # dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


def test_sizes_from_a_sample_count(rb: ModuleType) -> None:
    assert rb.parse_count("50M") == 50_000_000 and rb.parse_count("500k") == 500_000 and rb.parse_count("1234") == 1234
    with pytest.raises(ValueError, match="samples"):
        rb.parse_count("lots")
    big = rb.BigLakeSpec.for_samples(50_000_000)
    assert big.samples >= 50_000_000 and big.days == 30 and big.step_s == 60
    smaller = rb.BigLakeSpec(hosts=big.hosts - 1, days=big.days, step_s=big.step_s)
    assert smaller.samples < 50_000_000  # the fewest hosts that reach the count
    with pytest.raises(ValueError, match="samples"):
        rb.BigLakeSpec.for_samples(0)


def test_big_lake_is_built_once_shaped_like_the_demo_and_cached(rb: ModuleType, tmp_path: Path) -> None:
    spec = rb.BigLakeSpec(hosts=2, days=2)
    console = Console(stderr=True, quiet=True)
    root, meta = rb.big_lake(spec, tmp_path, False, console)
    end = datetime.fromisoformat(meta["end"])
    assert end.astimezone(UTC).time().isoformat() == "06:37:00"  # when the daily report runs
    lake = Lake(str(root))
    tables = lake.stats()["tables"]
    today = int((end - end.replace(hour=0, minute=0)).total_seconds() // 60)
    assert tables["samples"]["rows"] == meta["build"]["lake_samples"] == spec.series * (2 * 1440 + today)
    assert tables["samples"]["series"] == spec.series == 2 * 6 + 2 * 4 + 4 * 2 * 3
    # whole days are one (compacted) file each; today is one file from the last maintenance plus a
    # file per collector tick since
    per_day = {d: len(lake.storage.files(S.SAMPLES, d, d)) for d in lake.storage.partitions(S.SAMPLES)}
    assert sorted(per_day.values()) == [1, 1, 1 + int(rb.MAINTAIN_AGO.total_seconds() // 60)]
    for table in ("forecasts", "anomalies", "events", "rollup_1h"):
        assert tables[table]["rows"] > 0, table
    names = set(lake.catalogue().get_column("metric"))
    assert {"host_cpu_utilization_ratio", "http_request_duration_seconds_p95", "gpu_utilization_ratio"} <= names
    cpu = lake.summarize("host_cpu_utilization_ratio", end - timedelta(days=1), end, ["avg", "max"])
    assert cpu.height == 2 and (cpu.get_column("max") <= 1.0).all() and (cpu.get_column("avg") > 0).all()
    counter = lake.raw("http_requests_total", end - timedelta(hours=2), end)
    assert (
        counter.sort("series", "ts").group_by("series").agg(pl.col("value").diff().min()).get_column("value") >= 0
    ).all()
    kinds = set(lake.events(since=end - timedelta(days=2), until=end).get_column("name"))
    assert {"alert.firing", "alert.resolved", "scaling.triggered", "metrics.collected"} <= kinds
    # a second call reuses the lake; --rebuild builds it again
    again_root, again = rb.big_lake(spec, tmp_path, False, console)
    assert again_root == root and again == meta
    (root / "marker").write_text("x")
    rb.big_lake(spec, tmp_path, True, console)
    assert not (root / "marker").exists()


@pytest.mark.slow
def test_big_run_renders_and_reports_every_figure(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--samples", "100k", "--days", "1", "--report", "alert_review"]
    proc = subprocess.run(
        [*cmd, "--cache-dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    (rep,) = r["reports"]
    assert r["lake"] == "big" and r["since"] == "1d" and r["samples"] >= 100_000
    assert rep["report"] == "alert_review" and rep["images"] >= 1 and rep["html_kb"] > 0
    assert rep["seconds"] >= rep["notebook_s"] > 0 and r["kernel_startup_s"] > 0 and r["peak_rss_mb"] > 0
    assert set(r["pass"]) == {"time", "memory"} and r["build"]["anomaly_rows"] > 0

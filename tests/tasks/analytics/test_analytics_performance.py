"""tasks.analytics.performance: the performance report's numbers (latency percentiles, headroom, top
consumers, anomalies, scaling decisions) on the planted report history, checked against the raw
samples and the planted events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from report_history import NOW, window

from tasks import analytics as A
from tasks.demo import seed_demo
from tasks.lake import Lake
from tasks.lake import schema as S


def test_latency_percentiles_match_the_raw_samples(report_lake: tuple[Lake, str]) -> None:
    lake, _ = report_lake
    start, end = window()
    lat = A.latency_percentiles(lake, start, end)
    assert sorted(lat.get_column("host").to_list()) == ["web-1", "web-2", "web-3", "worker-1"]
    raw = lake.raw('http_request_duration_seconds_p95{host="web-1"}', start, end).get_column("value")
    row = lat.filter(pl.col("host") == "web-1").row(0, named=True)
    for q in (0.5, 0.95, 0.99):
        assert row[f"p{round(q * 100)}"] == pytest.approx(raw.quantile(q, "linear"), rel=1e-6)
    assert row["p50"] <= row["p95"] <= row["p99"]
    # web-1 carries the planted 8x latency spike: its p99 is the worst
    assert lat.get_column("host")[0] == "web-1"


def test_headroom_and_top_consumers(report_lake: tuple[Lake, str]) -> None:
    lake, _ = report_lake
    start, end = window()
    room = A.headroom(lake, start, end)
    cpu = room.filter(pl.col("resource") == "cpu")
    assert cpu.height == 4
    for r in cpu.iter_rows(named=True):
        assert r["headroom"] == pytest.approx(1 - r["p95"])
        assert 0 < r["avg"] <= r["p95"] <= 1
    mem = room.filter(pl.col("resource") == "memory")
    # the demo has used bytes but no total: GiB with unknown headroom, never a made-up ratio
    assert mem.height == 4 and set(mem.get_column("unit")) == {"GiB"} and mem.get_column("headroom").null_count() == 4
    assert 0 < mem.get_column("p95").max() < 16  # type: ignore[operator]
    top = A.top_consumers(lake, start, end, k=2)
    rps = top.filter(pl.col("resource") == "requests/s")
    assert rps.height == 2 and 'host="web-1"' in rps.get_column("series")[0]  # highest peak RPS host
    assert rps.get_column("avg").is_sorted(descending=True)


def test_scaling_decisions_in_order(report_lake: tuple[Lake, str]) -> None:
    lake, _ = report_lake
    sc = A.scaling_decisions(lake, *window())
    assert sc.select("target", "from", "to").rows() == [("api", 3, 5), ("api", 5, 4)]


def test_anomaly_summary_counts_the_scores_above_the_threshold(report_lake: tuple[Lake, str], tmp_path: Path) -> None:
    lake, _ = report_lake
    start, end = window()
    assert A.anomaly_summary(lake, start, end).height == 0  # the planted lake has no scores yet
    own = Lake(str(tmp_path / "lake"))
    seed_demo(own, now=NOW, days=1)
    cpu = own.series('host_cpu_utilization_ratio{host="web-2"}')
    sid, labels = cpu.get_column("series_id")[0], cpu.get_column("labels")[0]
    times = [NOW - timedelta(hours=3) + timedelta(minutes=i) for i in range(6)]
    scores = [0.1, 0.85, 0.9, 0.2, 0.99, 0.5]
    own.write_rows(
        S.ANOMALIES,
        pl.DataFrame(
            {
                "series_id": [sid] * 6,
                "metric": ["host_cpu_utilization_ratio"] * 6,
                "labels": [labels] * 6,
                "ts": times,
                "score": scores,
                "value": [0.9] * 6,
                "expected": [0.5] * 6,
                "detector": ["ewma"] * 6,
                "reason": ["high"] * 6,
            }
        ).with_columns(pl.col("ts").dt.cast_time_unit("ms")),
    )
    (row,) = A.anomaly_summary(own, start, end).rows(named=True)
    assert row["series"] == 'host_cpu_utilization_ratio{host="web-2",source="demo"}'
    assert row["anomalous_points"] == 3 and row["max_score"] == 0.99
    assert (row["first"], row["last"], row["peak"]) == (times[1], times[4], times[4])
    assert A.anomaly_summary(own, start, end, threshold=0.95).get_column("anomalous_points").to_list() == [1]
    assert A.anomaly_summary(own, start, end, selector="host_load1").height == 0


def test_an_empty_lake_has_no_latency(tmp_path: Path) -> None:
    assert A.latency_percentiles(Lake(str(tmp_path / "lake")), *window()).height == 0

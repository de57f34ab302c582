"""The demo history: shape, determinism, labelling and the planted incidents."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tasks.demo import DEMO_INCIDENTS, generate_demo_history, incident_window
from tasks.lake.schema import POLARS_TS

NOW = datetime(2025, 6, 4, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo() -> pl.DataFrame:
    return generate_demo_history(NOW)


def _window(df: pl.DataFrame, metric: str, label_sub: str, start: datetime, end: datetime) -> pl.DataFrame:
    return df.filter(
        (pl.col("metric") == metric)
        & pl.col("labels").str.contains(label_sub, literal=True)
        & (pl.col("ts") >= start)
        & (pl.col("ts") < end)
    )


def test_bulk_frame_contract(demo: pl.DataFrame) -> None:
    assert demo.schema == pl.Schema({"metric": pl.String, "labels": pl.String, "ts": POLARS_TS, "value": pl.Float64})
    assert demo["value"].is_finite().all()
    # every series is labelled as demo data
    assert demo["labels"].str.contains('"source":"demo"', literal=True).all()
    series = demo.select("metric", "labels").unique()
    assert 30 <= series.height <= 50
    # 3 days of 1-minute samples per series, ending at now floored to the step
    counts = demo.group_by("metric", "labels").len()["len"].unique().to_list()
    assert counts == [3 * 1440]
    assert demo["ts"].max() == datetime(2025, 6, 4, 12, 0, tzinfo=UTC)
    expected = {
        "host_cpu_utilization_ratio",
        "host_memory_used_bytes",
        "http_requests_total",
        "http_requests_per_second",
        "http_request_duration_seconds_p95",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "gpu_utilization_ratio",
    }
    assert expected <= set(demo["metric"].unique().to_list())


def test_deterministic_with_seed() -> None:
    a = generate_demo_history(NOW, days=1, seed=7)
    b = generate_demo_history(NOW, days=1, seed=7)
    c = generate_demo_history(NOW, days=1, seed=8)
    assert a.equals(b)
    assert not a.equals(c)


def test_fast() -> None:
    t0 = time.perf_counter()
    generate_demo_history(NOW, days=3)
    assert time.perf_counter() - t0 < 1.0


def test_ratios_in_range(demo: pl.DataFrame) -> None:
    for metric in ("host_cpu_utilization_ratio", "gpu_utilization_ratio"):
        v = demo.filter(pl.col("metric") == metric)["value"]
        assert v.min() >= 0.0 and v.max() <= 1.0


def test_daily_seasonality(demo: pl.DataFrame) -> None:
    rps = demo.filter(pl.col("metric") == "http_requests_per_second").with_columns(hour=pl.col("ts").dt.hour())
    by_hour = rps.group_by("hour").agg(pl.col("value").mean()).sort("hour")
    night = by_hour.filter(pl.col("hour").is_in([1, 2, 3]))["value"].mean()
    afternoon = by_hour.filter(pl.col("hour").is_in([13, 14, 15]))["value"].mean()
    assert afternoon > 1.8 * night


def test_weekend_is_quieter() -> None:
    # 2025-06-09 is a Monday: 7 days back covers one weekend.
    week = generate_demo_history(datetime(2025, 6, 9, 0, 0, tzinfo=UTC), days=7, step_s=300)
    rps = week.filter(pl.col("metric") == "http_requests_per_second").with_columns(
        weekend=pl.col("ts").dt.weekday() >= 6
    )
    means = dict(rps.group_by("weekend").agg(pl.col("value").mean()).iter_rows())
    assert means[True] < 0.8 * means[False]


def test_planted_incidents(demo: pl.DataFrame) -> None:
    end = demo["ts"].max()
    incidents = {i.name: i for i in DEMO_INCIDENTS}

    s, e = incident_window(incidents["cpu_saturation"], end)
    assert _window(demo, "host_cpu_utilization_ratio", '"web-2"', s, e)["value"].min() >= 0.97
    before = _window(demo, "host_cpu_utilization_ratio", '"web-2"', s - timedelta(hours=6), s)["value"]
    assert before.max() < 0.9

    s, e = incident_window(incidents["latency_spike"], end)
    during = _window(demo, "http_request_duration_seconds_p95", '"web-1"', s, e)["value"].mean()
    normal = _window(demo, "http_request_duration_seconds_p95", '"web-1"', s - timedelta(hours=3), s)
    assert during > 4 * normal["value"].mean()

    s, e = incident_window(incidents["gpu_idle"], end)
    assert _window(demo, "gpu_utilization_ratio", '"gpu":"1"', s, e)["value"].max() == 0.0
    assert _window(demo, "gpu_utilization_ratio", '"gpu":"0"', s, e)["value"].mean() > 0.7


def test_one_counter_reset(demo: pl.DataFrame) -> None:
    counters = demo.filter(pl.col("metric") == "http_requests_total").sort("labels", "ts")
    drops = counters.group_by("labels").agg((pl.col("value").diff() < 0).sum().alias("drops"))
    per_host = {row["labels"]: row["drops"] for row in drops.iter_rows(named=True)}
    assert sum(per_host.values()) == 1
    assert per_host['{"host":"web-3","source":"demo"}'] == 1
    for metric in ("redis_keyspace_hits_total", "redis_keyspace_misses_total"):
        v = demo.filter(pl.col("metric") == metric)["value"]
        assert (v.diff().drop_nulls() >= 0).all()


def test_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        generate_demo_history(datetime(2025, 1, 1), days=1)

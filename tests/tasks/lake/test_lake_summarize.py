"""Lake.summarize: several aggregations per series over a window in one statement, answered from the
coarsest rollups that cover it (raw samples at the ragged edges, after the watermark, and for
quantiles), equal to the same numbers computed from the raw samples."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.lake.lake import QueryError


def _frame(metric: str, hosts: list[str], start: datetime, minutes: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = [start + timedelta(minutes=i) for i in range(minutes)]
    return pl.DataFrame(
        {
            "metric": [metric] * (minutes * len(hosts)),
            "labels": [f'{{"host":"{h}"}}' for h in hosts for _ in ts],
            "ts": ts * len(hosts),
            "value": rng.gamma(2.0, 10.0, minutes * len(hosts)),
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ms"))


@pytest.fixture
def rolled(lake: Lake, now: datetime) -> Lake:
    """Three days of 1-minute samples of two hosts, rolled up until two hours ago; after that a
    second batch rewrites (duplicates) part of today, as an uncompacted partition looks."""
    day0 = (now - timedelta(days=3)).replace(hour=0, minute=0)
    minutes = int((now - day0).total_seconds() // 60)
    lake.write_samples(_frame("cpu", ["a", "b"], day0, minutes, 1), now=now)
    lake.build_rollups(now=now - timedelta(hours=2))
    lake.write_samples(_frame("cpu", ["a", "b"], now - timedelta(minutes=30), 30, 2), now=now)
    return lake


def _expected(lake: Lake, start: datetime, end: datetime) -> pl.DataFrame:
    raw = lake.raw("cpu", start, end)
    return (
        raw.group_by("series")
        .agg(
            pl.col("value").mean().alias("avg"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
            pl.col("value").sum().alias("sum"),
            pl.len().cast(pl.Float64).alias("count"),
            pl.col("value").quantile(0.5, "linear").alias("p50"),
            pl.col("value").quantile(0.95, "linear").alias("p95"),
            pl.col("value").quantile(0.99, "linear").alias("p99"),
        )
        .sort("series")
    )


def test_rollup_aggregations_equal_the_raw_numbers(rolled: Lake, now: datetime) -> None:
    start = now - timedelta(days=2, hours=5, minutes=17, seconds=30)  # ragged: not on a minute
    end = now - timedelta(minutes=3)
    pieces = rolled._cover(start, end)
    tables = [t for t, _, _ in pieces]
    assert "rollup_1h" in tables and tables[0] == S.SAMPLES and tables[-1] == S.SAMPLES
    assert pieces[0][1] == start and pieces[-1][2] == end
    assert all(a[2] == b[1] for a, b in itertools.pairwise(pieces))  # contiguous, no overlap
    got = rolled.summarize("cpu", start, end, ["avg", "min", "max", "sum", "count"])
    want = _expected(rolled, start, end)
    assert got.columns == ["series", "metric", "labels", "avg", "min", "max", "sum", "count"]
    assert (
        got.get_column("series").to_list() == want.get_column("series").to_list() == ['cpu{host="a"}', 'cpu{host="b"}']
    )
    for col in ("avg", "min", "max", "sum", "count"):
        assert got.get_column(col).to_list() == pytest.approx(want.get_column(col).to_list(), rel=1e-9), col


def test_quantiles_and_mixed_aggregations_in_one_raw_scan(rolled: Lake, now: datetime) -> None:
    start, end = now - timedelta(days=1, minutes=7), now
    got = rolled.summarize('cpu{host="b"}', start, end, ["p50", "avg", "p95", "quantile:0.99"])
    want = _expected(rolled, start, end).filter(pl.col("series") == 'cpu{host="b"}')
    assert got.height == 1 and got.get_column("labels")[0] == '{"host":"b"}'
    for col, ref in (("p50", "p50"), ("avg", "avg"), ("p95", "p95"), ("quantile:0.99", "p99")):
        assert got.get_column(col)[0] == pytest.approx(want.get_column(ref)[0], rel=1e-9), col


def test_summarize_with_no_match_or_bad_arguments(rolled: Lake, now: datetime) -> None:
    empty = rolled.summarize("nothing", now - timedelta(days=1), now, ["avg", "p95"])
    assert empty.height == 0 and empty.columns == ["series", "metric", "labels", "avg", "p95"]
    before = rolled.summarize("cpu", now - timedelta(days=30), now - timedelta(days=20), ["avg"])
    assert before.height == 0
    with pytest.raises(QueryError, match="agg"):
        rolled.summarize("cpu", now - timedelta(hours=1), now, ["mean"])
    with pytest.raises(QueryError, match="aggs"):
        rolled.summarize("cpu", now - timedelta(hours=1), now, ["avg", "avg"])
    with pytest.raises(QueryError, match="range"):
        rolled.summarize("cpu", now, now - timedelta(hours=1), ["avg"])

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


def _scores(lake: Lake, sid: int, labels: str, times: list[datetime], scores: list[float]) -> None:
    n = len(times)
    lake.write_rows(
        S.ANOMALIES,
        pl.DataFrame(
            {
                "series_id": [sid] * n,
                "metric": ["cpu"] * n,
                "labels": [labels] * n,
                "ts": times,
                "score": scores,
                "value": [1.0] * n,
                "expected": [1.0] * n,
                "detector": ["d"] * n,
                "reason": [""] * n,
            }
        ).with_columns(pl.col("ts").dt.cast_time_unit("ms")),
    )


def test_anomaly_counts_filter_and_count_in_sql_last_write_kept(rolled: Lake, now: datetime) -> None:
    cat = rolled.series("cpu").sort("series")
    (sa, la), (sb, lb) = cat.select("series_id", "labels").rows()
    t = [now - timedelta(hours=3) + timedelta(minutes=i) for i in range(5)]
    _scores(rolled, sa, la, t, [0.1, 0.9, 0.95, 0.2, 0.95])  # two equal worst scores: the earlier is the peak
    _scores(rolled, sb, lb, t, [0.99, 0.1, 0.1, 0.1, 0.1])
    # a later write of the same (series, ts) replaces the score: a's last 0.95 becomes 0.3, b's 0.1 becomes 0.8
    _scores(rolled, sa, la, [t[4]], [0.3])
    _scores(rolled, sb, lb, [t[2]], [0.8])
    got = rolled.anomaly_counts("cpu", now - timedelta(days=1), now, 0.8)
    assert got.columns == ["series", "anomalous_points", "max_score", "peak", "first", "last"]
    rows = {r["series"]: r for r in got.iter_rows(named=True)}
    assert rows['cpu{host="a"}']["anomalous_points"] == 2 and rows['cpu{host="a"}']["max_score"] == 0.95
    assert (rows['cpu{host="a"}']["first"], rows['cpu{host="a"}']["last"]) == (t[1], t[2])
    assert rows['cpu{host="a"}']["peak"] == t[2]
    assert rows['cpu{host="b"}']["anomalous_points"] == 2 and rows['cpu{host="b"}']["last"] == t[2]
    assert rows['cpu{host="b"}']["peak"] == t[0]
    _scores(rolled, sa, la, [t[4]], [0.95])  # the equal worst score again: the earlier one stays the peak
    again = rolled.anomaly_counts('cpu{host="a"}', now - timedelta(days=1), now, 0.8)
    assert again.get_column("peak").to_list() == [t[2]] and again.get_column("anomalous_points").to_list() == [3]
    assert got.get_column("series").to_list() == ['cpu{host="a"}', 'cpu{host="b"}']  # ties by name
    assert rolled.anomaly_counts('cpu{host="b"}', now - timedelta(days=1), now, 0.95).height == 1
    assert rolled.anomaly_counts("cpu", now - timedelta(days=1), now, 1.0).height == 0
    with pytest.raises(QueryError, match="threshold"):
        rolled.anomaly_counts("cpu", now - timedelta(days=1), now, 1.5)


def test_newest_forecasts_choose_the_last_issue_per_target(rolled: Lake, now: datetime) -> None:
    from tasks.forecasting.data import latest_forecasts

    cat = rolled.series("cpu").sort("series")
    rows = []
    for sid, labels in cat.select("series_id", "labels").rows():
        for issued, level in ((now - timedelta(hours=3), 1.0), (now - timedelta(hours=2), 2.0)):
            for k in range(1, 25):  # 2 h ahead at 5 min: the two issues overlap for an hour
                ts = issued.replace(minute=0) + timedelta(minutes=5 * k)
                rows.append((sid, "cpu", labels, issued, ts, k, level, level, level, level, "m", "1"))
    cols = ["series_id", "metric", "labels", "issued_at", "ts", "step", "p10", "p50", "p90", "p99", "model", "version"]
    frame = pl.DataFrame(rows, schema=cols, orient="row").with_columns(
        pl.col("issued_at", "ts").dt.cast_time_unit("ms")
    )
    rolled.write_rows(S.FORECASTS, frame)
    rolled.write_rows(S.FORECASTS, frame.head(3))  # a re-sent batch: a second file, the same rows
    since, until = now - timedelta(days=1), now
    got = rolled.newest_forecasts("cpu", since=since, until=until)
    ref = latest_forecasts(rolled, "cpu", since=since, until=until)
    assert got.height == ref.height == 2 * 36
    assert got.select("series_id", "ts", "p50").rows() == ref.select("series_id", "ts", "p50").rows()
    overlap = got.filter(pl.col("ts") <= (now - timedelta(hours=3)).replace(minute=0) + timedelta(hours=2))
    assert set(overlap.filter(pl.col("ts") > (now - timedelta(hours=2)).replace(minute=0)).get_column("p50")) == {2.0}
    window = (now - timedelta(hours=1), now)
    part = rolled.newest_forecasts('cpu{host="a"}', since=since, until=until, targets=window)
    assert part.height and part.get_column("ts").min() >= window[0] and part.get_column("ts").max() < window[1]  # type: ignore[operator]
    assert "labels" not in part.columns and part.schema["ts"] == S.POLARS_TS
    later = rolled.newest_forecasts("cpu", since=since, until=until, targets=(window[0], None))  # no upper bound
    assert later.height == got.filter(pl.col("ts") >= window[0]).height > part.height
    assert rolled.newest_forecasts("nothing", since=since, until=until).height == 0


def test_window_buckets_are_query_without_the_label_text(rolled: Lake, now: datetime) -> None:
    (sid_b,) = rolled.series('cpu{host="b"}').get_column("series_id").to_list()
    start, end = now - timedelta(hours=6), now - timedelta(minutes=1)  # rollups, then raw after the watermark
    for agg in ("avg", "max", "p95"):
        nums = rolled.window_buckets([sid_b], start, end, timedelta(minutes=5), agg)
        assert nums.columns == ["series_id", "ts", "value"] and set(nums.get_column("series_id")) == {sid_b}
        full = rolled.query('cpu{host="b"}', start, end, step=timedelta(minutes=5), agg=agg)
        mine = nums.sort("ts")
        assert mine.get_column("ts").to_list() == full.get_column("ts").to_list(), agg
        # DuckDB sums in parallel: the same average may differ in the last bit between two runs
        assert mine.get_column("value").to_list() == pytest.approx(full.get_column("value").to_list(), rel=1e-12)
    assert rolled.window_buckets([], start, end, timedelta(minutes=5)).height == 0
    with pytest.raises(QueryError, match="step"):
        rolled.window_buckets([sid_b], start, end, timedelta(0))
    with pytest.raises(QueryError, match="agg"):
        rolled.window_buckets([], start, end, timedelta(minutes=5), "mean")


def test_read_rows_empty_frames_have_the_table_schema_without_pandas(lake: Lake, now: datetime) -> None:
    from tasks.lake.lake import _polars_schema

    for table, schema in S.TABLE_SCHEMAS.items():
        assert _polars_schema(schema) == dict(pl.from_arrow(schema.empty_table()).schema), table  # type: ignore[union-attr]
    empty = lake.read_rows(S.FORECASTS, now - timedelta(days=1), now)
    assert empty.height == 0 and dict(empty.schema) == _polars_schema(S.FORECASTS_SCHEMA)


def test_summarize_answers_again_from_memory_until_the_lake_changes(rolled: Lake, now: datetime) -> None:
    start, end = now - timedelta(days=2), now - timedelta(hours=3)
    first = rolled.summarize("cpu", start, end, ["avg", "max"])
    calls: list[str] = []
    real_sql = rolled._sql

    def counting_sql(query: str, params: dict[str, object] | None = None) -> pl.DataFrame:
        calls.append(query)
        return real_sql(query, params)

    rolled._sql = counting_sql  # type: ignore[method-assign]
    assert rolled.summarize("cpu", start, end, ["avg", "max"]).equals(first) and calls == []
    # a late batch rewrites an old hour with a spike: new samples file, rollups rebuilt
    spike = _frame("cpu", ["a"], now - timedelta(days=1, hours=5), 60, 3).with_columns(pl.lit(1e6).alias("value"))
    rolled.write_samples(spike, now=now)
    raw_max = rolled.summarize('cpu{host="a"}', start, end, ["quantile:1"])  # raw samples: a new file
    assert raw_max.get_column("quantile:1")[0] == 1e6 and len(calls) == 1
    rolled.build_rollups(now=now - timedelta(hours=2))  # same rollup file names, new manifest
    again = rolled.summarize("cpu", start, end, ["avg", "max"])
    assert len(calls) == 2 and again.filter(pl.col("series") == 'cpu{host="a"}').get_column("max")[0] == 1e6
    assert rolled.summarize("cpu", start, end, ["avg", "max"]).equals(again) and len(calls) == 2

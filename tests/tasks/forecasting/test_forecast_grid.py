"""Grid: frequency inference, regularisation (counted), season lengths and the default season."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from forecast_helpers import HOUR, START, history

from tasks.forecasting.grid import default_season, infer_freq, regularize, season_lengths


def test_infer_freq_is_the_median_spacing_robust_to_duplicates_gaps_and_jitter() -> None:
    frame = history({"a": np.arange(100.0)}, freq=timedelta(minutes=5))
    ts = frame["ts"]
    jittered = pl.concat([ts, ts.head(10)]).sort()  # duplicates
    jittered = jittered.filter(~jittered.dt.minute().is_in([10, 15]))  # gaps
    jittered = jittered + pl.Series(np.tile([0, 1], len(jittered) // 2 + 1)[: len(jittered)] * 1000).cast(
        pl.Duration("ms")
    )
    assert infer_freq(jittered) == timedelta(minutes=5)
    two = pl.concat([history({"a": np.zeros(3)}), history({"b": np.zeros(3)}, start=START - timedelta(days=300))])
    assert infer_freq(two) == HOUR  # spacings within each series, never the jump between series


def test_regularize_averages_duplicates_interpolates_and_counts_gaps() -> None:
    frame = history({"a": np.arange(10.0), "b": np.arange(5.0)})
    dup = frame.filter((pl.col("series") == "a") & (pl.col("y") == 2.0)).with_columns(pl.lit(4.0).alias("y"))
    frame = pl.concat([frame, dup])  # slot 2 of "a": mean(2, 4) = 3
    frame = frame.filter(~((pl.col("series") == "a") & pl.col("y").is_in([5.0, 6.0])))  # a 2-slot gap
    frame = frame.with_columns(
        pl.when((pl.col("series") == "b") & (pl.col("y") == 3.0)).then(float("nan")).otherwise(pl.col("y")).alias("y")
    )
    out, report = regularize(frame, HOUR)
    a = out.filter(pl.col("series") == "a")["y"].to_list()
    assert a == [0.0, 1.0, 3.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert out.filter(pl.col("series") == "b")["y"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]
    by = {s.series: s for s in report.series}
    assert (by["a"].duplicates, by["a"].interpolated, by["a"].max_gap, by["a"].points) == (1, 2, 2, 10)
    assert (by["b"].interpolated, by["b"].duplicates) == (1, 0)
    d = report.to_dict()
    assert d["interpolated"] == 3 and d["duplicates"] == 1 and d["points"] == 15
    assert out.schema == {"series": pl.String, "ts": pl.Datetime("ms", "UTC"), "y": pl.Float64}
    assert out["ts"][0] == START


def test_regularize_snaps_jitter_to_a_grid_anchored_at_the_first_sample() -> None:
    frame = history({"a": np.arange(6.0)}, freq=timedelta(minutes=5))
    frame = frame.with_columns(
        pl.col("ts") + pl.duration(minutes=4) + pl.Series([0, 3000, -2000, 1000, 0, 2000]).cast(pl.Duration("ms"))
    )
    out, report = regularize(frame, timedelta(minutes=5))
    assert report.interpolated == 0 and report.duplicates == 0
    assert out["ts"].dt.minute().to_list() == [4, 9, 14, 19, 24, 29]


def test_season_lengths_and_default_season() -> None:
    assert season_lengths(timedelta(minutes=5)) == {"daily": 288, "weekly": 2016}
    assert season_lengths(timedelta(minutes=30)) == {"daily": 48, "weekly": 336}
    five = timedelta(minutes=5)
    assert default_season(five, 3225) == 288  # two weeks of 5-minute data: daily
    assert default_season(five, 4 * 2016) == 2016  # a month: weekly
    assert default_season(timedelta(days=1), 400) == 7
    assert default_season(timedelta(days=1), 10) == 1

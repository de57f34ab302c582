"""tasks.analytics.capacity: the capacity report's numbers (a series with its forecast band, run-out
times against a capacity, load by hour of day) on the planted report history."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from report_history import NOW, forecast_times, window

from tasks import analytics as A
from tasks.lake import Lake


def test_forecast_band_runs_past_the_actuals(report_lake: tuple[Lake, str]) -> None:
    lake, _ = report_lake
    start, end = window()
    ts = A.series_with_forecast(lake, 'host_cpu_utilization_ratio{host="web-1"}', start, end)
    band = ts.filter(pl.col("p50").is_not_null())
    assert band.height == 16 and set(band.get_column("p10")) == {0.2} and set(band.get_column("p90")) == {0.6}
    assert band.get_column("ts").max() > NOW  # type: ignore[operator]  # the band runs past the last actual value
    assert ts.filter(pl.col("value").is_not_null()).height >= 24 * 4  # 15-minute actuals over the day


def test_capacity_outlook_and_hourly_profile(report_lake: tuple[Lake, str]) -> None:
    lake, _ = report_lake
    start, end = NOW - timedelta(days=2), NOW
    out = A.capacity_outlook(lake, "host_cpu_utilization_ratio", 0.5, start, end)
    assert out.height == 4
    web1 = out.row(0, named=True)  # the only series with a forecast, and its p90 (0.6) crosses 0.5
    assert 'host="web-1"' in web1["series"] and web1["runs_out_p50"] is None
    assert web1["runs_out_p90"] == min(t for t in forecast_times() if t >= end)
    assert web1["forecast_p90_max"] == 0.6 and web1["headroom"] == pytest.approx(0.5 - web1["p95"])
    assert out.get_column("runs_out_p90").null_count() == 3
    assert A.capacity_outlook(lake, "host_cpu_utilization_ratio", 0.65, start, end).get_column(
        "runs_out_p90"
    ).null_count() == 4  # fmt: skip
    with pytest.raises(A.ReportError, match="capacity: must be positive"):
        A.capacity_outlook(lake, "host_cpu_utilization_ratio", 0, start, end)
    prof = A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end)
    assert prof.get_column("host").to_list() == ["web-1", "web-2", "web-3", "worker-1"] and prof.width == 25
    # the demo's daily curve: busier at 15:00 UTC than at 03:00 on every host
    assert all(a > b for a, b in zip(prof["15"], prof["3"], strict=True))


def test_top_keeps_the_busiest_series_for_the_plots(report_lake: tuple[Lake, str]) -> None:
    lake, _ = report_lake
    start, end = window()
    full = A.series_with_forecast(lake, "host_cpu_utilization_ratio", start, end)
    peaks = full.group_by("series").agg(pl.col("value").max()).sort("value", descending=True)
    two = A.series_with_forecast(lake, "host_cpu_utilization_ratio", start, end, top=2)
    assert set(two.get_column("series")) == set(peaks.head(2).get_column("series"))
    # the kept series keep every row they had in the full frame, forecast band included (values
    # compared approximately: DuckDB sums in parallel, so two reads can differ in the last bit)
    same = full.filter(pl.col("series").is_in(two.get_column("series").unique().to_list()))
    assert two.select("series", "ts").equals(same.select("series", "ts"))
    for col in ("value", "p10", "p50", "p90"):
        assert two.get_column(col).fill_null(-1.0).to_list() == pytest.approx(
            same.get_column(col).fill_null(-1.0).to_list(), rel=1e-12
        ), col
    web1 = A.series_with_forecast(lake, 'host_cpu_utilization_ratio{host="web-1"}', start, end, top=5)
    assert web1.filter(pl.col("p50").is_not_null()).height == 16  # a kept series keeps its forecast band
    prof = A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end)
    means = prof.select("host", pl.mean_horizontal(pl.exclude("host")).alias("m")).sort("m", descending=True)
    top2 = A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end, top=2)
    assert top2.get_column("host").to_list() == sorted(means.head(2).get_column("host").to_list())
    assert top2.width == 25
    for bad in (0, -1):
        with pytest.raises(A.ReportError, match="top"):
            A.series_with_forecast(lake, "host_cpu_utilization_ratio", start, end, top=bad)
        with pytest.raises(A.ReportError, match="top"):
            A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end, top=bad)
    with pytest.raises(A.ReportError, match="by"):
        A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end, by="host.name")

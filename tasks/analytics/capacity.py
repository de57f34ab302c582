"""The capacity-planning numbers: actuals with the newest forecast band, when each series runs out
of capacity by the forecasts, and the hour-of-day load profile (the heatmap)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from tasks.analytics.common import ReportError, label_col
from tasks.lake import Lake

__all__ = ["capacity_outlook", "hourly_profile", "series_with_forecast"]


def series_with_forecast(
    lake: Lake,
    selector: str,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=15),
    top: int | None = None,
) -> pl.DataFrame:
    """Actual values (``step`` averages) and the newest forecast band (p10/p50/p90) per series and time.

    Columns: series, ts, value (null where only a forecast exists), p10, p50, p90 (null where no
    forecast was issued). Forecasts are looked up over the window plus one day ahead, so the band
    continues past the last actual value. ``top`` keeps only the ``top`` series with the highest
    peak (of the ``step`` averages) in the window: a plot of 200 hosts' lines reads as a smear and
    takes matplotlib ~5 s per chart on this machine; the busiest dozen are the ones to look at.
    """
    if top is not None and top < 1:
        raise ReportError(f"top: must be at least 1, got {top}")
    actual = lake.query(selector, start, end, step=step, agg="avg").select("series", "ts", "value")
    keep: list[str] | None = None
    if top is not None and actual.height:
        peaks = actual.group_by("series").agg(pl.col("value").max()).sort(["value", "series"], descending=[True, False])
        keep = peaks.head(top).get_column("series").to_list()
        actual = actual.filter(pl.col("series").is_in(keep))
    fc = lake.newest_forecasts(selector, since=start - timedelta(days=1), until=end + timedelta(days=1))
    schema: dict[str, Any] = {
        "series": pl.String,
        "ts": pl.Datetime("ms", "UTC"),
        "value": pl.Float64,
        "p10": pl.Float64,
        "p50": pl.Float64,
        "p90": pl.Float64,
    }
    if fc.height:
        names = lake.series(selector).select("series_id", "series")
        fc = (
            fc.join(names, on="series_id")
            .filter(pl.col("ts") >= start)
            .select("series", pl.col("ts").dt.cast_time_unit("ms"), "p10", "p50", "p90")
        )
        if keep is not None:
            fc = fc.filter(pl.col("series").is_in(keep))
    else:
        fc = pl.DataFrame(schema={k: v for k, v in schema.items() if k != "value"})
    actual = actual.with_columns(pl.col("ts").dt.cast_time_unit("ms"))
    if not actual.height and not fc.height:
        return pl.DataFrame(schema=schema)
    out = actual.join(fc, on=["series", "ts"], how="full", coalesce=True)
    return out.select(list(schema)).cast(schema).sort("series", "ts")


def capacity_outlook(
    lake: Lake, selector: str, capacity: float, start: datetime, end: datetime, lookahead: timedelta = timedelta(days=7)
) -> pl.DataFrame:
    """Per series: current value, p95 over the window, the newest forecast's peak (p50/p90) over the
    next ``lookahead``, and the first time the forecast reaches ``capacity`` (``runs_out_p50`` /
    ``runs_out_p90``; null when it does not within the forecasts). Soonest to run out first.

    Why both quantiles: p90 crossing is "plan now", p50 crossing is "it will happen".
    """
    if capacity <= 0:
        raise ReportError(f"capacity: must be positive, got {capacity}")
    schema: dict[str, Any] = {
        "series": pl.String,
        "current": pl.Float64,
        "p95": pl.Float64,
        "headroom": pl.Float64,
        "forecast_p50_max": pl.Float64,
        "forecast_p90_max": pl.Float64,
        "runs_out_p50": pl.Datetime("ms", "UTC"),
        "runs_out_p90": pl.Datetime("ms", "UTC"),
    }
    now = lake.latest(selector, at=end).select("series", pl.col("value").alias("current"))
    p95 = lake.summarize(selector, start, end, ["p95"]).select("series", "p95")
    if not now.height and not p95.height:
        return pl.DataFrame(schema=schema)
    base = now.join(p95, on="series", how="full", coalesce=True)
    fc = lake.newest_forecasts(
        selector,
        since=end - timedelta(days=2),
        until=end + timedelta(days=1),
        targets=(end, end + lookahead + timedelta(milliseconds=1)),
    )
    if fc.height:
        names = lake.series(selector).select("series_id", "series")
        fut = fc.join(names, on="series_id").filter((pl.col("ts") >= end) & (pl.col("ts") <= end + lookahead))
        peaks = fut.group_by("series").agg(
            pl.col("p50").max().alias("forecast_p50_max"),
            pl.col("p90").max().alias("forecast_p90_max"),
            pl.col("ts").filter(pl.col("p50") >= capacity).min().alias("runs_out_p50"),
            pl.col("ts").filter(pl.col("p90") >= capacity).min().alias("runs_out_p90"),
        )
        base = base.join(peaks, on="series", how="left")
    out = base.with_columns((capacity - pl.col("p95")).alias("headroom"))
    for col, dtype in schema.items():
        if col not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=dtype).alias(col))
    out = out.select(list(schema)).cast(schema)
    return out.sort("runs_out_p90", "runs_out_p50", "headroom", nulls_last=True)


def hourly_profile(
    lake: Lake, selector: str, start: datetime, end: datetime, by: str = "host", top: int | None = None
) -> pl.DataFrame:
    """Average of the series per ``by`` label and hour of day (UTC): rows ``by``, columns ``0``..``23``
    (the heatmap of when each host is busy). ``top`` keeps the ``top`` rows with the highest mean over
    the day (a heatmap of 200 hosts is a 90-inch-tall image), still sorted by ``by``."""
    if top is not None and top < 1:
        raise ReportError(f"top: must be at least 1, got {top}")
    df = lake.query(selector, start, end, step=timedelta(hours=1), agg="avg")
    if not df.height:
        return pl.DataFrame(schema={by: pl.String})
    df = label_col(df, by).with_columns(pl.col("ts").dt.hour().alias("hour"))
    prof = df.group_by(by, "hour").agg(pl.col("value").mean()).sort("hour")
    if top is not None:
        busiest = prof.group_by(by).agg(pl.col("value").mean()).sort(["value", by], descending=[True, False])
        prof = prof.filter(pl.col(by).is_in(busiest.head(top).get_column(by).to_list()))
    wide = prof.pivot(on="hour", index=by, values="value").sort(by)
    return wide.select(by, *sorted((c for c in wide.columns if c != by), key=int))

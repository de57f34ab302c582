"""Between the lake and the forecasters: history frames in, forecast rows out.

The lake answers bucketed queries (``Lake.query`` with a step, from rollups where it can), which
is the regular grid forecasters want; this module reshapes that into the history frame
(``series, ts, y``), groups series into training groups, and turns forecast frames back into rows
of the lake's ``forecasts`` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from tasks.forecasting.base import HISTORY_SCHEMA, QUANTILE_COLUMNS
from tasks.lake import Lake
from tasks.lake import schema as S


@dataclass
class HistoryGroup:
    """Series trained together (one model lineage): its registry name and history frame."""

    name: str
    history: pl.DataFrame  # series, ts, y

    @property
    def n_series(self) -> int:
        return self.history.get_column("series").n_unique()


def load_history(lake: Lake, selectors: list[str], start: datetime, end: datetime, step: timedelta) -> pl.DataFrame:
    """Bucket averages of every series matching ``selectors`` over [start, end): series, ts, y."""
    parts = []
    for sel in selectors:
        df = lake.query(sel, start, end, step=step, agg="avg")
        if df.height:
            parts.append(df.select("series", "ts", pl.col("value").alias("y")))
    if not parts:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    return pl.concat(parts).unique(["series", "ts"], keep="last").sort("series", "ts")


def series_metric(series: str) -> str:
    """``cpu{host="a"}`` → ``cpu``."""
    return series.split("{", 1)[0]


def group_series(history: pl.DataFrame, max_per_group: int) -> list[HistoryGroup]:
    """One lineage per metric; a metric with more series than ``max_per_group`` is split into
    stable chunks (by series name) named ``metric.2``, ``metric.3``, … so each chunk keeps its
    own champion across retrains."""
    if not history.height:
        return []
    h = history.with_columns(pl.col("series").map_elements(series_metric, return_dtype=pl.String).alias("_metric"))
    groups: list[HistoryGroup] = []
    for (metric,), part in h.group_by("_metric", maintain_order=True):
        names = sorted(part.get_column("series").unique().to_list())
        for i in range(0, len(names), max_per_group):
            chunk = set(names[i : i + max_per_group])
            name = str(metric) if i == 0 else f"{metric}.{i // max_per_group + 1}"
            groups.append(HistoryGroup(name, part.filter(pl.col("series").is_in(chunk)).drop("_metric")))
    return sorted(groups, key=lambda g: g.name)


def forecast_rows(
    forecasts: pl.DataFrame, lake: Lake, *, issued_at: datetime, model: str, version: str
) -> pl.DataFrame:
    """A forecast frame as rows of the lake's ``forecasts`` table (series ids from the catalogue)."""
    keys = lake.catalogue().select("series_id", "metric", "labels", "series")
    out = forecasts.join(keys, on="series", how="inner")
    return out.select(
        "series_id",
        "metric",
        "labels",
        pl.lit(issued_at).cast(S.POLARS_TS).alias("issued_at"),
        pl.col("ts").cast(S.POLARS_TS),
        pl.col("step").cast(pl.Int32),
        *[pl.col(c).cast(pl.Float64) for c in QUANTILE_COLUMNS],
        pl.lit(model).alias("model"),
        pl.lit(version).alias("version"),
    )


def latest_forecasts(lake: Lake, selector: str, *, since: datetime, until: datetime) -> pl.DataFrame:
    """The newest issued forecast per series and target time (what alerting and scaling read)."""
    rows = lake.read_rows(S.FORECASTS, since, until, selector)
    if not rows.height:
        return rows
    return rows.sort("issued_at").unique(["series_id", "ts"], keep="last").sort("series_id", "ts")


def named_latest_forecasts(lake: Lake, selector: str, *, now: datetime) -> pl.DataFrame:
    """The newest forecast of every series matching ``selector`` for target times from two days
    before ``now`` to a minute after it, with each series' name, by series and target time (what
    ``cortex-perf forecast show`` lists); empty when nothing was forecast."""
    df = latest_forecasts(lake, selector, since=now - timedelta(days=2), until=now + timedelta(minutes=1))
    if not df.height:
        return df
    names = lake.series(selector).select("series_id", "series")
    return df.join(names, on="series_id").sort("series", "ts")

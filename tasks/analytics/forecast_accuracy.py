"""The forecast-accuracy numbers: how the forecasts did against what happened (per model and
series), and the model registry's champion/challenger history."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from tasks.lake import Lake

__all__ = ["forecast_errors", "model_history"]


def forecast_errors(
    lake: Lake, selector: str, start: datetime, end: datetime, step: timedelta = timedelta(minutes=5)
) -> pl.DataFrame:
    """How the forecasts whose target time fell in [start, end) did against what happened, per model
    and series: points, MAE, MAPE (%), bias (mean forecast − actual) and the share of actuals
    inside the p10–p90 band (``coverage_80``: about 0.8 when the intervals are honest).

    Each forecast point is compared with the ``step`` average of the actual series at its target
    time (the newest issue per target time, as alerting and scaling use them). Worst MAPE first.
    """
    schema: dict[str, Any] = {
        "model": pl.String,
        "series": pl.String,
        "points": pl.UInt32,
        "mae": pl.Float64,
        "mape_pct": pl.Float64,
        "bias": pl.Float64,
        "coverage_80": pl.Float64,
    }
    fc = lake.newest_forecasts(selector, since=start - timedelta(days=2), until=end, targets=(start, end))
    if not fc.height:
        return pl.DataFrame(schema=schema)
    # the actuals of the forecast series only, joined on integer ids; names go on the result rows
    ids = fc.get_column("series_id").unique().to_list()
    actual = lake.window_buckets(ids, start - step, end, step, "avg").rename({"value": "actual"})
    if not actual.height:
        return pl.DataFrame(schema=schema)
    fc = fc.select("series_id", "model", "ts", "p10", "p50", "p90")
    # both sides sorted by time within each series (polars cannot verify that with ``by``, hence no check)
    both = fc.sort("series_id", "ts").join_asof(
        actual.sort("series_id", "ts"),
        on="ts",
        by="series_id",
        strategy="backward",
        tolerance=step,
        check_sortedness=False,
    )
    both = both.filter(pl.col("actual").is_not_null())
    err = pl.col("p50") - pl.col("actual")
    out = both.group_by("model", "series_id").agg(
        pl.len().cast(pl.UInt32).alias("points"),
        err.abs().mean().alias("mae"),
        (err.abs() / pl.col("actual").abs()).filter(pl.col("actual") != 0).mean().mul(100).alias("mape_pct"),
        err.mean().alias("bias"),
        pl.col("actual").is_between(pl.col("p10"), pl.col("p90")).mean().alias("coverage_80"),
    )
    out = out.join(lake.series(selector).select("series_id", "series"), on="series_id")
    return out.select(list(schema)).cast(pl.Schema(schema)).sort("mape_pct", descending=True, nulls_last=True)


def model_history(state_path: str | None, models_dir: str = "data/models") -> pl.DataFrame:
    """The model registry's versions (name, version, status, created/promoted, backtest score), newest
    first; empty when there is no state DB."""
    schema: dict[str, Any] = {
        "name": pl.String,
        "version": pl.String,
        "kind": pl.String,
        "status": pl.String,
        "created_at": pl.Datetime("us", "UTC"),
        "promoted_at": pl.Datetime("us", "UTC"),
        "score": pl.Float64,
    }
    if not state_path or not Path(state_path).exists():
        return pl.DataFrame(schema=schema)
    # lazy: the registry imports the forecasting package, i.e. xgboost and statsmodels' base (+0.95 s
    # on top of this module (measured 2026-12-07)), which `cortex-perf insights/root-cause/export` never need.
    from tasks.forecasting.registry import ModelRegistry
    from tasks.state import State

    rows = [{k: getattr(v, k) for k in schema} for v in ModelRegistry(State(state_path), models_dir).history()]
    return pl.DataFrame(rows, schema=schema).sort("created_at", descending=True)

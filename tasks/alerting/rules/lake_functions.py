"""Our rule functions over what the anomaly and forecast stages stored in the lake.

``anomaly(m[w])``
    Per series matching ``m``: the highest anomaly score (0..1) the detector stored in ``[t - w, t]``
    (closed on both ends, like range selectors). Series without a score in the window are absent.
    Use: ``anomaly(http_request_duration_seconds_p95[10m]) > 0.9``.

``forecast(m, h)`` / ``forecast_quantile(q, m, h)``
    Per series matching ``m``: the newest forecast issued at or before ``t`` (and at most
    :data:`FORECAST_MAX_AGE` old — a forecast flow that stopped must not keep alerts alive), read at
    the target time ``t + h``: linearly interpolated between the two targets around it, the first
    target's value when ``t + h`` comes before it, and absent beyond the forecast's horizon (no
    extrapolation). ``forecast`` reads the median (p50); ``forecast_quantile`` reads q ∈ {0.1, 0.5,
    0.9, 0.99}, the quantiles the forecasters store. Use: ``forecast(disk_used_ratio, 4h) > 0.95``.

Both drop ``__name__`` as Prometheus functions do. They read through ``Lake.read_rows`` (parameterised
SQL; the selector is matched against the catalogue, never pasted into SQL).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from tasks.lake import Lake
from tasks.lake import schema as S

__all__ = ["FORECAST_MAX_AGE", "QUANTILE_COLUMNS", "anomaly_vector", "forecast_vector"]

FORECAST_MAX_AGE = timedelta(hours=3)
QUANTILE_COLUMNS = {0.1: "p10", 0.5: "p50", 0.9: "p90", 0.99: "p99"}
_EPS = timedelta(milliseconds=1)  # read_rows is [start, end): one lake tick past t closes the window

Labels = dict[str, str]


def _labels(text: str) -> Labels:
    return {k: str(v) for k, v in json.loads(text).items() if k != "__name__"}


def anomaly_vector(lake: Lake, selector: Any, t: datetime, window_s: float) -> list[tuple[Labels, float]]:
    rows = lake.read_rows(S.ANOMALIES, t - timedelta(seconds=window_s), t + _EPS, selector)
    if not rows.height:
        return []
    top = rows.filter(pl.col("ts") <= t).group_by("labels").agg(pl.col("score").max())
    return [(_labels(lab), float(v)) for lab, v in top.iter_rows()]


def forecast_vector(
    lake: Lake, selector: Any, t: datetime, horizon_s: float, q: float = 0.5
) -> list[tuple[Labels, float]]:
    col = QUANTILE_COLUMNS.get(round(q, 4))
    if col is None:
        raise ValueError(f"forecast_quantile: quantile {q:g} is not stored (stored: 0.1, 0.5, 0.9, 0.99)")
    if horizon_s < 0:
        raise ValueError(f"forecast: horizon {horizon_s:g}s is negative")
    rows = lake.read_rows(S.FORECASTS, t - FORECAST_MAX_AGE, t + _EPS, selector)
    if not rows.height:
        return []
    rows = rows.filter(pl.col("issued_at") <= t)
    newest = rows.group_by("series_id").agg(pl.col("issued_at").max().alias("newest"))
    rows = rows.join(newest, on="series_id").filter(pl.col("issued_at") == pl.col("newest"))
    # several models may have issued at the same time: the registry's champion wrote last, but
    # keep it simple and deterministic — one row per (series, target) by model name
    rows = rows.sort("series_id", "ts", "model").unique(["series_id", "ts"], keep="last", maintain_order=True)
    target = t + timedelta(seconds=horizon_s)
    out: list[tuple[Labels, float]] = []
    for (_sid,), part in rows.sort("ts").group_by(["series_id"], maintain_order=True):
        ts = part.get_column("ts").to_list()
        vals = part.get_column(col).to_list()
        lab = _labels(part.get_column("labels")[0])
        if target <= ts[0]:
            out.append((lab, float(vals[0])))
            continue
        if target > ts[-1]:
            continue  # beyond the horizon: no extrapolation
        for i in range(1, len(ts)):
            if ts[i] >= target:
                span = (ts[i] - ts[i - 1]).total_seconds()
                w = (target - ts[i - 1]).total_seconds() / span if span else 1.0
                out.append((lab, float(vals[i - 1] + w * (vals[i] - vals[i - 1]))))
                break
    return out

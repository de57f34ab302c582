"""Notebook reports: the data the report notebooks show, and running a notebook into an HTML file.

Two halves, both plain Python (no Prefect):

* **Data prep** (``latency_percentiles``, ``headroom``, ``top_consumers``, ``anomaly_summary``,
  ``alert_events``, ``alert_durations``, ``alert_review``, ``scaling_decisions``,
  ``series_with_forecast``): the notebooks only call these and plot, so the numbers are tested
  here and the same functions give the flow its table artifact of key numbers (``key_numbers``).
  Heavy aggregation runs in DuckDB through ``tasks.lake.Lake`` (quantiles via ``top_k``), never by
  loading the lake into memory.
* **Rendering** (``run_report``): papermill executes the notebook with its parameters injected,
  in a kernel that runs *this* interpreter (``ensure_kernel``), and nbconvert writes one
  self-contained HTML file with the code hidden (plots are embedded PNGs: readable offline) to
  ``<data_dir>/reports/<name>-<YYYY-MM-DD>.html``.
"""

from __future__ import annotations

import html as html_lib
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl

from tasks.config import ReportsSettings
from tasks.lake import Lake
from tasks.timeparse import parse_time

__all__ = [
    "KEY_NUMBERS_MIME",
    "LAKE_ENV",
    "NOTEBOOKS",
    "NOTEBOOK_DIR",
    "RESERVED_PARAMETERS",
    "ReportError",
    "ReportResult",
    "alert_durations",
    "alert_events",
    "alert_review",
    "anomaly_summary",
    "capacity_outlook",
    "check_parameters",
    "ensure_kernel",
    "forecast_errors",
    "headroom",
    "hourly_profile",
    "key_numbers",
    "latency_percentiles",
    "model_history",
    "notebook_key_numbers",
    "notebook_parameters",
    "notebook_path",
    "open_lake",
    "prune_reports",
    "report_window",
    "reports_dir",
    "reports_settings_problems",
    "run_report",
    "scaling_decisions",
    "series_with_forecast",
    "show_key_numbers",
    "show_table",
    "table_html",
    "top_consumers",
]

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
#: The report notebooks the flow and CLI know, with what each is for.
NOTEBOOKS: dict[str, str] = {
    "performance_report": "Latency percentiles, headroom, top consumers, anomalies, alerts, scaling.",
    "alert_review": "Alert volume per rule, firing→resolved durations, MTTA/MTTR, noisy and flapping rules.",
    "capacity_planning": "Forecasts with intervals against capacity, when each series runs out, what scaling did.",
    "forecast_accuracy": "Forecast errors per model and series (MAE, MAPE, bias, interval coverage), champion history.",
}
LATENCY_METRIC = "http_request_duration_seconds_p95"
KERNEL_NAME = "python3"
#: Name of the kernelspec ``ensure_kernel`` installs when ``python3`` would run another Python.
OWN_KERNEL_NAME = "cortex-perf"


class ReportError(ValueError):
    """A bad report request (unknown notebook, bad time range); the message names the field."""


# ---- time window -------------------------------------------------------------------------------
def report_window(
    since: str | datetime = "7d", until: str | datetime = "now", *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC from ``since``/``until`` (``7d``, ``now``, ISO 8601)."""
    try:
        start = parse_time(since, now=now)
    except ValueError as exc:
        raise ReportError(f"since: {exc}") from None
    try:
        end = parse_time(until, now=now)
    except ValueError as exc:
        raise ReportError(f"until: {exc}") from None
    if end <= start:
        raise ReportError(f"since: {start.isoformat()} is not before until {end.isoformat()}")
    return start, end


def _label_col(df: pl.DataFrame, name: str, out: str | None = None) -> pl.DataFrame:
    """Add one label of the ``labels`` JSON column as its own column (``""`` when absent).

    polars reads the JSON in Rust (label names are ``[a-zA-Z_][a-zA-Z0-9_]*``, safe in a JSON
    path): a week of hourly points of hundreds of hosts is tens of thousands of rows.
    """
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise ReportError(f"by: {name!r} is not a label name")
    col = pl.col("labels").str.json_path_match(f"$.{name}").fill_null("")
    return df.with_columns(col.cast(pl.String).alias(out or name))


# ---- performance report ------------------------------------------------------------------------
def latency_percentiles(
    lake: Lake, start: datetime, end: datetime, selector: str = LATENCY_METRIC, by: str = "host"
) -> pl.DataFrame:
    """p50/p95/p99 (seconds) of the latency series per ``by`` label over the window, slowest first.

    Why ``Lake.summarize``: DuckDB computes the three quantiles per series in one pass over the
    window, so a long window never comes into memory and is read once, not once per quantile.
    Columns: ``<by>``, ``p50``, ``p95``, ``p99``, ``metric``.
    """
    df = lake.summarize(selector, start, end, ["p50", "p95", "p99"])
    if not df.height:
        return pl.DataFrame(schema={by: pl.String, "p50": pl.Float64, "p95": pl.Float64, "p99": pl.Float64})
    out = _label_col(df, by)
    return out.select(by, "p50", "p95", "p99", "metric").sort("p99", descending=True)


def headroom(lake: Lake, start: datetime, end: datetime) -> pl.DataFrame:
    """CPU and memory use per host: average, p95 and the headroom left at p95 (``1 - p95``).

    Memory is a ratio from ``host_memory_utilization_ratio`` when collected, else
    ``used / total`` bytes; a host with used bytes but no total reports its used GiB and a null
    headroom (the demo history has no total). Columns: host, resource, avg, p95, headroom, unit.
    """
    rows: list[dict[str, Any]] = []

    def stats(selector: str) -> pl.DataFrame:
        # mean and p95 of every series in one pass over the window
        return _label_col(lake.summarize(selector, start, end, ["avg", "p95"]), "host")

    def add(selector: str, resource: str) -> set[str]:
        seen: set[str] = set()
        for host, a, p in stats(selector).select("host", "avg", "p95").iter_rows():
            rows.append({"host": host, "resource": resource, "avg": a, "p95": p, "headroom": 1.0 - p, "unit": "ratio"})
            seen.add(host)
        return seen

    add("host_cpu_utilization_ratio", "cpu")
    done = add("host_memory_utilization_ratio", "memory")
    totals = _label_col(lake.latest("host_memory_total_bytes", at=end), "host")
    total_by = dict(zip(totals.get_column("host").to_list(), totals.get_column("value").to_list(), strict=True))
    for host, a, p in stats("host_memory_used_bytes").select("host", "avg", "p95").iter_rows():
        if host in done:
            continue
        tot = total_by.get(host)
        if tot:
            rows.append(
                {
                    "host": host,
                    "resource": "memory",
                    "avg": a / tot,
                    "p95": p / tot,
                    "headroom": 1.0 - p / tot,
                    "unit": "ratio",
                }
            )
        else:
            rows.append(
                {
                    "host": host,
                    "resource": "memory",
                    "avg": a / 2**30,
                    "p95": p / 2**30,
                    "headroom": None,
                    "unit": "GiB",
                }
            )
    schema: dict[str, Any] = {
        "host": pl.String,
        "resource": pl.String,
        "avg": pl.Float64,
        "p95": pl.Float64,
        "headroom": pl.Float64,
        "unit": pl.String,
    }
    return pl.DataFrame(rows, schema=schema).sort("resource", "headroom", "host", nulls_last=True)


def top_consumers(lake: Lake, start: datetime, end: datetime, k: int = 5) -> pl.DataFrame:
    """The ``k`` heaviest series per resource (CPU, requests/s, GPU, Redis ops) by average."""
    wanted = {
        "cpu": "host_cpu_utilization_ratio",
        "requests/s": "http_requests_per_second",
        "gpu": "gpu_utilization_ratio",
        "redis ops/s": "redis_instantaneous_ops_per_sec",
    }
    parts = []
    for resource, sel in wanted.items():
        # averages come from the rollups (hourly rows over a long window), not the raw samples
        df = lake.summarize(sel, start, end, ["avg"]).sort("avg", "series", descending=[True, False]).head(k)
        if df.height:
            parts.append(df.select(pl.lit(resource).alias("resource"), "series", "avg"))
    if not parts:
        return pl.DataFrame(schema={"resource": pl.String, "series": pl.String, "avg": pl.Float64})
    return pl.concat(parts)


def anomaly_summary(
    lake: Lake, start: datetime, end: datetime, threshold: float = 0.8, selector: str = '{__name__=~".+"}'
) -> pl.DataFrame:
    """Series with anomaly scores ≥ ``threshold`` in the window: count, worst score, when it peaked,
    first/last time (``peak`` is where a root-cause search should look).

    Why ``Lake.anomaly_counts``: the scores table holds a row per series and minute; only the few
    above the threshold matter, so DuckDB filters and counts them instead of polars loading them all.
    """
    return lake.anomaly_counts(selector, start, end, threshold)


def alert_events(lake: Lake, start: datetime, end: datetime) -> pl.DataFrame:
    """``alert.firing`` / ``alert.resolved`` events as rows: ts, state, alertname, severity, fingerprint, rule."""
    schema: dict[str, Any] = {
        "ts": pl.Datetime("ms", "UTC"),
        "state": pl.String,
        "alertname": pl.String,
        "severity": pl.String,
        "fingerprint": pl.String,
        "rule": pl.String,
    }
    rows = []
    for name, state in (("alert.firing", "firing"), ("alert.resolved", "resolved")):
        ev = lake.events(since=start, until=end, name=name)
        for ts, resource, payload in ev.select("ts", "resource", "payload").iter_rows():
            p = json.loads(payload or "{}")
            labels = p.get("labels") or {}
            rows.append(
                {
                    "ts": ts,
                    "state": state,
                    "alertname": str(labels.get("alertname", "?")),
                    "severity": str(labels.get("severity", "")),
                    "fingerprint": resource.removeprefix("cortex.alert."),
                    "rule": str(p.get("rule", "")),
                }
            )
    return pl.DataFrame(rows, schema=schema).sort("ts", "fingerprint")


def alert_durations(events: pl.DataFrame) -> pl.DataFrame:
    """Pair each firing with the next resolve of the same alert: alertname, fingerprint, fired, resolved,
    duration_s (null while still firing at the end of the window)."""
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for r in events.sort("ts").iter_rows(named=True):
        fp = r["fingerprint"]
        if r["state"] == "firing":
            if fp not in open_:  # a repeated firing without a resolve is the same episode
                open_[fp] = {"alertname": r["alertname"], "fingerprint": fp, "fired": r["ts"]}
        elif fp in open_:
            ep = open_.pop(fp)
            out.append({**ep, "resolved": r["ts"], "duration_s": (r["ts"] - ep["fired"]).total_seconds()})
    out.extend({**ep, "resolved": None, "duration_s": None} for ep in open_.values())
    schema: dict[str, Any] = {
        "alertname": pl.String,
        "fingerprint": pl.String,
        "fired": pl.Datetime("ms", "UTC"),
        "resolved": pl.Datetime("ms", "UTC"),
        "duration_s": pl.Float64,
    }
    return pl.DataFrame(out, schema=schema).sort("fired")


def alert_review(
    events: pl.DataFrame, acks: Mapping[str, datetime] | None = None, flapping_min: int = 3
) -> pl.DataFrame:
    """Per rule (alertname): firings, resolves, distinct alerts, mean/max duration, MTTR, MTTA, flapping.

    MTTR is the mean firing→resolved duration; MTTA the mean time from an episode's firing to the
    acknowledgement of that alert (``acks``: fingerprint → acked_at, from the state DB) when one
    came during the episode. ``flapping`` is true when one alert fired ``flapping_min`` times or more.
    Sorted noisiest first (most firings).
    """
    durations = alert_durations(events)
    schema: dict[str, Any] = {
        "alertname": pl.String,
        "firings": pl.UInt32,
        "resolves": pl.UInt32,
        "alerts": pl.UInt32,
        "mttr_s": pl.Float64,
        "max_duration_s": pl.Float64,
        "mtta_s": pl.Float64,
        "max_firings_per_alert": pl.UInt32,
        "flapping": pl.Boolean,
    }
    if not events.height:
        return pl.DataFrame(schema=schema)
    acks = acks or {}
    tta: dict[str, list[float]] = {}
    for r in durations.iter_rows(named=True):
        at = acks.get(r["fingerprint"])
        if at is not None and at >= r["fired"] and (r["resolved"] is None or at <= r["resolved"]):
            tta.setdefault(r["alertname"], []).append((at - r["fired"]).total_seconds())
    counts = events.group_by("alertname").agg(
        (pl.col("state") == "firing").sum().cast(pl.UInt32).alias("firings"),
        (pl.col("state") == "resolved").sum().cast(pl.UInt32).alias("resolves"),
        pl.col("fingerprint").n_unique().cast(pl.UInt32).alias("alerts"),
    )
    per_alert = (
        events.filter(pl.col("state") == "firing")
        .group_by("alertname", "fingerprint")
        .len()
        .group_by("alertname")
        .agg(pl.col("len").max().cast(pl.UInt32).alias("max_firings_per_alert"))
    )
    dur = durations.group_by("alertname").agg(
        pl.col("duration_s").mean().alias("mttr_s"), pl.col("duration_s").max().alias("max_duration_s")
    )
    mtta = pl.DataFrame(
        {"alertname": list(tta), "mtta_s": [sum(v) / len(v) for v in tta.values()]},
        schema={"alertname": pl.String, "mtta_s": pl.Float64},
    )
    out = (
        counts.join(dur, on="alertname", how="left")
        .join(mtta, on="alertname", how="left")
        .join(per_alert, on="alertname", how="left")
        .with_columns(pl.col("max_firings_per_alert").fill_null(0))
        .with_columns((pl.col("max_firings_per_alert") >= flapping_min).alias("flapping"))
    )
    return out.select(list(schema)).sort("firings", "alertname", descending=[True, False])


def acks_from_state(state_path: str | None) -> dict[str, datetime]:
    """fingerprint → acked_at of the acknowledgements in the state DB (empty when there is none)."""
    if not state_path or not Path(state_path).exists():
        return {}
    from tasks.alerting.notify.acks import AckStore
    from tasks.state import State

    return {a.fingerprint: a.acked_at for a in AckStore(State(state_path)).acks()}


def scaling_decisions(lake: Lake, start: datetime, end: datetime) -> pl.DataFrame:
    """``scaling.triggered`` events: ts, target, from, to, mode, emergency, reason."""
    schema: dict[str, Any] = {
        "ts": pl.Datetime("ms", "UTC"),
        "target": pl.String,
        "from": pl.Int64,
        "to": pl.Int64,
        "mode": pl.String,
        "emergency": pl.Boolean,
        "reason": pl.String,
    }
    rows = []
    for ts, payload in (
        lake.events(since=start, until=end, name="scaling.triggered").select("ts", "payload").iter_rows()
    ):
        p = json.loads(payload or "{}")
        rows.append(
            {
                "ts": ts,
                "target": str(p.get("target", "?")),
                "from": _int(p.get("from")),
                "to": _int(p.get("to")),
                "mode": str(p.get("mode", "")),
                "emergency": bool(p.get("emergency", False)),
                "reason": str(p.get("reason", "")),
            }
        )
    return pl.DataFrame(rows, schema=schema).sort("ts")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


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
    df = _label_col(df, by).with_columns(pl.col("ts").dt.hour().alias("hour"))
    prof = df.group_by(by, "hour").agg(pl.col("value").mean()).sort("hour")
    if top is not None:
        busiest = prof.group_by(by).agg(pl.col("value").mean()).sort(["value", by], descending=[True, False])
        prof = prof.filter(pl.col(by).is_in(busiest.head(top).get_column(by).to_list()))
    wide = prof.pivot(on="hour", index=by, values="value").sort(by)
    return wide.select(by, *sorted((c for c in wide.columns if c != by), key=int))


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
    from tasks.forecasting.registry import ModelRegistry
    from tasks.state import State

    rows = [{k: getattr(v, k) for k in schema} for v in ModelRegistry(State(state_path), models_dir).history()]
    return pl.DataFrame(rows, schema=schema).sort("created_at", descending=True)


# ---- key numbers (the flow's table artifact) ------------------------------------------------------
def key_numbers(name: str, lake: Lake, start: datetime, end: datetime, state_path: str | None = None) -> dict[str, Any]:
    """A handful of headline numbers of notebook ``name`` over the window (for a Prefect table artifact)."""
    _check_name(name)
    events = alert_events(lake, start, end)
    firings = int((events.get_column("state") == "firing").sum()) if events.height else 0
    if name == "forecast_accuracy":
        errs = forecast_errors(lake, '{__name__=~".+"}', start, end)
        pts = int(errs.get_column("points").sum()) if errs.height else 0
        return {
            "series forecast": errs.height,
            "points compared": pts,
            "worst MAPE %": round(float(errs.get_column("mape_pct").max()), 2) if errs.height else None,  # type: ignore[arg-type]
            "models in registry": model_history(state_path).get_column("name").n_unique(),
        }
    if name == "capacity_planning":
        out = capacity_outlook(lake, "host_cpu_utilization_ratio", 0.9, start, end)
        soon = out.filter(pl.col("runs_out_p90").is_not_null())
        return {
            "series": out.height,
            "at risk (p90 reaches 90 % CPU)": soon.height,
            "first to run out": soon.get_column("series")[0] if soon.height else None,
            "scaling decisions": scaling_decisions(lake, start, end).height,
        }
    if name == "alert_review":
        review = alert_review(events, acks_from_state(state_path))
        mttr = durations_mean(alert_durations(events))
        return {
            "alert firings": firings,
            "rules that fired": review.height,
            "flapping rules": int(review.get_column("flapping").sum()) if review.height else 0,
            "MTTR (min)": None if mttr is None else round(mttr / 60, 1),
            "noisiest rule": review.get_column("alertname")[0] if review.height else None,
        }
    lat = latency_percentiles(lake, start, end)
    room = headroom(lake, start, end)
    cpu = room.filter(pl.col("resource") == "cpu")
    return {
        "hosts": lat.height,
        "worst p99 latency (s)": round(float(lat.get_column("p99").max()), 4) if lat.height else None,  # type: ignore[arg-type]
        "min CPU headroom": round(float(cpu.get_column("headroom").min()), 3) if cpu.height else None,  # type: ignore[arg-type]
        "anomalous series": anomaly_summary(lake, start, end).height,
        "alert firings": firings,
        "scaling decisions": scaling_decisions(lake, start, end).height,
    }


#: MIME type under which a notebook hands its key numbers back to ``run_report`` (the HTML shows
#: the markdown table beside it; nbconvert ignores a type it does not know).
KEY_NUMBERS_MIME = "application/vnd.cortex-perf.key-numbers+json"


def show_key_numbers(numbers: Mapping[str, Any]) -> None:
    """Display the key numbers as a table and hand them to ``run_report`` in the same output.

    Why: the flow's table artifact needs the numbers the notebook already computed; reading them
    back from the executed notebook saves computing them a second time in the flow process (1 s on
    a day of a 50 M-sample lake, 6 s on a week).
    """
    from IPython.display import display

    plain = json.loads(json.dumps(dict(numbers), default=str))
    rows = [f"| {k} | {'—' if v is None else v} |" for k, v in plain.items()]
    table = "\n".join(["| figure | value |", "|---|---:|", *rows])
    display({KEY_NUMBERS_MIME: plain, "text/markdown": table}, raw=True)


#: Rows a report table shows before it says how many it left out (a table is for reading, not a dump).
TABLE_MAX_ROWS = 30


def format_cell(v: Any) -> str:
    """One value as a person reads it: numbers to 4 significant digits with thousands separators,
    times to the minute (seconds when there are any), yes/no, and nothing at all for a missing value.

    Why not polars' repr: it prints 16-digit floats, quotes every string and writes ``null``.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0 or math.isinf(v):
            return str(v) if math.isinf(v) else "0"
        if abs(v) < 1e-3 or abs(v) >= 1e12:
            return f"{v:.3g}"
        decimals = max(0, 3 - math.floor(math.log10(abs(v))))
        text = f"{v:,.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S" if v.second else "%Y-%m-%d %H:%M")
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={format_cell(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(format_cell(x) for x in v)
    return str(v)


def table_html(df: pl.DataFrame, *, max_rows: int = TABLE_MAX_ROWS) -> str:
    """``df`` as a plain HTML table: a header of column names (no dtype row, no ``shape:``), cells
    from ``format_cell`` (escaped: series names and labels are user text), numbers right-aligned,
    and past ``max_rows`` one line saying how many rows were left out."""
    numeric = [dt.is_numeric() for dt in df.dtypes]
    right = ' style="text-align:right"'
    head = "".join(
        f"<th{right if n else ''}>{html_lib.escape(c)}</th>" for c, n in zip(df.columns, numeric, strict=True)
    )
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = (
            f"<td{right if n else ''}>{html_lib.escape(format_cell(v))}</td>" for v, n in zip(row, numeric, strict=True)
        )
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = df.height - max_rows
    note = f"<p><em>{more:,} more rows not shown</em></p>" if more > 0 else ""
    return f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{note}'


def show_table(df: pl.DataFrame, empty: str, *, max_rows: int = TABLE_MAX_ROWS) -> bool:
    """Display ``df`` as a readable table (``table_html``), or ``empty`` in words when it has no rows.

    The one way the report notebooks show a frame; returns whether there was anything to show, so a
    notebook can plot only then.
    """
    from IPython.display import Markdown, display

    if not df.height:
        display(Markdown(f"_{empty}_"))
        return False
    plain = "\n".join(
        "\t".join(format_cell(v) for v in row) for row in [tuple(df.columns), *df.head(max_rows).iter_rows()]
    )
    display({"text/html": table_html(df, max_rows=max_rows), "text/plain": plain}, raw=True)
    return True


def notebook_key_numbers(notebook: Any) -> dict[str, Any] | None:
    """The key numbers an executed notebook displayed with ``show_key_numbers`` (None: it did not)."""
    for cell in notebook.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if KEY_NUMBERS_MIME in data:
                found = data[KEY_NUMBERS_MIME]
                return dict(json.loads(found) if isinstance(found, str) else found)
    return None


def durations_mean(durations: pl.DataFrame) -> float | None:
    """Mean firing→resolved seconds of the resolved episodes (None when none resolved)."""
    vals = durations.get_column("duration_s").drop_nulls()
    return float(vals.mean()) if vals.len() else None  # type: ignore[arg-type]


# ---- rendering -------------------------------------------------------------------------------------
#: Environment variable through which ``run_report`` hands the kernel the lake's full settings (S3
#: endpoint and keys included). Why not a notebook parameter: papermill writes parameters into the
#: executed notebook kept beside the HTML, and a secret must never land in a file people share.
LAKE_ENV = "CORTEX_PERF_REPORT_LAKE"


def open_lake(lake_root: str = "") -> Lake:
    """The lake a report notebook reads: what the notebooks call instead of ``Lake(lake_root)``.

    Under ``run_report`` the kernel gets the caller's lake settings through ``LAKE_ENV``, so an S3
    lake opens with its endpoint and credentials. In Jupyter (no handoff) the settings come from the
    usual places (``cortex-perf.yaml``, ``CORTEX_PERF_…`` variables) found from the project root, as
    the CLI finds them: Jupyter starts the kernel in ``notebooks/``, where ``data/lake`` would be an
    empty ``notebooks/data/lake``. ``lake_root`` (when given) replaces the root and keeps every other
    lake setting; a relative one is under the project root too.
    """
    from tasks.config import LakeSettings, load_settings
    from tasks.config.project import anchor, project_root
    from tasks.config.settings import config_path

    raw = os.environ.get(LAKE_ENV)
    lake_settings = LakeSettings.model_validate_json(raw) if raw else load_settings().lake
    if lake_root:
        root = anchor(lake_root, project_root(config_path())) or lake_root
        lake_settings = lake_settings.model_copy(update={"root": root})
    return Lake.from_settings(SimpleNamespace(lake=lake_settings))


def _lake_env(lake_settings: Any) -> str:
    """``LakeSettings`` as JSON with its secrets in clear (for the kernel's environment only)."""
    from tasks.config import unwrap_secrets

    data = lake_settings.model_dump(mode="python")
    unwrap_secrets(data)
    return json.dumps(data)


def _kernel_manager_with(extra_env: Mapping[str, str]) -> type:
    """A kernel manager class whose kernels talk over IPC sockets and start with ``extra_env`` added.

    Why IPC: over TCP (jupyter's default) every report kernel logged ipykernel's "Kernel is running
    over TCP without encryption" warning into the caller's stderr, and any local user could connect
    to its ports; Unix sockets in this user's private runtime dir need neither ports nor encryption.
    Why not ``os.environ`` for ``extra_env``: setting the variable process-wide would hand the S3
    keys to every subprocess another thread starts meanwhile, and two renders at once would race on
    restoring it. Papermill passes ``kernel_manager_class`` through to nbclient, which starts the
    kernel with it; the ``env`` given to ``start_kernel`` becomes the kernel process's environment.
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class _ReportKernelManager(AsyncKernelManager):
        # ``start_kernel`` (what nbclient awaits) is bound to the base class's function at class
        # creation, so overriding ``_async_start_kernel`` alone would never be called.
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.transport = "ipc"
            # the socket files' prefix: in the runtime dir (the default would be the working directory)
            self.ip = str(runtime / f"cortex-report-{uuid.uuid4().hex[:12]}-ipc")
            kw["env"] = {**os.environ, **kw.get("env", {}), **extra_env}
            await AsyncKernelManager._async_start_kernel(self, **kw)

    return _ReportKernelManager


def _check_name(name: str) -> None:
    if name not in NOTEBOOKS:
        raise ReportError(f"notebook: unknown report {name!r} (known: {', '.join(sorted(NOTEBOOKS))})")


def notebook_path(name: str) -> Path:
    """The source ``.ipynb`` of report ``name``."""
    _check_name(name)
    return NOTEBOOK_DIR / f"{name}.ipynb"


def reports_dir(settings: Any) -> Path:
    """``<data_dir>/reports`` of the settings (created): the one place reports are written."""
    out = Path(settings.data_dir) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    return out


def ensure_kernel() -> str:
    """The name of a kernelspec that runs this very interpreter (so the notebook sees this venv).

    ``python3`` is ipykernel's spec installed into the venv by ``uv sync``; its ``python`` argv is
    replaced by ``sys.executable`` by jupyter_client. A user-level ``python3`` spec pointing at
    another Python would shadow it, so in that case a ``cortex-perf`` spec is installed into
    ``sys.prefix`` (the venv) and used instead.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    for name in (KERNEL_NAME, OWN_KERNEL_NAME):
        try:
            argv0 = ksm.get_kernel_spec(name).argv[0]
        except NoSuchKernel:
            continue
        if argv0 in {"python", "python3", f"python3.{sys.version_info.minor}"} or (
            Path(argv0).resolve() == Path(sys.executable).resolve()
        ):
            return name
    from ipykernel.kernelspec import install

    install(kernel_name=OWN_KERNEL_NAME, prefix=sys.prefix, display_name="cortex-perf (venv)")
    return OWN_KERNEL_NAME


@dataclass(slots=True)
class ReportResult:
    """One rendered report: where the HTML is, the window it covers, how long it took."""

    name: str
    html: str
    since: str
    until: str
    seconds: float
    bytes: int
    images: int
    key_numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: nbconvert's lab template without the two scripts it loads from a CDN (require.js, MathJax): the
#: reports have no widgets or formulas, and a report must read the same offline (CSS is inlined).
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
"""


def to_html(notebook: Any, *, show_code: bool = False) -> str:
    """Self-contained HTML of an executed notebook; code cells hidden unless ``show_code``."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"cortex_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="cortex_offline.html.j2",
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(notebook)
    return body


def notebook_parameters(name: str) -> dict[str, Any]:
    """The parameters cell of report ``name``: ``{parameter: its default}`` (papermill's reading)."""
    import papermill as pm

    found = pm.inspect_notebook(str(notebook_path(name)))
    return {k: v.get("default") for k, v in found.items()}


#: Notebook parameters every report run sets itself; a per-report override would make the notebook
#: show another window or lake than the file name and the result say.
RESERVED_PARAMETERS = ("lake_root", "since", "until", "state_path")


def check_parameters(name: str, parameters: Mapping[str, Any], origin: str = "parameters") -> None:
    """Reject a parameter the notebook does not declare (papermill would only warn and ignore it)."""
    reserved = sorted(set(parameters) & set(RESERVED_PARAMETERS))
    if reserved:
        raise ReportError(
            f"{origin}.{name}.{reserved[0]}: set by the report run itself (the window and the lake); "
            "use reports.since, --since/--until or lake.root instead"
        )
    known = notebook_parameters(name)
    bad = sorted(set(parameters) - set(known))
    if bad:
        raise ReportError(
            f"{origin}.{name}.{bad[0]}: report {name!r} has no such parameter (known: {', '.join(sorted(known))})"
        )


def reports_settings_problems(cfg: ReportsSettings) -> list[str]:
    """Every problem of the ``reports`` settings section, one ``field: message`` line each: reports
    that do not exist, and per-report parameters the run sets itself or the notebook lacks.

    Why here: only the reports know their notebooks; the settings are a leaf, and the one check
    every loader runs (``tasks.config_checks``) asks this. Notebooks are read only when
    ``parameters`` are set."""
    out = []
    known = ", ".join(sorted(NOTEBOOKS))
    for field_name, names in (("notebooks", list(cfg.notebooks)), ("parameters", list(cfg.parameters))):
        bad = [n for n in names if n not in NOTEBOOKS]
        if bad:
            out.append(f"reports.{field_name}: unknown report(s) {', '.join(map(repr, bad))} (known: {known})")
    for name, params in cfg.parameters.items():
        if name not in NOTEBOOKS:
            continue
        reserved = sorted(set(params) & set(RESERVED_PARAMETERS))
        if reserved:
            why = "is set by the report run itself (use reports.since, lake.root)"
            out.append(f"reports.parameters: {name}.{reserved[0]} {why}")
            continue
        try:
            check_parameters(name, params, origin="reports.parameters")
        except ReportError as exc:
            out.append(str(exc))
    return out


def run_report(
    name: str,
    *,
    lake_root: str,
    out_dir: Path,
    since: str | datetime = "7d",
    until: str | datetime = "now",
    state_path: str | None = None,
    now: datetime | None = None,
    parameters: Mapping[str, Any] | None = None,
    timeout_s: int = 600,
    show_code: bool = False,
    lake_settings: Any = None,
) -> ReportResult:
    """Execute notebook ``name`` with papermill and write ``<out_dir>/<name>-<date>.html``.

    The window is resolved here (``since``/``until`` → ISO UTC) so the notebook and the key numbers
    see the same one. The executed ``.ipynb`` is kept beside the HTML (``<name>-<date>.ipynb``) for
    people who want the code. The key numbers are the ones the notebook displayed with
    ``show_key_numbers`` (every report notebook does; ``{}`` for one that does not).
    ``lake_settings`` (a ``LakeSettings``) reaches the kernel through ``LAKE_ENV``, never as a
    parameter, so S3 credentials stay out of the executed notebook.
    """
    import papermill as pm

    from tasks.config.project import anchor

    src = notebook_path(name)
    start, end = report_window(since, until, now=now)
    if parameters:
        check_parameters(name, parameters)
    # The kernel runs in the checkout (NOTEBOOK_DIR's parent), not in the caller's directory: a
    # relative lake or state path means the caller's, so it travels absolute.
    lake_root = anchor(lake_root, Path.cwd()) or lake_root
    state_path = anchor(state_path, Path.cwd())
    if lake_settings is not None:
        lake_settings = lake_settings.model_copy(update={"root": anchor(lake_settings.root, Path.cwd())})
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{end:%Y-%m-%d}"
    executed = out_dir / f"{stem}.ipynb"
    params = {
        "lake_root": lake_root,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "state_path": state_path or "",
        **dict(parameters or {}),
    }
    t0 = time.perf_counter()
    kernel_env = {} if lake_settings is None else {LAKE_ENV: _lake_env(lake_settings)}
    nb = pm.execute_notebook(
        str(src),
        str(executed),
        parameters=params,
        kernel_name=ensure_kernel(),
        progress_bar=False,
        log_output=False,
        cwd=str(NOTEBOOK_DIR.parent),  # so `import tasks` works whatever the caller's directory
        execution_timeout=timeout_s,
        kernel_manager_class=_kernel_manager_with(kernel_env),
    )
    html = to_html(nb, show_code=show_code)
    target = out_dir / f"{stem}.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)  # readers never see half a report
    return ReportResult(
        name=name,
        html=str(target),
        since=start.isoformat(),
        until=end.isoformat(),
        seconds=round(time.perf_counter() - t0, 2),
        bytes=target.stat().st_size,
        images=html.count("<img"),
        key_numbers=notebook_key_numbers(nb) or {},
    )


_REPORT_FILE = re.compile(r"^(?P<name>[a-z_]+)-(?P<day>\d{4}-\d{2}-\d{2})\.(?:html|ipynb)$")


def prune_reports(
    out_dir: Path, keep_days: int, *, now: datetime | None = None, keep: Iterable[str | Path] = ()
) -> list[Path]:
    """Delete rendered reports (``<name>-<YYYY-MM-DD>.html|.ipynb``) written more than ``keep_days`` ago.

    Why: the daily flow writes two files per report per day, and nobody wants a reports folder that
    grows without bound. Age is when the file was *written* (its mtime), not the date in its name:
    that is the window's end, and a report rendered today for last year's window must survive.
    Only files named like a report are touched (anything else a person put there stays), and never
    the paths in ``keep`` (what this run just wrote). Returns the deleted paths.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    kept = {Path(k).resolve() for k in keep}
    gone = []
    for f in sorted(out_dir.glob("*-*.*")):
        m = _REPORT_FILE.match(f.name)
        if not m or m["name"] not in NOTEBOOKS or f.resolve() in kept:
            continue
        try:
            written = datetime.fromtimestamp(f.stat().st_mtime, UTC)
        except FileNotFoundError:  # another run pruned it meanwhile
            continue
        if written < cutoff:
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def render_reports(
    settings: Any,
    names: list[str] | None = None,
    *,
    since: str | datetime | None = None,
    until: str | datetime = "now",
    now: datetime | None = None,
) -> list[ReportResult]:
    """Render each report ``names`` for the lake, state DB and data dir of ``settings``.

    What both the ``report`` flow (per-report task) and ``cortex-perf report`` call. Defaults come
    from the ``reports`` settings (which notebooks, the window, per-notebook parameters, code
    shown or not, timeout); names and parameters are checked before any kernel starts, so a typo
    fails at once naming the field. Reports older than ``reports.keep_days`` are pruned after.
    """
    cfg = settings.reports
    names = list(names or cfg.notebooks or NOTEBOOKS)
    for n in names:
        _check_name(n)
    for n, extra in cfg.parameters.items():
        check_parameters(n, extra, origin="reports.parameters")
    start, end = report_window(cfg.since if since is None else since, until, now=now)
    out = reports_dir(settings)
    state_path = str(settings.state.path)
    results = [
        run_report(
            n,
            lake_root=settings.lake.root,  # the URL (s3://…); ``Lake.root`` would be the bare path
            out_dir=out,
            since=start,
            until=end,
            state_path=state_path,
            parameters=cfg.parameters.get(n),
            timeout_s=cfg.timeout_s,
            show_code=cfg.show_code,
            lake_settings=settings.lake,
        )
        for n in names
    ]
    wrote = [p for r in results for p in (r.html, Path(r.html).with_suffix(".ipynb"))]
    prune_reports(out, cfg.keep_days, now=now, keep=wrote)
    return results


def mail_reports(url: str, results: list[ReportResult], *, timeout_s: float = 30.0) -> int:
    """E-mail the rendered reports through Apprise (``mailto://…``), each HTML file attached.

    The body is a short plain summary (window and key numbers per report); the attachment is the
    report itself, which opens offline in any browser (plots are embedded). Returns the number of
    services that got it; raises ``ReportError`` naming ``email_to`` when the URL cannot be loaded
    or any service refused the message (Apprise's ``PARTIAL`` counts as a failure).
    """
    import apprise

    from tasks.alerting.notify.receivers import redact_url

    if not results:
        raise ReportError("email_to: no reports to send")
    asset = apprise.AppriseAsset(storage_mode="memory")  # no Apprise cache under $HOME
    inst = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    if inst is None:
        raise ReportError(f"email_to: cannot load {redact_url(url)}")
    inst.request_rate_per_sec = 0  # one message: no 5.5 s throttle sleep
    ap = apprise.Apprise(asset=asset)
    ap.add(inst)
    lines = []
    for r in results:
        lines.append(f"{r.name}: {r.since} → {r.until} ({Path(r.html).name})")
        lines.extend(f"  {k}: {'—' if v is None else v}" for k, v in r.key_numbers.items())
    attach = apprise.AppriseAttachment(asset=asset)
    for r in results:
        attach.add(r.html)
    title = "cortex-perf report: " + ", ".join(r.name for r in results)
    result = ap.notify(body="\n".join(lines), title=title, attach=attach, body_format=apprise.NotifyFormat.TEXT,
                       timeout=timeout_s)  # fmt: skip
    per = list(result.results)
    if result.status != apprise.AppriseResultStatus.SUCCESS or not per or not all(per):
        raise ReportError(f"email_to: sending to {redact_url(url)} failed ({result.status.name.lower()})")
    return len(per)

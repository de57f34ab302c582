"""The performance report's numbers: latency percentiles, CPU/memory headroom, top consumers,
anomalies and scaling decisions over a window, as polars frames the notebook shows and plots.

Why DuckDB does the work (``Lake.summarize``, ``Lake.anomaly_counts``): a week of minute samples of
hundreds of hosts never comes into memory; each figure is one pass over the window (or its rollups).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl

from tasks.analytics.common import label_col
from tasks.lake import Lake

__all__ = ["LATENCY_METRIC", "anomaly_summary", "headroom", "latency_percentiles", "scaling_decisions", "top_consumers"]


LATENCY_METRIC = "http_request_duration_seconds_p95"


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
    out = label_col(df, by)
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
        return label_col(lake.summarize(selector, start, end, ["avg", "p95"]), "host")

    def add(selector: str, resource: str) -> set[str]:
        seen: set[str] = set()
        for host, a, p in stats(selector).select("host", "avg", "p95").iter_rows():
            rows.append({"host": host, "resource": resource, "avg": a, "p95": p, "headroom": 1.0 - p, "unit": "ratio"})
            seen.add(host)
        return seen

    add("host_cpu_utilization_ratio", "cpu")
    done = add("host_memory_utilization_ratio", "memory")
    totals = label_col(lake.latest("host_memory_total_bytes", at=end), "host")
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

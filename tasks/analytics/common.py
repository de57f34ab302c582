"""Helpers shared by the analyses and the report numbers: what a series *is*, how to read it, and
the report window.

Why one place: the analyses must agree on which series are latency or utilisation series and on
how time ranges are validated; otherwise a report and the insights beside it would disagree.
(Alert episodes have their own module, ``tasks.analytics.alerts``.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from tasks.lake import Lake
from tasks.timeparse import parse_time

ALL_SERIES = '{__name__=~".+"}'
#: Label names that locate a series on a machine or in a service (root cause compares them).
LOCATION_LABELS = ("host", "instance", "node", "pod", "service", "job", "namespace", "gpu", "redis", "target")


class AnalyticsError(ValueError):
    """Bad input to an analysis; the message names the argument."""


def check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``start``/``end`` as aware UTC datetimes, ``end`` after ``start`` (errors name the argument)."""
    for name, v in (("start", start), ("end", end)):
        if not isinstance(v, datetime):
            raise AnalyticsError(f"{name}: expected a datetime, got {type(v).__name__}")
        if v.tzinfo is None:
            raise AnalyticsError(f"{name}: naive datetime {v.isoformat()} (must be timezone-aware UTC)")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise AnalyticsError(f"end: {end.isoformat()} is not after start {start.isoformat()}")
    return start, end


def is_latency(metric: str) -> bool:
    """Latency series by Prometheus naming (``*_duration_seconds*``, ``*latency*``)."""
    return "duration" in metric or "latency" in metric


def is_error(metric: str) -> bool:
    return "error" in metric or "fail" in metric


def is_ratio(metric: str) -> bool:
    """Utilisation-like series bounded by 1 (``*_ratio`` by Prometheus naming convention)."""
    return metric.endswith("_ratio") or metric.endswith("_utilization") or metric.endswith("_utilisation")


#: Selector form of ``is_ratio`` (label matchers are anchored, as in Prometheus).
RATIO_SELECTOR = '{__name__=~".+_ratio|.+_utilization|.+_utilisation"}'


def ratio_expr() -> pl.Expr:
    """Polars form of ``is_ratio`` (vectorised filter over a ``metric`` column)."""
    m = pl.col("metric")
    return m.str.ends_with("_ratio") | m.str.ends_with("_utilization") | m.str.ends_with("_utilisation")


def latency_expr() -> pl.Expr:
    """Polars form of ``is_latency``."""
    m = pl.col("metric")
    return m.str.contains("duration", literal=True) | m.str.contains("latency", literal=True)


#: Prometheus naming: a metric ending so is a counter (its level only grows).
COUNTER_SUFFIX = "_total"


def is_counter(metric: str) -> bool:
    return metric.endswith(COUNTER_SUFFIX)


def not_counter() -> pl.Expr:
    """Rows of gauges only: the one place the analytics tell counters apart (see ``bucketed``)."""
    return ~pl.col("metric").str.ends_with(COUNTER_SUFFIX)


def finite(v: Any, digits: int = 6) -> float | None:
    """A JSON-safe rounded float (None for missing or non-finite values)."""
    if v is None:
        return None
    f = float(v)
    return round(f, digits) if math.isfinite(f) else None


def labels_of(labels_json: str) -> dict[str, str]:
    out = json.loads(labels_json)
    return out if isinstance(out, dict) else {}


def bucketed(
    lake: Lake, selectors: Sequence[str] | None, start: datetime, end: datetime, step: timedelta, agg: str = "avg"
) -> pl.DataFrame:
    """Bucket aggregates (series, metric, labels, ts, value) of every series the selectors match.

    Counters (``*_total``) are skipped: their level only grows, so trends and levels of the raw
    counter mean nothing; their rates are what a person reads, and those are gauges elsewhere.
    """
    parts = [lake.query(sel, start, end, step=step, agg=agg) for sel in (selectors or [ALL_SERIES])]
    parts = [p for p in parts if p.height]
    if not parts:
        return lake.empty_result()
    df = pl.concat(parts).unique(["series", "ts"], keep="first")
    return df.filter(not_counter()).sort("series", "ts")


class ReportError(ValueError):
    """A bad report request (unknown notebook, bad time range); the message names the field."""


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


def label_col(df: pl.DataFrame, name: str, out: str | None = None) -> pl.DataFrame:
    """Add one label of the ``labels`` JSON column as its own column (``""`` when absent).

    polars reads the JSON in Rust (label names are ``[a-zA-Z_][a-zA-Z0-9_]*``, safe in a JSON
    path): a week of hourly points of hundreds of hosts is tens of thousands of rows.
    """
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise ReportError(f"by: {name!r} is not a label name")
    col = pl.col("labels").str.json_path_match(f"$.{name}").fill_null("")
    return df.with_columns(col.cast(pl.String).alias(out or name))

"""Helpers shared by insights, root cause and the report: what a series *is* and how to read it.

Why one place: the three analyses must agree on which series are latency or utilisation series,
on how time ranges are validated, and on how an alert's firing/resolved events pair up into
episodes; otherwise a report and the insights beside it would count the same alert differently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

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
    lake: Any, selectors: Sequence[str] | None, start: datetime, end: datetime, step: timedelta, agg: str = "avg"
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


@dataclass(frozen=True, slots=True)
class AlertEpisode:
    """One firing of one alert instance, from its ``alert.firing`` to its ``alert.resolved`` event."""

    resource: str
    alertname: str
    rule: str
    labels: dict[str, str]
    started: datetime
    ended: datetime | None  # None: still firing at the end of the range

    def duration_s(self, until: datetime) -> float:
        return ((self.ended or until) - self.started).total_seconds()

    def to_dict(self, until: datetime) -> dict[str, Any]:
        return {
            "alertname": self.alertname,
            "rule": self.rule,
            "labels": self.labels,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "duration_s": round(self.duration_s(until), 3),
        }


def alert_episodes(lake: Any, start: datetime, end: datetime) -> list[AlertEpisode]:
    """Pair ``alert.firing``/``alert.resolved`` events per alert instance (resource) into episodes.

    Why from events: they are the durable record (alert state in the state DB only keeps the
    current instance). A repeated ``firing`` without a ``resolved`` in between (a restart, a
    caught-up tick) continues the open episode instead of starting a new one.
    """
    ev = lake.events(since=start, until=end)
    ev = ev.filter(pl.col("name").is_in(["alert.firing", "alert.resolved"]) & (pl.col("ts") < end))
    open_: dict[str, AlertEpisode] = {}
    done: list[AlertEpisode] = []
    for name, resource, ts, payload in ev.select("name", "resource", "ts", "payload").iter_rows():
        try:
            p = json.loads(payload)
        except ValueError:
            p = {}
        labels = {str(k): str(v) for k, v in (p.get("labels") or {}).items()}
        if name == "alert.firing":
            if resource not in open_:
                open_[resource] = AlertEpisode(
                    resource,
                    labels.get("alertname", str(p.get("rule", resource))),
                    str(p.get("rule", "")),
                    labels,
                    ts,
                    None,
                )
        elif resource in open_:
            ep = open_.pop(resource)
            done.append(AlertEpisode(ep.resource, ep.alertname, ep.rule, ep.labels, ep.started, ts))
    return sorted(done + list(open_.values()), key=lambda e: (e.started, e.resource))

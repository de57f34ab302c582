"""A structured performance report for a time range: the numbers the notebooks and e-mails show.

Sections: latency percentiles (p50/p95/p99 of every latency series), top consumers per resource
metric, capacity headroom of utilisation series, alerts with their durations (from the
``alert.firing``/``alert.resolved`` events), and scaling decisions with their effect (load per
unit before the decision and at the next decision for the same target).

Why every number comes from the lake's query API (``top_k`` with quantiles, ``events``): those
push the aggregation into DuckDB, so a week of minute samples is summarised without loading it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from tasks.analytics.common import alert_episodes, check_range, finite, latency_expr, ratio_expr

__all__ = ["RESOURCE_METRICS", "Report", "report"]

#: Selectors of the resource metrics whose top consumers are listed (real collector names).
RESOURCE_METRICS = {
    "cpu": '{__name__=~".*cpu_utilization_ratio"}',
    "memory": '{__name__=~".*memory_used_bytes"}',
    "gpu": '{__name__=~"gpu_utilization_ratio"}',
    "requests": '{__name__=~".*requests_per_second"}',
}
_LATENCY = '{__name__=~".*(duration|latency).*"}'
_RATIOS = '{__name__=~".*(_ratio|_utilization|_utilisation)"}'


@dataclass(slots=True)
class Report:
    """The report's sections as plain rows (lists of dicts), ready for tables and JSON."""

    start: datetime
    end: datetime
    latency: list[dict[str, Any]] = field(default_factory=list)
    top_consumers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    headroom: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, Any] = field(default_factory=dict)
    scaling: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when the range holds nothing to report (an empty or idle lake)."""
        return not (self.latency or self.top_consumers or self.headroom or self.alerts.get("firings") or self.scaling)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "empty": self.empty,
            "latency": self.latency,
            "top_consumers": self.top_consumers,
            "headroom": self.headroom,
            "alerts": self.alerts,
            "scaling": self.scaling,
        }


def _per_series(lake: Any, selector: str, start: datetime, end: datetime, aggs: dict[str, str]) -> pl.DataFrame:
    """One row per matching series with one column per named aggregate.

    ``Lake.summarize`` computes them all in one pass (rollups for long-window averages, cached
    within the lake object), the same path the report notebooks' data prep uses.
    """
    df = lake.summarize(selector, start, end, list(aggs.values()))
    return df.rename({agg: name for name, agg in aggs.items()})


def _latency(lake: Any, start: datetime, end: datetime) -> list[dict[str, Any]]:
    df = _per_series(
        lake,
        _LATENCY,
        start,
        end,
        {"p50": "quantile:0.5", "p95": "quantile:0.95", "p99": "quantile:0.99", "max": "max"},
    )
    if not df.height:
        return []
    df = df.filter(latency_expr()).sort("p95", descending=True)
    return [
        {"series": r["series"], **{k: finite(r[k]) for k in ("p50", "p95", "p99", "max")}}
        for r in df.iter_rows(named=True)
    ]


def _top_consumers(lake: Any, start: datetime, end: datetime, top: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for resource, selector in RESOURCE_METRICS.items():
        df = _per_series(lake, selector, start, end, {"avg": "avg"})
        df = df.sort("avg", "series", descending=[True, False]).head(top)
        if df.height:
            out[resource] = [{"series": s, "avg": finite(v)} for s, v in df.select("series", "avg").iter_rows()]
    return out


def _headroom(lake: Any, start: datetime, end: datetime) -> list[dict[str, Any]]:
    df = _per_series(lake, _RATIOS, start, end, {"avg": "avg", "p95": "quantile:0.95", "max": "max"})
    if not df.height:
        return []
    df = df.filter(ratio_expr())
    df = df.with_columns((1.0 - pl.col("p95")).alias("headroom")).sort("headroom")
    return [
        {"series": r["series"], **{k: finite(r[k]) for k in ("avg", "p95", "max", "headroom")}}
        for r in df.iter_rows(named=True)
    ]


def _alerts(lake: Any, start: datetime, end: datetime) -> dict[str, Any]:
    eps = alert_episodes(lake, start, end)
    if not eps:
        return {"firings": 0, "by_alert": [], "episodes": []}
    by: dict[str, list[float]] = defaultdict(list)
    for e in eps:
        by[e.alertname].append(e.duration_s(end))
    rows: list[dict[str, Any]] = [
        {
            "alertname": name,
            "firings": len(d),
            "total_s": round(sum(d), 1),
            "mean_s": round(sum(d) / len(d), 1),
            "max_s": round(max(d), 1),
        }
        for name, d in by.items()
    ]
    rows.sort(key=lambda r: (-int(r["firings"]), -float(r["total_s"]), str(r["alertname"])))
    return {
        "firings": len(eps),
        "still_firing": sum(1 for e in eps if e.ended is None),
        "by_alert": rows,
        "episodes": [e.to_dict(end) for e in eps],
    }


def _scaling(lake: Any, start: datetime, end: datetime) -> list[dict[str, Any]]:
    ev = lake.events(since=start, until=end).filter(pl.col("ts") < end)
    ev = ev.filter(pl.col("name").is_in(["scaling.triggered", "action.applied", "action.failed"]))
    decisions: list[dict[str, Any]] = []
    outcome: dict[str, str] = {}
    for name, ts, payload in ev.select("name", "ts", "payload").iter_rows():
        try:
            p = json.loads(payload)
        except ValueError:
            continue
        if name == "scaling.triggered":
            decisions.append({**p, "_ts": ts})
        elif p.get("decision_id"):
            outcome[str(p["decision_id"])] = "applied" if name == "action.applied" else "failed"
    rows: list[dict[str, Any]] = []
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in decisions:
        by_target[str(d.get("target"))].append(d)
    for target, ds in by_target.items():
        for i, d in enumerate(ds):
            frm, to, load = d.get("from"), d.get("to"), d.get("load")
            nxt = ds[i + 1] if i + 1 < len(ds) else None
            before = load / frm if isinstance(load, int | float) and isinstance(frm, int) and frm else None
            nload = nxt.get("load") if nxt else None
            after = nload / to if isinstance(nload, int | float) and isinstance(to, int) and to else None
            rows.append(
                {
                    "at": d["_ts"].isoformat(),
                    "target": target,
                    "from": frm,
                    "to": to,
                    "mode": d.get("mode"),
                    "policy": d.get("policy"),
                    "reason": d.get("reason"),
                    "outcome": outcome.get(str(d.get("id")), "not applied" if frm != to else "hold"),
                    "load_per_unit_before": finite(before),
                    "load_per_unit_after": finite(after),
                }
            )
    rows.sort(key=lambda r: (r["at"], r["target"]))
    return rows


def report(lake: Any, start: datetime, end: datetime, *, top: int = 5) -> Report:
    """The performance report for [start, end). An empty lake gives a report whose ``empty`` is True."""
    start, end = check_range(start, end)
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top: must be a positive integer, got {top!r}")
    return Report(
        start=start,
        end=end,
        latency=_latency(lake, start, end),
        top_consumers=_top_consumers(lake, start, end, top),
        headroom=_headroom(lake, start, end),
        alerts=_alerts(lake, start, end),
        scaling=_scaling(lake, start, end),
    )

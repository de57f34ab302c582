"""The headline numbers of each report notebook (the flow's table artifact and the e-mail body).

The notebooks compute them with the same functions as their tables (``show_key_numbers`` hands them
back to the render), so a figure in the Prefect UI is the figure in the report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from tasks.analytics.alerts import acks_from_state, alert_durations, alert_events, alert_review, durations_mean
from tasks.analytics.capacity import capacity_outlook
from tasks.analytics.common import ReportError
from tasks.analytics.forecast_accuracy import forecast_errors, model_history
from tasks.analytics.performance import anomaly_summary, headroom, latency_percentiles, scaling_decisions
from tasks.lake import Lake

__all__ = ["REPORTS", "key_numbers"]

#: The report notebooks that have key numbers: every one ``tasks.reports.NOTEBOOKS`` knows (a test
#: keeps the two equal; analytics cannot import the rendering side, which sits above it).
REPORTS = ("alert_review", "capacity_planning", "forecast_accuracy", "performance_report")


def key_numbers(name: str, lake: Lake, start: datetime, end: datetime, state_path: str | None = None) -> dict[str, Any]:
    """A handful of headline numbers of notebook ``name`` over the window (for a Prefect table artifact)."""
    if name not in REPORTS:
        raise ReportError(f"notebook: unknown report {name!r} (known: {', '.join(sorted(REPORTS))})")
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

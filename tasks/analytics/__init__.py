"""The analytics engine: findings, root-cause hints, the report notebooks' numbers and exports over
the lake.

Pure functions over a ``Lake`` (no Prefect): notebooks, the report flow, the CLI, the REST API and
the MCP server all call these and format the results (frames, or typed results with ``to_dict``).

- ``insights``: ranked plain-language findings (regressions, trend changes, saturation, idle
  resources, noisy/flapping alerts, forecast drift) with the numbers behind them.
- ``root_cause``: other series ranked by how well they explain an anomaly at a time.
- the report notebooks' data prep, one module per report: ``performance`` (latency, headroom, top
  consumers, anomalies, scaling decisions), ``alerts`` (alert episodes and the alert review),
  ``capacity`` (forecast bands, run-out times, load by hour), ``forecast_accuracy``; and
  ``key_numbers`` (each report's headline figures). Rendering is ``tasks.reports``.
- ``export``: a table or selector to CSV / Parquet / JSON lines, streamed by DuckDB.
"""

from tasks.analytics.alerts import (
    AlertEpisode,
    acks_from_state,
    alert_durations,
    alert_episodes,
    alert_events,
    alert_review,
    durations_mean,
)
from tasks.analytics.capacity import capacity_outlook, hourly_profile, series_with_forecast
from tasks.analytics.common import AnalyticsError, ReportError, report_window
from tasks.analytics.export import FORMATS, ExportResult, export
from tasks.analytics.forecast_accuracy import forecast_errors, model_history
from tasks.analytics.insights import Finding, insights
from tasks.analytics.key_numbers import key_numbers
from tasks.analytics.performance import (
    anomaly_summary,
    headroom,
    latency_percentiles,
    scaling_decisions,
    top_consumers,
)
from tasks.analytics.root_cause import Cause, RootCauseResult, root_cause

__all__ = [
    "FORMATS",
    "AlertEpisode",
    "AnalyticsError",
    "Cause",
    "ExportResult",
    "Finding",
    "ReportError",
    "RootCauseResult",
    "acks_from_state",
    "alert_durations",
    "alert_episodes",
    "alert_events",
    "alert_review",
    "anomaly_summary",
    "capacity_outlook",
    "durations_mean",
    "export",
    "forecast_errors",
    "headroom",
    "hourly_profile",
    "insights",
    "key_numbers",
    "latency_percentiles",
    "model_history",
    "report_window",
    "root_cause",
    "scaling_decisions",
    "series_with_forecast",
    "top_consumers",
]

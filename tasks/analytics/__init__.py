"""The analytics engine: findings, root-cause hints, performance reports and exports over the lake.

Pure functions over a ``Lake`` (no Prefect): notebooks, the report flow, the CLI, the REST API and
the MCP server all call these and format the typed results (each has ``to_dict``).

- ``insights``: ranked plain-language findings (regressions, trend changes, saturation, idle
  resources, noisy/flapping alerts, forecast drift) with the numbers behind them.
- ``root_cause``: other series ranked by how well they explain an anomaly at a time.
- ``report``: a structured performance report for a time range.
- ``export``: a table or selector to CSV / Parquet / JSON lines, streamed by DuckDB.
"""

from tasks.analytics.common import AlertEpisode, AnalyticsError, alert_episodes
from tasks.analytics.export import FORMATS, ExportResult, export
from tasks.analytics.insights import Finding, insights
from tasks.analytics.report import Report, report
from tasks.analytics.root_cause import Cause, RootCauseResult, root_cause

__all__ = [
    "FORMATS",
    "AlertEpisode",
    "AnalyticsError",
    "Cause",
    "ExportResult",
    "Finding",
    "Report",
    "RootCauseResult",
    "alert_episodes",
    "export",
    "insights",
    "report",
    "root_cause",
]

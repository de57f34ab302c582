"""tasks.analytics.forecast_accuracy: forecast errors against the actuals and the champion history,
on the planted report history (one forecast issued 2 h ago, one registered model)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from report_history import forecast_times, window

from tasks import analytics as A
from tasks.lake import Lake


def test_forecast_errors_against_the_actuals(report_lake: tuple[Lake, str]) -> None:
    lake, state_path = report_lake
    start, end = window()
    sel = 'host_cpu_utilization_ratio{host="web-1"}'
    errs = A.forecast_errors(lake, sel, start, end)
    assert errs.height == 1
    row = errs.row(0, named=True)
    # independently: the 5-minute average actual at each past target time vs the planted p50 = 0.4
    actual = lake.query(sel, start - timedelta(minutes=5), end, step=timedelta(minutes=5), agg="avg")
    by_ts = dict(zip(actual.get_column("ts").to_list(), actual.get_column("value").to_list(), strict=True))
    vals = [by_ts[t - timedelta(minutes=t.minute % 5)] for t in forecast_times() if t < end]
    assert row["model"] == "seasonal_naive" and row["points"] == len(vals) == 8
    assert row["mae"] == pytest.approx(sum(abs(0.4 - v) for v in vals) / len(vals))
    assert row["bias"] == pytest.approx(sum(0.4 - v for v in vals) / len(vals))
    assert row["coverage_80"] == pytest.approx(sum(0.2 <= v <= 0.6 for v in vals) / len(vals))
    assert row["mape_pct"] == pytest.approx(100 * sum(abs(0.4 - v) / v for v in vals) / len(vals))
    assert A.forecast_errors(lake, 'gpu_utilization_ratio{gpu="0"}', start, end).height == 0  # no forecasts
    hist = A.model_history(state_path)
    assert hist.select("name", "version", "status", "score").rows() == [("cpu", "v1", "champion", 0.12)]
    assert A.model_history(None).height == 0

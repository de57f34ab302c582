"""``anomaly(m[w])``, ``forecast(m, h)`` and ``forecast_quantile(q, m, h)`` over rows stored in a real lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tasks.alerting.rules.lake_functions import FORECAST_MAX_AGE, anomaly_vector, forecast_vector
from tasks.alerting.rules.promql import PromQLError, parse
from tasks.lake import Lake, Sample
from tasks.lake import schema as S

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
A = {"host": "a"}
B = {"host": "b"}


@pytest.fixture
def lake(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_samples([Sample("lat", 1.0, T - 30 * M, A), Sample("lat", 1.0, T - 30 * M, B)])
    return lake


def _ids(lake):
    cat = lake.catalogue()
    return {json.loads(lab)["host"]: (sid, lab) for sid, lab in cat.select("series_id", "labels").iter_rows()}


def anomalies(lake, rows):
    ids = _ids(lake)
    df = pl.DataFrame(
        {
            "series_id": [ids[h][0] for h, _, _ in rows],
            "metric": ["lat"] * len(rows),
            "labels": [ids[h][1] for h, _, _ in rows],
            "ts": [ts for _, ts, _ in rows],
            "score": [s for _, _, s in rows],
            "value": [1.0] * len(rows),
            "expected": [1.0] * len(rows),
            "detector": ["robust"] * len(rows),
            "reason": ["r"] * len(rows),
        },
        schema_overrides={"ts": S.POLARS_TS},
    )
    lake.write_rows(S.ANOMALIES, df)


def forecasts(lake, host, issued_at, targets, p50, model="xgboost"):
    ids = _ids(lake)
    n = len(targets)
    df = pl.DataFrame(
        {
            "series_id": [ids[host][0]] * n,
            "metric": ["lat"] * n,
            "labels": [ids[host][1]] * n,
            "issued_at": [issued_at] * n,
            "ts": targets,
            "step": list(range(1, n + 1)),
            "p10": [v - 1 for v in p50],
            "p50": p50,
            "p90": [v + 1 for v in p50],
            "p99": [v + 2 for v in p50],
            "model": [model] * n,
            "version": ["1"] * n,
        },
        schema_overrides={"issued_at": S.POLARS_TS, "ts": S.POLARS_TS, "step": pl.Int32},
    )
    lake.write_rows(S.FORECASTS, df)


def test_anomaly_is_the_max_score_in_the_closed_window(lake):
    anomalies(
        lake,
        [("a", T - 11 * M, 0.99), ("a", T - 10 * M, 0.7), ("a", T - 2 * M, 0.95), ("a", T, 0.2), ("b", T + M, 1.0)],
    )
    got = sorted(anomaly_vector(lake, "lat", T, 600))
    assert got == [({"host": "a"}, 0.95)]  # 0.99 is outside [t-10m, t]; b's only score is after t
    assert sorted(anomaly_vector(lake, "lat", T + M, 60), key=lambda r: r[0]["host"]) == [
        ({"host": "a"}, 0.2),
        ({"host": "b"}, 1.0),
    ]
    assert anomaly_vector(lake, 'lat{host="zzz"}', T, 600) == []


def test_forecast_interpolates_reads_quantiles_and_stops_at_the_horizon(lake):
    targets = [T + 5 * M * (i + 1) for i in range(4)]  # 12:05 .. 12:20
    forecasts(lake, "a", T - M, targets, [10.0, 20.0, 30.0, 40.0])
    assert forecast_vector(lake, "lat", T, 600) == [({"host": "a"}, 20.0)]
    assert forecast_vector(lake, "lat", T, 450) == [({"host": "a"}, 15.0)]  # halfway 12:05 → 12:10
    assert forecast_vector(lake, "lat", T, 60) == [({"host": "a"}, 10.0)]  # before the first target
    assert forecast_vector(lake, "lat", T, 1500) == []  # 12:25 is past the last target
    assert forecast_vector(lake, "lat", T, 600, q=0.9) == [({"host": "a"}, 21.0)]
    with pytest.raises(ValueError, match="quantile 0.75 is not stored"):
        forecast_vector(lake, "lat", T, 600, q=0.75)


def test_forecast_uses_the_newest_issue_and_ignores_stale_or_future_ones(lake):
    targets = [T + 10 * M, T + 20 * M]
    forecasts(lake, "a", T - 30 * M, targets, [1.0, 1.0])
    forecasts(lake, "a", T - 5 * M, targets, [2.0, 2.0])
    forecasts(lake, "a", T + 5 * M, targets, [3.0, 3.0])  # issued after t: not known at t
    assert forecast_vector(lake, "lat", T, 600) == [({"host": "a"}, 2.0)]
    old = T + FORECAST_MAX_AGE + 10 * M  # every issue is too old by then
    assert forecast_vector(lake, "lat", old, 0) == []


def test_rule_syntax_for_our_functions():
    assert parse("forecast(disk_used_ratio, 4h) > 0.95").lhs.args[1].value == 4 * 3600
    assert parse("forecast_quantile(0.9, m, 30m)").args[2].value == 1800
    with pytest.raises(PromQLError, match="must be a metric selector"):
        parse("forecast(sum(m), 30m)")
    with pytest.raises(PromQLError, match="expected type range vector"):
        parse("anomaly(m)")


def test_rules_use_them_through_the_evaluator(lake):
    from tasks.alerting.rules.evaluate import evaluate

    anomalies(lake, [("a", T - 2 * M, 0.95), ("b", T - 2 * M, 0.3)])
    forecasts(lake, "b", T - M, [T + 30 * M, T + 60 * M], [80.0, 120.0])
    assert evaluate("anomaly(lat[10m]) > 0.9", lake, T) == [({"host": "a"}, 0.95)]
    assert evaluate('forecast(lat{host="b"}, 45m) > 90', lake, T) == [({"host": "b"}, 100.0)]
    assert evaluate("forecast_quantile(0.99, lat, 1h)", lake, T) == [({"host": "b"}, 122.0)]
    assert evaluate("sum(forecast(lat, 30m))", lake, T) == [({}, 80.0)]

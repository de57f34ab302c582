"""The forecast and anomaly flows under Prefect's test harness, on a generated demo lake."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.demo import seed_demo
from tasks.lake import Lake
from tasks.lake import schema as S

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def demo_overrides(tmp_path: Path, lake_overrides: list[str]) -> list[str]:
    root = next(o.split("=", 1)[1] for o in lake_overrides if o.startswith("lake.root="))
    seed_demo(Lake(root), days=3, now=datetime.now(UTC))
    return [
        *lake_overrides,
        'forecast.selectors=["host_cpu_utilization_ratio"]',
        'forecast.baselines=["seasonal_naive"]',
        'anomaly.selectors=["http_request_duration_seconds_p95"]',
    ]


def _lake(overrides: list[str]) -> Lake:
    return Lake(next(o.split("=", 1)[1] for o in overrides if o.startswith("lake.root=")))


def test_forecast_flow_writes_forecasts_registry_event_and_artifact(demo_overrides: list[str]) -> None:
    from prefect.client.orchestration import get_client

    from flows.forecast import ARTIFACT_KEY, forecast

    state = forecast(overrides=demo_overrides, return_state=True)
    summary = state.result()
    assert summary["groups"] == 1 and summary["series"] == 4
    assert summary["promoted"] == ["host_cpu_utilization_ratio"]  # the first version is promoted
    assert summary["forecast_rows"] == 4 * 12
    result = summary["results"][0]
    assert {"xgboost", "seasonal_naive"} <= set(result["scores"])
    lake = _lake(demo_overrides)
    now = datetime.now(UTC)
    rows = lake.read_rows(S.FORECASTS, now - timedelta(hours=1), now + timedelta(hours=1))
    assert rows.height == 48 and set(rows.get_column("model")) == {"xgboost"}
    assert (rows.get_column("p10") <= rows.get_column("p90")).all()
    assert rows.get_column("ts").min() > rows.get_column("issued_at").min() - timedelta(minutes=10)
    promoted = lake.events(name="model.promoted")
    assert promoted.height == 1 and json.loads(promoted["payload"][0])["challenger"] == "v1"
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    mine = [a for a in arts if a.flow_run_id == state.state_details.flow_run_id]
    assert len(mine) == 1 and "xgboost" in str(mine[0].data) and "seasonal_naive" in str(mine[0].data)
    table = json.loads(mine[0].data) if isinstance(mine[0].data, str) else mine[0].data
    numbers = [str(v) for row in table for k, v in row.items() if k not in ("group", "model") and v not in (None, "")]
    assert numbers and all(re.fullmatch(r"-?[\d,]*\.?\d*", n) for n in numbers), numbers
    # read by people: at most 4 significant digits (it printed 16-digit floats)
    assert all(len(n.replace(",", "").replace(".", "").lstrip("-0")) <= 4 for n in numbers), numbers

    # a second retrain on the same data registers v2; it cannot beat v1 by more than nothing
    again = forecast(overrides=[*demo_overrides, "forecast.min_improvement=0.01"])
    decision = again["results"][0]["decision"]
    assert decision["challenger"] == "v2" and decision["promoted"] is False


def test_anomaly_flow_scores_then_only_new_points(demo_overrides: list[str]) -> None:
    from flows.anomaly import anomaly

    first = anomaly(overrides=demo_overrides)
    assert first["series"] == 4 and first["scored"] > 4 * 1000 and first["new_series"] == 4
    assert first["top"] and first["top"][0]["series"].startswith("http_request_duration_seconds_p95")
    lake = _lake(demo_overrides)
    now = datetime.now(UTC)
    assert lake.read_rows(S.ANOMALIES, now - timedelta(days=4), now).height == first["scored"]
    second = anomaly(overrides=demo_overrides)
    assert second["scored"] <= 4 * 2  # at most the minute(s) that completed in between

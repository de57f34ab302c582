"""report(): percentiles, consumers, headroom, alert durations and scaling effect; empty lake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.analytics import report
from tasks.demo import DEMO_INCIDENTS, generate_demo_history, incident_window
from tasks.lake import schema as S
from tasks.lake.lake import Lake

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    lake.write_samples(generate_demo_history(NOW, days=2))
    t = NOW - timedelta(hours=5)
    labels = {"alertname": "HighLatency", "host": "web-1"}
    lake.write_events(
        [
            S.Event("alert.firing", "alert.f1", {"rule": "g/HighLatency", "labels": labels}, ts=t),
            S.Event(
                "alert.resolved", "alert.f1", {"rule": "g/HighLatency", "labels": labels}, ts=t + timedelta(minutes=20)
            ),
            S.Event("alert.firing", "alert.f1", {"rule": "g/HighLatency", "labels": labels}, ts=t + timedelta(hours=1)),
            S.Event(
                "alert.firing",
                "alert.f2",
                {"rule": "g/Down", "labels": {"alertname": "Down"}},
                ts=NOW - timedelta(hours=1),
            ),
            S.Event(
                "scaling.triggered",
                "scaling.web",
                {"id": "d1", "target": "web", "from": 2, "to": 4, "load": 400.0, "mode": "apply", "reason": "p90 load"},
                ts=t,
            ),
            S.Event("action.applied", "scaling.web", {"decision_id": "d1", "target": "web", "to": 4}, ts=t),
            S.Event(
                "scaling.triggered",
                "scaling.web",
                {"id": "d2", "target": "web", "from": 4, "to": 4, "load": 420.0, "mode": "apply"},
                ts=t + timedelta(minutes=30),
            ),
        ]
    )
    return lake


def test_report_sections_on_the_demo(lake: Lake) -> None:
    start, end = NOW - timedelta(days=1), NOW
    r = report(lake, start, end)
    assert not r.empty
    lat = {row["series"]: row for row in r.latency}
    assert len(lat) == 4
    for row in lat.values():
        assert row["p50"] <= row["p95"] <= row["p99"] <= row["max"]
    # web-1's planted latency spike (20 min of 8x) shows in its p99 and max, not in its median
    web1 = lat['http_request_duration_seconds_p95{host="web-1",source="demo"}']
    others = [v for k, v in lat.items() if "web-1" not in k]
    assert web1["p99"] > 3 * max(o["p99"] for o in others)
    assert web1["p50"] < 1.5 * min(o["p50"] for o in others)
    # top consumers: sorted, and the GPU that was idle for 3 h used less than the busy one
    gpu = r.top_consumers["gpu"]
    assert [g["avg"] for g in gpu] == sorted((g["avg"] for g in gpu), reverse=True)
    assert gpu[0]["series"].startswith('gpu_utilization_ratio{gpu="0"')
    assert len(r.top_consumers["cpu"]) == 4
    # headroom: least headroom first, and consistent with p95
    heads = [h["headroom"] for h in r.headroom]
    assert heads == sorted(heads)
    assert all(abs(h["headroom"] - (1 - h["p95"])) < 1e-9 for h in r.headroom)


def test_alert_durations_and_scaling_effect(lake: Lake) -> None:
    r = report(lake, NOW - timedelta(days=1), NOW)
    a = r.alerts
    assert a["firings"] == 3 and a["still_firing"] == 2
    by = {row["alertname"]: row for row in a["by_alert"]}
    # HighLatency: 20 min resolved + 4 h still firing at the end of the range
    assert by["HighLatency"]["firings"] == 2
    assert by["HighLatency"]["total_s"] == 20 * 60 + 4 * 3600
    assert by["Down"]["max_s"] == 3600
    s = r.scaling
    assert [(x["from"], x["to"], x["outcome"]) for x in s] == [(2, 4, "applied"), (4, 4, "hold")]
    assert s[0]["load_per_unit_before"] == 200.0 and s[0]["load_per_unit_after"] == 105.0
    assert r.to_dict()["alerts"]["firings"] == 3


def test_empty_lake_gives_an_empty_report(tmp_path: Path) -> None:
    r = report(Lake(str(tmp_path / "lake")), NOW - timedelta(days=1), NOW)
    assert r.empty
    d = r.to_dict()
    assert d["latency"] == [] and d["top_consumers"] == {} and d["scaling"] == [] and d["alerts"]["firings"] == 0


def test_range_outside_the_data_is_empty(lake: Lake) -> None:
    assert report(lake, NOW - timedelta(days=30), NOW - timedelta(days=29)).empty
    start, _ = incident_window(DEMO_INCIDENTS[0], NOW)
    with pytest.raises(ValueError, match="end"):
        report(lake, start, start)

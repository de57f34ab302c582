"""insights(): a planted latency regression ranks first; saturation, idle, alerts; empty lake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.analytics import AnalyticsError, Finding, insights
from tasks.analytics.insights import change_point
from tasks.demo import generate_demo_history
from tasks.lake import schema as S
from tasks.lake.lake import Lake

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
REGRESSED = 'http_request_duration_seconds_p95{host="web-3",source="demo"}'


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, datetime]:
    """The demo history with web-3's latency doubled over its last 12 hours (a deploy regression)."""
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    frame = generate_demo_history(NOW, days=3)
    end = frame["ts"].max()
    assert isinstance(end, datetime)
    hit = (
        (pl.col("metric") == "http_request_duration_seconds_p95")
        & pl.col("labels").str.contains('"host":"web-3"', literal=True)
        & (pl.col("ts") >= end - timedelta(hours=12))
    )
    lake.write_samples(frame.with_columns(pl.when(hit).then(pl.col("value") * 2).otherwise("value").alias("value")))
    return lake, end + timedelta(minutes=1)


def test_planted_latency_regression_is_ranked_first(planted: tuple[Lake, datetime]) -> None:
    lake, end = planted
    found = insights(lake, end - timedelta(days=3), end, limit=50)
    regressions = [f for f in found if f.kind == "latency_regression"]
    assert regressions, [f.headline for f in found]
    top = regressions[0]
    assert top.series == REGRESSED
    # the numbers behind it: roughly doubled, starting about 12 h before the end
    assert 80 <= top.numbers["change_pct"] <= 120
    changed = datetime.fromisoformat(top.numbers["changed_at"])
    assert abs((end - changed) - timedelta(hours=12)) <= timedelta(hours=2)
    assert "web-3" in top.headline and "regressed" in top.headline
    # it is the strongest finding overall, and results are sorted by score
    assert found[0] is top
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    assert all(0.0 <= f.score <= 1.0 for f in found)


def test_demo_incidents_show_as_saturation_and_idle(planted: tuple[Lake, datetime]) -> None:
    lake, end = planted
    found = insights(lake, end - timedelta(days=3), end, limit=50)
    idle = [f for f in found if f.kind == "idle"]
    assert [f.series for f in idle] == ['gpu_utilization_ratio{gpu="1",host="gpu-1",source="demo"}']
    assert idle[0].numbers["longest_idle_hours"] >= 2
    sat = {f.series: f for f in found if f.kind == "saturation"}
    web2 = sat['host_cpu_utilization_ratio{host="web-2",source="demo"}']
    assert web2.numbers["hours_touched_limit"] >= 1
    # no unaffected host is reported as saturated
    assert not any('host="web-1"' in s or 'host="web-3"' in s for s in sat)


def test_selectors_and_limit_narrow_the_result(planted: tuple[Lake, datetime]) -> None:
    lake, end = planted
    only = insights(lake, end - timedelta(days=3), end, selectors=['{host="web-3"}'], limit=2)
    assert 1 <= len(only) <= 2
    assert all('host="web-3"' in f.series for f in only)
    assert only[0].series == REGRESSED
    assert only[0].to_dict()["kind"] == "latency_regression"


def test_forecast_crossing_is_reported(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ts = [NOW - timedelta(hours=h) for h in range(24, 0, -1)]
    lake.write_samples(
        pl.DataFrame(
            {
                "metric": "disk_utilization_ratio",
                "labels": '{"host":"db-1"}',
                "ts": ts,
                "value": np.linspace(0.5, 0.8, 24),
            }
        ).with_columns(pl.col("ts").cast(S.POLARS_TS))
    )
    sid = lake.catalogue()["series_id"][0]
    targets = [NOW + timedelta(hours=h) for h in range(1, 7)]
    p50 = [0.82, 0.85, 0.88, 0.91, 0.94, 0.97]
    lake.write_rows(
        S.FORECASTS,
        pl.DataFrame(
            {
                "series_id": sid,
                "metric": "disk_utilization_ratio",
                "labels": '{"host":"db-1"}',
                "issued_at": NOW - timedelta(minutes=5),
                "ts": targets,
                "step": list(range(1, 7)),
                "p10": [p - 0.05 for p in p50],
                "p50": p50,
                "p90": [p + 0.05 for p in p50],
                "p99": [p + 0.08 for p in p50],
                "model": "test",
                "version": "1",
            }
        ).with_columns(pl.col("issued_at", "ts").cast(S.POLARS_TS)),
    )
    found = insights(lake, NOW - timedelta(hours=24), NOW)
    sat = [f for f in found if f.kind == "saturation"]
    assert len(sat) == 1
    assert datetime.fromisoformat(sat[0].numbers["forecast_hits_limit_at"]) == targets[3]
    assert "forecast reaches 90%" in sat[0].headline


def _alert(ts: datetime, name: str, alertname: str, instance: str) -> S.Event:
    labels = {"alertname": alertname, "instance": instance}
    return S.Event(name, f"alert.{alertname}.{instance}", {"rule": f"g/{alertname}", "labels": labels}, ts=ts)


def test_noisy_and_flapping_alerts(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    t0 = NOW - timedelta(hours=10)
    events = []
    for i in range(6):  # Flappy fires and resolves within 2 minutes, six times
        events += [
            _alert(t0 + timedelta(minutes=30 * i), "alert.firing", "Flappy", "a"),
            _alert(t0 + timedelta(minutes=30 * i + 2), "alert.resolved", "Flappy", "a"),
        ]
    events += [
        _alert(t0, "alert.firing", "DiskFull", "b"),
        _alert(t0 + timedelta(minutes=5), "alert.firing", "DiskFull", "b"),  # repeat: same episode
        _alert(t0 + timedelta(hours=3), "alert.resolved", "DiskFull", "b"),
    ]
    lake.write_events(events)
    found = insights(lake, NOW - timedelta(days=1), NOW)
    noisy = {f.series: f for f in found if f.kind == "noisy_alert"}
    assert noisy["Flappy"].numbers["firings"] == 6
    assert noisy["DiskFull"].numbers["firings"] == 1
    assert noisy["DiskFull"].numbers["mean_duration_s"] == 3 * 3600
    assert noisy["Flappy"].score > noisy["DiskFull"].score
    flapping = [f for f in found if f.kind == "flapping_alert"]
    assert [f.series for f in flapping] == ["Flappy"]
    assert flapping[0].numbers["short_firings"] == 6


def test_empty_lake_gives_no_findings(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    assert insights(lake, NOW - timedelta(days=7), NOW) == []


def test_bad_input_names_the_argument(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(AnalyticsError, match="end"):
        insights(lake, NOW, NOW - timedelta(hours=1))
    with pytest.raises(AnalyticsError, match="start"):
        insights(lake, datetime(2026, 1, 1), NOW)  # naive on purpose
    with pytest.raises(ValueError, match="limit"):
        insights(lake, NOW - timedelta(hours=1), NOW, limit=0)


def test_change_point_finds_a_step_and_ignores_a_blip() -> None:
    rng = np.random.default_rng(1)
    step = np.r_[rng.normal(10, 0.5, 40), rng.normal(15, 0.5, 20)]
    cp = change_point(step)
    assert cp is not None and abs(cp[0] - 40) <= 1 and cp[1] > 10
    blip = rng.normal(10, 0.5, 60)
    blip[30] = 20
    cp2 = change_point(blip)
    assert cp2 is not None and abs(cp2[1]) < 4
    assert change_point(np.ones(3)) is None
    assert isinstance(Finding("idle", "s", 0.5, "h").to_dict()["numbers"], dict)


def test_the_demo_latency_spike_is_listed_as_a_regression(tmp_path: Path) -> None:
    """``run --demo``'s lake: the planted 20-minute latency spike on web-1 (``tasks.demo``) is a
    latency regression among the top findings, dated to its hour (hourly trends smoothed it away)."""
    from tasks.demo import DEMO_INCIDENTS, incident_window, seed_demo

    lake = Lake(str(tmp_path / "lake"))
    seed_demo(lake, now=NOW, days=3)
    spike = next(i for i in DEMO_INCIDENTS if i.name == "latency_spike")
    last = lake.read_rows(S.SAMPLES, NOW - timedelta(hours=1), NOW + timedelta(minutes=1)).get_column("ts").max()
    assert isinstance(last, datetime)
    begins, ends = incident_window(spike, last)
    found = insights(lake, NOW - timedelta(days=7), NOW + timedelta(minutes=1), limit=10)  # the report's limit
    mine = [f for f in found if f.kind == "latency_regression" and 'host="web-1"' in f.series]
    assert mine, [f.headline for f in found]
    f = mine[0]
    assert f.series.startswith(spike.metric) and "spiked" in f.headline
    at = datetime.fromisoformat(f.numbers["spike_at"])
    assert begins - timedelta(hours=1) < at <= ends  # the hour bucket that holds the spike
    assert f.numbers["times_typical"] >= 2 and f.numbers["hours"] <= 2
    # the unaffected hosts' latency is not called a regression
    assert not any(x.kind == "latency_regression" and ("web-3" in x.series or "worker-1" in x.series) for x in found)

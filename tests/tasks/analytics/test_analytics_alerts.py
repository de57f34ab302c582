"""tasks.analytics.alerts: one pairing of alert.firing/alert.resolved events, whether read as
episodes (insights) or as the report notebooks' events and durations; the alert review (counts,
flapping, MTTA/MTTR) on the planted report history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from report_history import window

from tasks import analytics as A
from tasks.analytics.alerts import pair_firings
from tasks.lake import Lake
from tasks.lake import schema as S

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _ev(lake: Lake, name: str, fp: str, alertname: str, minutes: int) -> None:
    payload = {"rule": f"g/{alertname}", "labels": {"alertname": alertname, "severity": "page"}}
    lake.write_events([S.Event(name, f"cortex.alert.{fp}", payload, ts=T0 + timedelta(minutes=minutes))])


def test_pairing_continues_a_repeated_firing_and_drops_an_orphan_resolve() -> None:
    t = [T0 + timedelta(minutes=m) for m in range(6)]
    got = pair_firings(
        [(False, "a", t[0], "x"), (True, "a", t[1], "first"), (True, "a", t[2], "again"), (False, "a", t[3], "r"),
         (True, "b", t[4], "open")]
    )  # fmt: skip
    assert got == [("first", t[1], t[3]), ("open", t[4], None)]


def test_episodes_and_report_durations_agree(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    _ev(lake, "alert.firing", "f1", "HighLatency", 0)
    _ev(lake, "alert.firing", "f1", "HighLatency", 5)  # same episode
    _ev(lake, "alert.resolved", "f1", "HighLatency", 30)
    _ev(lake, "alert.firing", "f2", "DiskFull", 10)  # still firing
    end = T0 + timedelta(hours=1)
    eps = A.alert_episodes(lake, T0, end)
    durations = A.alert_durations(A.alert_events(lake, T0, end))
    assert [(e.alertname, e.started, e.ended) for e in eps] == [
        ("HighLatency", T0, T0 + timedelta(minutes=30)),
        ("DiskFull", T0 + timedelta(minutes=10), None),
    ]
    assert durations.select("alertname", "fingerprint", "fired", "resolved", "duration_s").rows() == [
        ("HighLatency", "f1", T0, T0 + timedelta(minutes=30), 1800.0),
        ("DiskFull", "f2", T0 + timedelta(minutes=10), None, None),
    ]
    assert A.durations_mean(durations) == 1800.0


def test_alert_review_counts_flapping_mttr_and_mtta(report_lake: tuple[Lake, str]) -> None:
    lake, state_path = report_lake
    events = A.alert_events(lake, *window())
    assert events.height == 9
    durations = A.alert_durations(events)
    assert durations.filter(pl.col("alertname") == "Flappy").get_column("duration_s").to_list() == [300.0] * 3
    still = durations.filter(pl.col("alertname") == "StillFiring").row(0, named=True)
    assert still["resolved"] is None and still["duration_s"] is None
    review = A.alert_review(events, A.acks_from_state(state_path))
    by = {r["alertname"]: r for r in review.iter_rows(named=True)}
    assert review.get_column("alertname")[0] == "Flappy"  # noisiest first
    assert by["Flappy"]["firings"] == 3 and by["Flappy"]["flapping"] is True and by["Flappy"]["alerts"] == 1
    assert by["HighLatency"]["mttr_s"] == 600.0 and by["HighLatency"]["mtta_s"] == 120.0
    assert by["HighLatency"]["flapping"] is False and by["Flappy"]["mtta_s"] is None
    assert by["StillFiring"]["mttr_s"] is None
    assert A.acks_from_state(None) == {} and A.acks_from_state(str(Path(state_path).with_name("nope.duckdb"))) == {}


def test_an_empty_lake_has_an_empty_review(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    assert A.alert_review(A.alert_events(lake, *window())).height == 0

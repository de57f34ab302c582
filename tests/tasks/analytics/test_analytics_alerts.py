"""tasks.analytics.alerts: one pairing of alert.firing/alert.resolved events, whether read as
episodes (insights) or as the report notebooks' events and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks import analytics as A
from tasks.analytics.alerts import pair_firings
from tasks.analytics.key_numbers import REPORTS
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.reports import NOTEBOOKS

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


def test_every_report_notebook_has_key_numbers() -> None:
    assert set(REPORTS) == set(NOTEBOOKS)

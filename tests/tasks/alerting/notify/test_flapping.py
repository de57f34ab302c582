"""Flapping: hysteresis of the detector, and the dispatcher holding a flapping alert with two notices."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.dispatch import Dispatcher, DispatchSettings, RouteSettings
from tasks.alerting.notify.flapping import FlapSettings, FlapState, observe

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def test_observe_hysteresis_and_forgetting():
    s = FlapSettings()  # 4 changes in 1h start, below 2 stop
    st, events = None, []
    statuses = {0: "firing", 5: "resolved", 10: "firing", 15: "resolved", 20: "firing"}
    for m in range(0, 120):
        status = statuses.get(m)
        st, ev = observe(st, status or (st.status if st else None), at(m), s)  # type: ignore[arg-type]
        if ev:
            events.append((m, ev))
    # 4th change at 20 → flapping; at 70 the window still holds 15 and 20 (2 changes: not below 2);
    # at 75 only 20 is left → settled.
    assert events == [(20, "started"), (75, "stopped")]
    assert st is not None and st.status == "firing" and not st.flapping
    # gone from the input with nothing in the window: forgotten; with a recent change: remembered
    assert observe(FlapState("firing"), None, at(200), s) == (None, None)
    kept, _ = observe(FlapState("firing", [at(190)]), None, at(200), s)
    assert kept == FlapState("firing", [at(190)])
    assert FlapState.from_dict(kept.to_dict()) == kept


def test_settings_errors_name_the_field():
    with pytest.raises(ValueError, match="flapping.window"):
        FlapSettings.from_mapping({"window": "an hour"})
    with pytest.raises(ValueError, match="flapping.stop_changes"):
        FlapSettings.from_mapping({"start_changes": 3, "stop_changes": 5})
    with pytest.raises(ValueError, match=r"flapping: unknown field\(s\) high"):
        FlapSettings.from_mapping({"high": 3})
    assert FlapSettings.from_mapping({"window": "30m", "start_changes": 6}).window == timedelta(minutes=30)


class OneRoute:
    def match(self, labels: Mapping[str, str]) -> list[RouteSettings]:
        return [RouteSettings("root", "team", group_by=("alertname",))]


def test_flapping_alert_is_held_with_one_notice_each_way():
    changes = [0, 5, 10, 15, 20]  # firing, resolved, firing, resolved, firing (and stays firing)

    def alert(m: int) -> Alert:
        k = max(i for i, c in enumerate(changes) if c <= m)
        if k % 2 == 0:
            return Alert({"alertname": "Hi"}, starts_at=at(changes[k]))
        return Alert({"alertname": "Hi"}, status="resolved", starts_at=at(changes[k - 1]), ends_at=at(changes[k]))

    steady = Alert({"alertname": "Hi", "instance": "steady"}, starts_at=at(0))
    d = Dispatcher(OneRoute())
    st, sent = None, []
    for m in range(0, 90):
        ns, st = d.tick([alert(m), steady], at(m), st)
        sent += [(m, n) for n in ns]
    got = [(m, n.reason, [f"{a.labels.get('instance', '-')}:{a.status}" for a in n.alerts]) for m, n in sent]
    assert got == [
        (1, "initial", ["steady:firing", "-:firing"]),
        (6, "update", ["steady:firing", "-:resolved"]),
        (11, "update", ["steady:firing", "-:firing"]),
        (16, "update", ["steady:firing", "-:resolved"]),
        (20, "flapping", ["-:firing"]),  # the notice, at once; its own changes are held from here
        (75, "flapping", ["-:firing"]),  # settled (changes in the last hour fell below 2)
        (76, "update", ["steady:firing", "-:firing"]),  # rejoins its group with its current state
    ]
    assert (
        sent[4][1].notes[0].startswith("flapping: held — Hi ") and "changed state 4 times in 1h" in sent[4][1].notes[0]
    )
    assert sent[5][1].notes[0].endswith("is firing; notifications resume")
    # settled: nothing is held any more
    assert st is not None and st.stats["held"] == 0


def test_flapping_disabled():
    d = Dispatcher(OneRoute(), DispatchSettings(flapping=FlapSettings(enabled=False)))
    st = None
    reasons = []
    for m in range(0, 40):
        status = "firing" if (m // 3) % 2 == 0 else "resolved"
        a = Alert({"alertname": "Hi"}, status=status, starts_at=at(0), ends_at=None if status == "firing" else at(m))  # type: ignore[arg-type]
        ns, st = d.tick([a], at(m), st)
        reasons += [n.reason for n in ns]
    assert "flapping" not in reasons and st is not None and st.flaps == {}

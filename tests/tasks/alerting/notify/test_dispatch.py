"""Dispatcher timelines worked by hand, minute ticks, against Alertmanager 0.25's semantics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.dispatch import (
    Dispatcher,
    DispatchSettings,
    DispatchState,
    DispatchStore,
    Notification,
    RouteSettings,
    group_key,
)
from tasks.state import State

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@dataclass
class Router:
    """Every alert goes to each route whose ``match`` label subset it carries."""

    routes: Sequence[tuple[Mapping[str, str], RouteSettings]]

    def match(self, labels: Mapping[str, str]) -> list[RouteSettings]:
        return [r for sel, r in self.routes if all(labels.get(k) == v for k, v in sel.items())]


def one_route(**kw: object) -> Router:
    return Router([({}, RouteSettings("root", "team", group_by=("alertname",), **kw))])  # type: ignore[arg-type]


def firing(name: str, start: float, **labels: str) -> Alert:
    return Alert({"alertname": name, **labels}, starts_at=at(start))


def resolved(name: str, start: float, end: float, **labels: str) -> Alert:
    return Alert({"alertname": name, **labels}, status="resolved", starts_at=at(start), ends_at=at(end))


def run(
    d: Dispatcher,
    timeline: Callable[[float], list[Alert]],
    minutes: Sequence[float],
    state: DispatchState | None = None,
    **kw: object,
) -> tuple[list[tuple[float, Notification]], DispatchState]:
    out: list[tuple[float, Notification]] = []
    st = state
    for m in minutes:
        ns, st = d.tick(timeline(m), at(m), st, **kw)  # type: ignore[arg-type]
        out += [(m, n) for n in ns]
    assert st is not None
    return out, st


def summary(out: list[tuple[float, Notification]]) -> list[tuple[float, str, str, list[str]]]:
    """(minute, receiver, reason, alert names with status) per notification."""
    return [
        (m, n.receiver, n.reason, [f"{a.labels.get('instance', a.name)}:{a.status}" for a in n.alerts]) for m, n in out
    ]


def test_group_wait_flushes_next_tick_then_repeat_after_interval_rounding():
    # for: 0 alert starting at the tick; group_wait 30s, group_interval 5m, repeat 4h.
    d = Dispatcher(one_route())
    out, st = run(d, lambda m: [firing("Hi", 0, instance="a")], range(0, 252))
    # Initial at 1 (first tick past 0:30); flushes at 6, 11, … 241 (= 1 + 4h exactly: not *past* 4h,
    # DedupStage uses a strict Before), so the repeat goes out at the 246-minute flush, as in Alertmanager.
    assert summary(out) == [(1, "team", "initial", ["a:firing"]), (246, "team", "repeat", ["a:firing"])]
    g = st.groups[group_key(RouteSettings("root", "team", group_by=("alertname",)), {"alertname": "Hi"})]
    # The schedule stays anchored at 0:30 + k·5m (due 250:30, flushed at tick 251): jitter cannot drift it.
    assert g.next_flush == at(255.5)
    assert out[0][1].group_key == 'root:{alertname="Hi"}'
    assert out[0][1].group_labels == {"alertname": "Hi"}


def test_group_wait_longer_than_a_tick_and_old_alert_flushes_at_once():
    d = Dispatcher(one_route(group_wait_s=150))
    out, _ = run(d, lambda m: [firing("Hi", 0, instance="a")] if m >= 0 else [], range(0, 5))
    assert [m for m, _ in out] == [3]  # 0:00 + 2m30s is due at the 3-minute tick
    # An alert that started long before the group was created: flush at the first tick (aggrGroup.insert).
    out, _ = run(d, lambda m: [firing("Old", -30, instance="a")], range(0, 5))
    assert [m for m, _ in out] == [0]


def test_new_alert_joins_at_group_interval_and_one_message_per_group():
    d = Dispatcher(one_route())

    def tl(m: float) -> list[Alert]:
        alerts = [firing("Hi", 0, instance="a")]
        if m >= 2:
            alerts.append(firing("Hi", 2, instance="b"))
            alerts.append(firing("Hi", 2, instance="c"))
        return alerts

    out, _ = run(d, tl, range(0, 12))
    assert summary(out) == [
        (1, "team", "initial", ["a:firing"]),
        (6, "team", "update", ["a:firing", "b:firing", "c:firing"]),  # one message, three alerts
    ]


def test_resolved_with_and_without_send_resolved():
    def tl(m: float) -> list[Alert]:
        a = firing("Hi", 0, instance="a")
        b = firing("Hi", 0, instance="b") if m < 3 else resolved("Hi", 0, 3, instance="b")
        if m >= 8:
            a = resolved("Hi", 0, 8, instance="a")
        return [a, b]

    minutes = range(0, 40)
    out, _ = run(Dispatcher(one_route()), tl, minutes, send_resolved=True)
    assert summary(out) == [
        (1, "team", "initial", ["a:firing", "b:firing"]),
        (6, "team", "update", ["a:firing", "b:resolved"]),  # resolved alert appeared
        (11, "team", "update", ["a:resolved"]),  # b already sent and removed from the group
    ]
    out, st = run(Dispatcher(one_route()), tl, minutes, send_resolved={"team": False})
    # Without send_resolved a partial resolve does not notify; all-resolved is logged, not sent.
    assert summary(out) == [(1, "team", "initial", ["a:firing", "b:firing"])]
    g = next(iter(st.groups.values()))
    assert g.nflog["team"].firing == [] and g.nflog["team"].ts == at(11)


def test_group_destroyed_after_all_resolved_restarts_group_wait():
    def tl(m: float) -> list[Alert]:
        out = [firing("Hi", 0, instance="a") if m < 3 else resolved("Hi", 0, 3, instance="a")]
        if m >= 13:
            out.append(firing("Hi", 13, instance="b"))
        return out

    out, _ = run(Dispatcher(one_route()), tl, range(0, 20))
    # a resolved → flush at 6 sends it and empties the group; b at 13 starts a new group: group_wait
    # (not the old group_interval schedule, which would have said 16) → 14, and "initial" again.
    assert summary(out) == [
        (1, "team", "initial", ["a:firing"]),
        (6, "team", "update", ["a:resolved"]),
        (14, "team", "initial", ["b:firing"]),
    ]


def test_catch_up_after_gap_sends_once():
    d = Dispatcher(one_route())
    minutes = [*range(0, 10), 10 * 60, 10 * 60 + 1, 10 * 60 + 2, 10 * 60 + 5]
    out, st = run(d, lambda m: [firing("Hi", 0, instance="a")], minutes)
    assert summary(out) == [(1, "team", "initial", ["a:firing"]), (600, "team", "repeat", ["a:firing"])]
    # Rescheduled from the late flush (600 + 5m), not from the old schedule; 605 flushed (nothing new).
    assert next(iter(st.groups.values())).next_flush == at(610)


def test_suppressed_left_out_and_counted_muted_sends_nothing():
    d = Dispatcher(one_route())
    both = [firing("Hi", 0, instance="a"), firing("Hi", 0, instance="b")]
    b_fp = both[1].fingerprint
    out, st = run(d, lambda m: both, range(0, 2), suppressed={b_fp})
    assert summary(out) == [(1, "team", "initial", ["a:firing"])]
    assert "1 alert(s) suppressed (silenced or inhibited)" in out[0][1].notes
    assert st.stats["suppressed"] == 1
    out, _ = run(d, lambda m: both, range(0, 3), suppressed={a.fingerprint for a in both})
    assert out == []
    # Muted: nothing while muted; the first flush after the mute window sends the initial message.
    out, _ = run(d, lambda m: both, range(0, 12), muted=lambda route, t: t < at(5))
    assert summary(out) == [(6, "team", "initial", ["a:firing", "b:firing"])]


def test_group_by_and_continue_routes():
    r = Router(
        [
            ({}, RouteSettings("db", "dba", group_by=("service",))),
            ({"severity": "page"}, RouteSettings("pager", "pager", group_by_all=True, group_wait_s=0)),
        ]
    )
    alerts = [
        firing("Slow", 0, service="pg", instance="1", severity="page"),
        firing("Down", 0, service="pg", instance="2"),
        firing("Slow", 0, service="redis", instance="3"),
    ]
    out, _ = run(Dispatcher(r), lambda m: alerts, range(0, 2))
    got = sorted((n.receiver, n.group_key, len(n.alerts)) for _, n in out)
    assert got == [
        ("dba", 'db:{service="pg"}', 2),
        ("dba", 'db:{service="redis"}', 1),
        ("pager", 'pager:{alertname="Slow", instance="1", service="pg", severity="page"}', 1),
    ]
    # group_wait 0 → the pager route flushes at the tick the alert arrives
    assert [m for m, n in out if n.receiver == "pager"] == [0]


def test_state_round_trip_through_state_db_equals_no_restart(tmp_path):
    settings = DispatchSettings.from_mapping(
        {
            "rate_limits": {"default": {"max_messages": 2, "per": "10m"}},
            "escalation": {"team": {"name": "p", "steps": [{"after": "0m", "receiver": "team"},
                                                           {"after": "7m", "receiver": "boss"}]}},
        }
    )  # fmt: skip
    d = Dispatcher(one_route(), settings)

    def tl(m: float) -> list[Alert]:
        out = [firing("Hi", 0, instance="a")] + [firing(f"G{k}", 3 * k, instance="x") for k in range(int(m) // 3)]
        if m >= 20:
            out[0] = resolved("Hi", 0, 20, instance="a")
        return out

    minutes = range(0, 45)
    plain, _ = run(d, tl, minutes)
    store = DispatchStore(State(str(tmp_path / "state.duckdb")))
    restarted: list[tuple[float, Notification]] = []
    for m in minutes:
        st = store.load()  # a fresh process each tick: nothing but the state DB carries over
        ns, st = Dispatcher(one_route(), settings).tick(tl(m), at(m), st)
        store.save(st)
        restarted += [(m, n) for n in ns]
    assert [(m, n.to_dict()) for m, n in restarted] == [(m, n.to_dict()) for m, n in plain]
    assert len(plain) > 5 and {n.reason for _, n in plain} >= {"initial", "escalation", "update"}
    assert store.load().to_dict() == st.to_dict()


def test_store_writes_only_changed_rows(tmp_path):
    store = DispatchStore(State(str(tmp_path / "state.duckdb")))
    d = Dispatcher(one_route())
    alerts = [firing(f"A{i}", 0, instance="a") for i in range(5)]
    _, st = d.tick(alerts, at(0))
    assert store.save(st) == 11  # five groups, five flap histories, the meta row
    _, st = d.tick(alerts, at(1), st)  # all five flush
    assert store.save(st) == 6
    _, st = d.tick(alerts, at(2), st)  # nothing moved but the tick
    assert store.save(st) == 1
    _, st = d.tick([], at(3), st)  # alerts gone: groups kept only for their notification log,
    assert store.save(st) == 11  # flap histories of never-changed alerts deleted
    assert all(g.next_flush is None and g.nflog for g in store.load().groups.values())


def test_notification_round_trip_and_bad_input():
    n = Notification("team", "k", {"a": "b"}, [firing("Hi", 0)], "initial", ["x"], at(1))
    assert Notification.from_dict(n.to_dict()) == n
    with pytest.raises(ValueError, match="notification.reason"):
        Notification.from_dict({**n.to_dict(), "reason": "because"})
    d = Dispatcher(one_route())
    _, st = d.tick([], at(5))
    with pytest.raises(ValueError, match="^t: .* is before the previous tick"):
        d.tick([], at(4), st)
    with pytest.raises(ValueError, match="^t: naive datetime"):
        d.tick([], datetime(2025, 1, 1))
    with pytest.raises(ValueError, match=r"dispatch: unknown field\(s\) escalations"):
        DispatchSettings.from_mapping({"escalations": {}})
    with pytest.raises(ValueError, match="dispatch.nflog_retention"):
        DispatchSettings.from_mapping({"nflog_retention": "soon"})


def test_tick_does_not_modify_given_state():
    d = Dispatcher(one_route())
    _, st = d.tick([firing("Hi", 0)], at(0))
    before = st.to_dict()
    d.tick([firing("Hi", 0)], at(1), st)
    assert st.to_dict() == before

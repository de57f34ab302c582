"""Acks and manual resolves: the store in a real state DB, and their effect on dispatcher timelines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.acks import Ack, AckStore, ManualResolve, active_acks
from tasks.alerting.notify.dispatch import Dispatcher, RouteSettings
from tasks.state import State

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


class OneRoute:
    def match(self, labels: Mapping[str, str]) -> list[RouteSettings]:
        return [RouteSettings("root", "team", group_by=("alertname",))]


def alert(start: float = 0, status: str = "firing", end: float | None = None) -> Alert:
    return Alert(
        {"alertname": "Hi", "instance": "a"},
        status=status,  # type: ignore[arg-type]
        starts_at=at(start),
        ends_at=at(end) if end is not None else None,
    )


FP = alert().fingerprint


def test_store_add_list_expire_unack(tmp_path):
    store = AckStore(State(str(tmp_path / "s.duckdb")))
    a = store.ack(FP, "ana", at=at(0), comment="looking")
    assert a.expires_at == at(30)  # default 30 minutes
    store.ack("ffff000011112222", "bo", at=at(1), for_=timedelta(hours=2))
    assert [x.fingerprint for x in store.acks()] == sorted([FP, "ffff000011112222"])
    assert {x.by for x in store.acks(t=at(29))} == {"ana", "bo"}
    assert {x.by for x in store.acks(t=at(30))} == {"bo"}
    assert [x.by for x in store.expire(at(31))] == ["ana"]
    assert [x.by for x in store.acks()] == ["bo"]
    assert store.unack("ffff000011112222") is True and store.unack("ffff000011112222") is False
    # re-ack replaces
    store.ack(FP, "ana", at=at(40))
    store.ack(FP, "cy", at=at(41), for_=timedelta(minutes=5))
    assert [(x.by, x.expires_at) for x in store.acks()] == [("cy", at(46))]


def test_store_resolves(tmp_path):
    store = AckStore(State(str(tmp_path / "s.duckdb")))
    store.resolve(FP, "ana", "fixed the disk", at=at(3))
    assert store.resolves() == [ManualResolve(FP, "ana", "fixed the disk", at(3))]
    assert store.prune_resolves(at(2)) == 0
    assert store.prune_resolves(at(4)) == 1 and store.resolves() == []


def test_bad_acks_and_resolves_name_the_field():
    with pytest.raises(ValueError, match="ack.by"):
        Ack.new(FP, "", at=at(0))
    with pytest.raises(ValueError, match="ack.for"):
        Ack.new(FP, "ana", at=at(0), for_=timedelta(0))
    with pytest.raises(ValueError, match="ack.acked_at: naive"):
        Ack.new(FP, "ana", at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="resolve.reason"):
        ManualResolve(FP, "ana", "  ", at(0))
    a = Ack.new(FP, "ana", at=at(0))
    assert Ack.from_dict(a.to_dict()) == a
    assert active_acks([a, Ack.new(FP, "bo", at=at(1), for_=timedelta(hours=1))], at(2))[FP].by == "bo"


def test_ack_stops_repeat_and_new_episode_is_not_covered():
    d = Dispatcher(OneRoute())
    ack = Ack.new(FP, "ana", at=at(10), for_=timedelta(hours=8))
    st = None
    sent = []
    for m in range(0, 300):
        ns, st = d.tick([alert()], at(m), st, acks=[ack])
        sent += [(m, n.reason) for n in ns]
    assert sent == [(1, "initial")]  # without the ack: a repeat at 246 (see test_dispatch)
    # The rule resolves at 300 and fires again at 310: a new episode the old ack does not cover.
    for m in range(300, 330):
        a = alert(0, "resolved", 300) if m < 310 else alert(310)
        ns, st = d.tick([a], at(m), st, acks=[ack])
        sent += [(m, n.reason) for n in ns]
    assert sent == [(1, "initial"), (301, "update"), (311, "initial")]


def test_ack_expiry_retriggers_at_once_with_a_note(tmp_path):
    store = AckStore(State(str(tmp_path / "s.duckdb")), default_for=timedelta(minutes=30))
    d = Dispatcher(OneRoute())
    st = None
    sent = []
    for m in range(0, 80):
        if m == 10:
            store.ack(FP, "ana", at=at(m), comment="on it")
        store.expire(at(m))  # the flow expires acks before each tick: the dispatcher still knows who acked
        ns, st = d.tick([alert()], at(m), st, acks=store.acks())
        sent += [(m, n) for n in ns]
    assert [(m, n.reason) for m, n in sent] == [(1, "initial"), (40, "repeat")]
    assert sent[1][1].notes == [f"ack expired: Hi {FP} (acked by ana) is still firing"]
    # An ack in force is shown in messages that go out anyway
    ns, _ = d.tick([alert(), Alert({"alertname": "Hi", "instance": "b"}, starts_at=at(80))], at(81), st,
                   acks=[Ack.new(FP, "bo", at=at(79), comment="db")])  # fmt: skip
    assert any(n.startswith(f"acked: Hi {FP} by bo until") and n.endswith("(db)") for n in ns[0].notes)


def test_manual_resolve_sent_once_and_quiet_for_the_episode():
    d = Dispatcher(OneRoute())
    res = ManualResolve(FP, "ana", "false alarm", at(10))
    st = None
    sent = []
    for m in range(0, 400):
        firing_again = alert(350) if m >= 350 else alert(0)  # the rule keeps firing; a new episode at 350
        ns, st = d.tick([firing_again], at(m), st, resolves=[res] if m >= 10 else [], send_resolved=False)
        sent += [(m, n) for n in ns]
    assert [(m, n.reason, [a.status for a in n.alerts]) for m, n in sent] == [
        (1, "initial", ["firing"]),
        (11, "update", ["resolved"]),  # sent as resolved even though the receiver has no send_resolved
        (351, "initial", ["firing"]),  # a new firing episode notifies again
    ]
    assert sent[1][1].alerts[0].ends_at == at(10)
    assert sent[1][1].notes == [f"resolved by hand: Hi {FP} by ana at {at(10).isoformat()}: false alarm"]

"""Escalation policies: parsing with field-named errors, due steps, and timing in the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.acks import Ack
from tasks.alerting.notify.dispatch import Dispatcher, DispatchSettings, RouteSettings
from tasks.alerting.notify.escalation import EscalationStep, due_steps, parse_policies, parse_policy

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


class OneRoute:
    def match(self, labels: Mapping[str, str]) -> list[RouteSettings]:
        return [RouteSettings("root", "team", group_by=("alertname",))]


POLICY = {
    "name": "db",
    "steps": [
        {"after": "0m", "receiver": "team"},
        {"after": "15m", "receiver": "lead"},
        {"after": "30m", "receiver": "cto"},
    ],
}


ONE = [{"after": "0m", "receiver": "a"}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"steps": []}, r"escalation.name: required"),
        ({"name": "p"}, r"escalation\[p\].steps: required"),
        ({"name": "p", "steps": [{"after": "5 min", "receiver": "a"}]}, r"escalation\[p\].steps\[0\].after: not a"),
        ({"name": "p", "steps": [{"receiver": "a"}]}, r"steps\[0\].after: required"),
        ({"name": "p", "steps": [{"after": "0m"}]}, r"steps\[0\].receiver: required"),
        ({"name": "p", "steps": [{"after": "5m", "receiver": "a"}, {"after": "5m", "receiver": "b"}]},
         r"steps\[1\].after: must be later"),
        ({"name": "p", "steps": [{"after": "0m", "receiver": "a", "then": 1}]}, r"steps\[0\]: unknown field\(s\) then"),
        ({"name": "p", "steps": ONE, "repeat": "yes"}, r"escalation\[p\].repeat: expected"),
        ({"name": "p", "steps": ONE, "repeat": True}, r"repeat_after: a repeating policy"),
        ({"name": "p", "steps": ONE, "every": 1}, r"unknown field\(s\) every"),
    ],
)  # fmt: skip
def test_parse_errors_name_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(raw)


def test_parse_and_cycle():
    p = parse_policy({**POLICY, "repeat": True})
    assert p.steps[1] == EscalationStep(timedelta(minutes=15), "lead")
    assert p.cycle == timedelta(minutes=45)  # last step + the gap before it
    assert parse_policy({**POLICY, "repeat": True, "repeat_after": "1h"}).cycle == timedelta(minutes=90)
    with pytest.raises(ValueError, match=r"dispatch.escalation.team.steps\[0\].after"):
        parse_policies({"team": {"name": "x", "steps": [{"after": "-1m", "receiver": "a"}]}}, "dispatch.escalation")


def test_due_steps_catch_up_sends_each_receiver_once_from_the_newest_cycle():
    p = parse_policy({**POLICY, "repeat": True})  # cycle 45m
    start = at(0)
    assert due_steps(p, start, 0, at(14)) == ([], 0)
    assert due_steps(p, start, 0, at(15)) == ([(1, p.steps[1])], 1)
    # After a 2-hour gap: positions up to cycle 2 (90..120m) are due; only cycle 2's steps go, once each.
    steps, pos = due_steps(p, start, 1, at(121))
    assert pos == 8 and [s.receiver for _, s in steps] == ["team", "lead", "cto"]
    once = parse_policy(POLICY)
    assert due_steps(once, start, 2, at(500)) == ([], 2)  # no repeat: done after the last step


def run(settings: DispatchSettings, minutes: range, acks_at: dict[int, Ack] | None = None, resolve_at: int = 10**9):
    d = Dispatcher(OneRoute(), settings)
    st, sent, acks = None, [], []
    for m in minutes:
        if acks_at and m in acks_at:
            acks.append(acks_at[m])
        a = Alert({"alertname": "Hi"}, starts_at=at(0))
        if m >= resolve_at:
            a = Alert({"alertname": "Hi"}, status="resolved", starts_at=at(0), ends_at=at(resolve_at))
        ns, st = d.tick([a], at(m), st, acks=acks)
        sent += [(m, n.receiver, n.reason) for n in ns]
    return sent


def test_escalation_timing_ack_and_resolve_stop_it():
    settings = DispatchSettings(escalation=parse_policies({"team": POLICY}))
    # First told at 1 (group_wait): lead at 1+15, cto at 1+30; step 0 is the team's own initial message.
    assert run(settings, range(0, 60)) == [
        (1, "team", "initial"),
        (16, "lead", "escalation"),
        (31, "cto", "escalation"),
    ]
    fp = Alert({"alertname": "Hi"}).fingerprint
    acked = run(settings, range(0, 60), {20: Ack.new(fp, "lead", at=at(20), for_=timedelta(hours=2))})
    assert acked == [(1, "team", "initial"), (16, "lead", "escalation")]
    resolved = run(settings, range(0, 60), resolve_at=25)
    assert resolved == [(1, "team", "initial"), (16, "lead", "escalation"), (26, "team", "update")]


def test_escalation_note_and_alerts():
    settings = DispatchSettings(escalation=parse_policies({"team": {**POLICY, "repeat": True}}))
    d = Dispatcher(OneRoute(), settings)
    st = None
    out = []
    for m in range(0, 100):
        ns, st = d.tick([Alert({"alertname": "Hi"}, starts_at=at(0))], at(m), st)
        out += [(m, n) for n in ns if n.reason == "escalation"]
    # cycle 45m from 1: lead 16, cto 31, team 46, lead 61, cto 76, team 91
    assert [(m, n.receiver) for m, n in out] == [(16, "lead"), (31, "cto"), (46, "team"), (61, "lead"), (76, "cto"),
                                                  (91, "team")]  # fmt: skip
    assert out[0][1].notes == ["escalation: step 2/3 of policy db, unacknowledged for 15m"]
    assert [a.name for a in out[0][1].alerts] == ["Hi"]

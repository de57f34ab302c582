"""Alert lifecycle against timelines worked out by hand from Prometheus 2.42's rules/alerting.go."""

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.rules.lifecycle import (
    AlertInstance,
    AlertState,
    LifecycleError,
    alert_labels,
    dump_instances,
    load_instances,
    replay,
    step,
)
from tasks.alerting.rules.promql import parse
from tasks.alerting.rules.rule_files import Rule
from tasks.lake import Lake, Sample

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
S1 = {"__name__": "up", "job": "api"}


def rule(for_s=0.0, keep_s=0.0, labels=None, annotations=None, expr="up == 0"):
    return Rule(
        expr=expr,
        expr_ast=parse(expr),
        alert="Down",
        for_s=for_s,
        keep_firing_for_s=keep_s,
        labels=labels or {},
        annotations=annotations or {},
    )


def run(r, timeline, minutes=None, value=1.0):
    """Step ``r`` once a minute; ``timeline[i]`` says whether the series is in the result at minute i.

    Returns per minute (state or None, transition kinds)."""
    state: list[AlertInstance] = []
    out = []
    for i, present in enumerate(timeline):
        state, trans = step(r, [(S1, value)] if present else [], T0 + i * M, state)
        assert len(state) <= 1
        out.append((state[0].state.value if state else None, [tr.kind for tr in trans]))
    return out, state


def test_for_5m_pending_then_firing():
    out, state = run(rule(for_s=300), [True] * 7)
    assert [s for s, _ in out] == ["pending"] * 5 + ["firing"] * 2
    assert out[0][1] == ["pending"]
    assert out[5][1] == ["firing"]
    assert all(not tr for _, tr in out[1:5] + out[6:])
    a = state[0]
    assert a.active_at == T0 and a.fired_at == T0 + 5 * M
    assert a.labels == {"alertname": "Down", "job": "api"}  # __name__ dropped, alertname added


def test_for_zero_fires_at_once():
    out, state = run(rule(), [True, True])
    assert out == [("firing", ["pending", "firing"]), ("firing", [])]
    assert state[0].fired_at == T0 == state[0].active_at


def test_flapping_drops_pending_and_restarts_the_clock():
    # present 0..3, gone at 4 (pending dropped, no resolve), back at 5: active_at restarts at 5
    out, state = run(rule(for_s=300), [True] * 4 + [False] + [True] * 6)
    states = [s for s, _ in out]
    assert states == ["pending"] * 4 + [None] + ["pending"] * 5 + ["firing"]
    assert out[4][1] == []  # a pending alert that goes away is not resolved
    assert out[5][1] == ["pending"]
    assert state[0].active_at == T0 + 5 * M and state[0].fired_at == T0 + 10 * M


def test_resolve_without_keep_firing_and_retention_15m():
    # fires at 0, gone from 1: resolved at 1, kept while t - resolved_at <= 15m (until minute 16), gone at 17
    out, _state = run(rule(), [True] + [False] * 17)
    assert out[1] == ("inactive", ["resolved"])
    assert [s for s, _ in out[1:17]] == ["inactive"] * 16
    assert out[17] == (None, [])
    assert all(tr == [] for _, tr in out[2:])


def test_resolved_alert_kept_then_series_returns_is_a_new_alert():
    r = rule(for_s=120)
    state: list[AlertInstance] = []
    timeline = [True, True, True, False, True]
    for i, present in enumerate(timeline):
        state, trans = step(r, [(S1, 1.0)] if present else [], T0 + i * M, state)
    a = state[0]
    assert a.state is AlertState.PENDING and a.active_at == T0 + 4 * M
    assert a.fired_at is None and a.resolved_at is None
    assert [tr.kind for tr in trans] == ["pending"]


def test_keep_firing_for_holds_then_resolves():
    # keep_firing_for 3m: firing at 0..1, series gone from 2 → keep_firing_since=2,
    # still firing at 2,3,4 (t - since < 3m), resolved at 5.
    out, state = run(rule(keep_s=180), [True, True] + [False] * 5)
    assert [s for s, _ in out] == ["firing"] * 5 + ["inactive"] * 2
    assert out[5][1] == ["resolved"]
    a = state[0]
    assert a.resolved_at == T0 + 5 * M and a.keep_firing_since == T0 + 2 * M
    assert a.last_seen == T0 + 1 * M and a.fired_at == T0


def test_keep_firing_since_cleared_when_series_returns():
    r = rule(keep_s=180)
    state: list[AlertInstance] = []
    for i, present in enumerate([True, False, False, True, False, False, False]):
        state, _ = step(r, [(S1, 1.0)] if present else [], T0 + i * M, state)
        if i == 2:
            assert state[0].keep_firing_since == T0 + 1 * M
        if i == 3:
            assert state[0].keep_firing_since is None and state[0].state is AlertState.FIRING
    # gone again from 4: since=4, firing at 4,5,6 (6-4 = 2m < 3m)
    assert state[0].state is AlertState.FIRING and state[0].keep_firing_since == T0 + 4 * M
    assert state[0].active_at == T0  # one alert all along


def test_keep_firing_does_not_apply_to_pending():
    out, _ = run(rule(for_s=300, keep_s=600), [True, True, False])
    assert out[2] == (None, [])


def test_templated_labels_and_annotations_with_humanize():
    r = rule(
        labels={"severity": "page", "instance": "{{ $labels.job }}-x", "job": ""},
        annotations={
            "summary": "{{ $labels.job }} at {{ $value | humanize }}",
            "raw": "{{ $value }} {{ $labels.__name__ }}",
        },
    )
    state, trans = step(r, [(S1, 1234567.0)], T0, [])
    a = state[0]
    # an empty templated label deletes it (labels.Builder.Set); alertname set last
    assert a.labels == {"alertname": "Down", "instance": "api-x", "severity": "page"}
    assert a.annotations == {"summary": "api at 1.235M", "raw": "1.234567e+06 up"}
    assert a.last_value == 1234567.0
    # a firing alert takes the new value and re-rendered annotations, keeps its identity
    state, trans = step(r, [(S1, 0.5)], T0 + M, state)
    assert trans == [] and state[0].annotations["summary"] == "api at 500m" and state[0].last_value == 0.5


def test_identity_is_rendered_label_set():
    # two series whose templated labels coincide → Prometheus's error, state untouched
    r = rule(labels={"job": "same"})
    with pytest.raises(LifecycleError, match="same labelset"):
        step(r, [({"job": "a"}, 1.0), ({"job": "b"}, 1.0)], T0, [])
    # rule label overriding a series label changes identity; a value-templated label makes a new alert per value
    r2 = rule(for_s=60, labels={"v": "{{ $value }}"})
    s, _ = step(r2, [(S1, 1.0)], T0, [])
    s, tr = step(r2, [(S1, 2.0)], T0 + M, s)
    assert [a.labels["v"] for a in s] == ["2"]  # the v=1 pending alert was dropped
    assert [t.kind for t in tr] == ["pending"]


def test_template_error_rendered_like_prometheus():
    _labels, ann = alert_labels(rule(annotations={"a": "{{ .Nope.x }}"}), S1, 1.0)
    assert ann["a"].startswith("<error expanding template: ")


def test_several_series_and_transition_payloads():
    r = rule(for_s=60)
    other = {"__name__": "up", "job": "db"}
    s, tr = step(r, [(S1, 0.0), (other, 0.0)], T0, [])
    assert [(t.kind, t.alert.labels["job"]) for t in tr] == [("pending", "api"), ("pending", "db")]
    s, tr = step(r, [(S1, 0.0)], T0 + M, s)
    assert [(t.kind, t.alert.labels["job"]) for t in tr] == [("firing", "api")]
    assert [a.labels["job"] for a in s] == ["api"]
    assert tr[0].to_dict()["alert"]["state"] == "firing"


def test_state_roundtrips_through_json_and_resumes():
    r = rule(for_s=300, keep_s=60)
    state: list[AlertInstance] = []
    for i in range(3):
        state, _ = step(r, [(S1, math.inf)], T0 + i * M, state)
    blob = json.dumps(dump_instances(state))
    restored = load_instances(json.loads(blob))
    assert restored == state
    # resuming from the restored state (a restart mid-`for`) fires at minute 5 as if never stopped
    for i in range(3, 6):
        restored, _tr = step(r, [(S1, 1.0)], T0 + i * M, restored)
    assert restored[0].state is AlertState.FIRING and restored[0].fired_at == T0 + 5 * M
    nan_state, _ = step(r, [(S1, math.nan)], T0, [])
    back = load_instances(json.loads(json.dumps(dump_instances(nan_state))))
    assert math.isnan(back[0].last_value)


def test_naive_time_rejected():
    with pytest.raises(ValueError):
        step(rule(), [], datetime(2026, 1, 1), [])


def test_replay_over_a_real_lake(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    # up{job="api"}: 1 at 0..1, 0 at 2..8, 1 from 9 (each minute)
    vals = [1, 1] + [0] * 7 + [1] * 3
    lake.write_samples(
        [Sample("up", float(v), T0 + i * M, {"job": "api"}) for i, v in enumerate(vals)],
        now=T0 + timedelta(hours=1),
    )
    steps = replay(rule(for_s=180), lake, T0, T0 + 11 * M, 60)
    got = [(st.t, [a.state.value for a in st.instances], [t.kind for t in st.transitions]) for st in steps]
    assert [g[1] for g in got] == [[], [], ["pending"] * 1, ["pending"], ["pending"]] + [["firing"]] * 4 + [
        ["inactive"]
    ] * 3
    assert got[5][2] == ["firing"] and got[9][2] == ["resolved"]
    assert steps[5].instances[0].fired_at == T0 + 5 * M
    assert steps[-1].instances[0].labels == {"alertname": "Down", "job": "api"}


def test_replay_scalar_expression():
    r = rule(expr="1 > bool 0")
    steps = replay(r, None, T0, T0 + M, timedelta(minutes=1))
    assert steps[0].instances[0].labels == {"alertname": "Down"}
    assert [t.kind for t in steps[0].transitions] == ["pending", "firing"]

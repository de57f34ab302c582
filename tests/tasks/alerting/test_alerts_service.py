"""A whole alerting tick end to end: rule files over a real lake → state DB → routing, grouping,
silences, inhibition, acks → the outbox → Apprise ``json://`` to a real HTTP endpoint."""

from __future__ import annotations

import json
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import fingerprint
from tasks.alerting.notify.acks import AckStore
from tasks.alerting.notify.delivery import list_outbox
from tasks.alerting.notify.silences import SilenceStore
from tasks.alerting.service import run_alerts
from tasks.config import load_settings
from tasks.lake import Lake, Sample
from tasks.state import State, observe_transactions

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)

RULES = """\
groups:
  - name: q
    rules:
      - alert: QueueDeep
        expr: queue_depth > 100
        severity: warning
        annotations: {summary: "{{ $labels.queue }} depth {{ $value }}"}
      - alert: QueueStuck
        expr: queue_depth > 1000
        severity: critical
"""

NOTIFY = """\
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
receivers:
  - name: ops
    apprise: ["{url}"]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [queue]
"""


@pytest.fixture
def setup(tmp_path, hook):
    lake = Lake(str(tmp_path / "lake"))
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "notify.yml").write_text(NOTIFY.format(url=hook.url("/ops")))
    settings = load_settings(
        None,
        [
            f"lake.root={tmp_path / 'lake'}",
            f"state.path={tmp_path / 'state.duckdb'}",
            f'alerting.rule_files=["{tmp_path / "rules.yml"}"]',
            f"alerting.notify_config={tmp_path / 'notify.yml'}",
        ],
    )
    return settings, lake


def depth(lake, values, queue="jobs", start=T0):
    lake.write_samples(
        [
            Sample("queue_depth", float(v), start + i * M, {"queue": queue})
            for i, v in enumerate(values)
            if v is not None
        ]
    )


def test_group_wait_one_message_per_group_then_resolved(setup, hook):
    settings, lake = setup
    depth(lake, [500] * 4 + [5] * 4)
    depth(lake, [300] * 8, queue="mail")
    first = run_alerts(settings, lake, now=T0)
    assert len(first.firing) == 2 and first.notifications == []  # the new group waits 30 s
    second = run_alerts(settings, lake, now=T0 + M)
    assert [(n["receiver"], n["reason"], n["firing"]) for n in second.notifications] == [("ops", "initial", 2)]
    assert [d["status"] for d in second.deliveries] == ["sent"]
    (msg,) = hook.at("/ops")
    assert "[FIRING:2] QueueDeep" in msg["title"]
    assert "jobs depth 500" in msg["message"] and "mail depth 300" in msg["message"]

    for i in range(2, 6):  # nothing new inside the group interval
        assert run_alerts(settings, lake, now=T0 + i * M).notifications == []
    # jobs recovered at minute 4; the group's next flush (5 m after the first) sends the resolve
    later = run_alerts(settings, lake, now=T0 + 6 * M)
    assert [(n["reason"], n["firing"], n["resolved"]) for n in later.notifications] == [("update", 1, 1)]
    assert len(hook.at("/ops")) == 2


def test_silenced_and_inhibited_alerts_are_not_sent(setup, hook):
    settings, lake = setup
    depth(lake, [5000] * 4)  # jobs: both QueueStuck (critical) and QueueDeep (warning, inhibited)
    depth(lake, [300] * 4, queue="mail")
    SilenceStore(State.from_settings(settings)).create('queue="mail"', ends_at=T0 + 2 * M, now=T0 - M)
    run_alerts(settings, lake, now=T0)
    res = run_alerts(settings, lake, now=T0 + M)
    assert res.silenced == 1 and res.inhibited == 1
    assert [(n["group_key"].split(":")[-1], n["firing"]) for n in res.notifications] == [
        ('{alertname="QueueStuck"}', 1)
    ]
    # the silence ends at minute 2: mail's QueueDeep goes out with the next flush of its group
    sent = [n for i in range(2, 8) for n in run_alerts(settings, lake, now=T0 + i * M).notifications]
    assert [(n["group_key"].split(":")[-1], n["firing"]) for n in sent] == [('{alertname="QueueDeep"}', 1)]


def test_ack_stops_repeats_until_it_expires(setup, hook):
    settings, lake = setup
    depth(lake, [300] * 200, queue="mail")
    run_alerts(settings, lake, now=T0)
    assert len(run_alerts(settings, lake, now=T0 + M).notifications) == 1
    labels = {"alertname": "QueueDeep", "queue": "mail", "severity": "warning"}
    AckStore(State.from_settings(settings)).ack(fingerprint(labels), "ana", at=T0 + 2 * M, for_=timedelta(hours=2))
    # repeat_interval 1h: without the ack a repeat would go at 1h05m; acked, nothing until the ack ends at 2h02m
    quiet = [n for i in range(2, 122, 5) for n in run_alerts(settings, lake, now=T0 + i * M).notifications]
    assert quiet == []
    after = run_alerts(settings, lake, now=T0 + 123 * M).notifications
    assert [n["reason"] for n in after] == ["repeat"] and any("ack" in note for note in after[0]["notes"])


def test_dry_run_sends_and_stores_nothing(setup, hook):
    settings, lake = setup
    depth(lake, [300] * 4)
    run_alerts(settings, lake, now=T0)
    dry = run_alerts(settings, lake, now=T0 + M, dry_run=True)
    assert [n["reason"] for n in dry.notifications] == ["initial"] and dry.deliveries == []
    assert hook.posts == [] and list_outbox(State.from_settings(settings)) == []
    real = run_alerts(settings, lake, now=T0 + M)
    assert [n["reason"] for n in real.notifications] == ["initial"] and len(hook.posts) == 1


def test_failed_delivery_is_retried_on_later_ticks(setup, hook):
    settings, lake = setup
    depth(lake, [300] * 10)
    hook.codes["/ops"] = [500, 200]
    run_alerts(settings, lake, now=T0)
    res = run_alerts(settings, lake, now=T0 + M)
    assert [d["status"] for d in res.deliveries] == ["failed"]
    retried = [d for i in range(2, 6) for d in run_alerts(settings, lake, now=T0 + i * M).deliveries]
    assert [d["status"] for d in retried] == ["sent"] and len(hook.at("/ops")) == 2
    payloads = [json.dumps(p) for p in hook.at("/ops")]
    assert all("QueueDeep" in p for p in payloads)


def test_without_notify_config_alerts_are_kept_and_it_says_so(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    (tmp_path / "rules.yml").write_text(textwrap.dedent(RULES))
    settings = load_settings(
        None,
        [
            f"lake.root={tmp_path / 'lake'}",
            f"state.path={tmp_path / 'state.duckdb'}",
            f'alerting.rule_files=["{tmp_path / "rules.yml"}"]',
        ],
    )
    depth(lake, [300] * 4)
    res = run_alerts(settings, lake, now=T0)
    assert len(res.firing) == 1 and res.notifications == []
    assert "notify_config is not set" in res.notify_note and "notify_config is not set" in res.markdown()


def test_state_transactions_per_tick_are_pinned(setup, hook):
    """Each state-DB transaction costs tens of ms here: a quiet tick makes 2 (rule state load; one
    batch for rule state + silences, acks, dispatcher, outbox), a sending tick 2 + one per send + 1."""
    settings, lake = setup
    depth(lake, [300] * 10)
    depth(lake, [200] * 10, queue="mail")
    run_alerts(settings, lake, now=T0)
    with observe_transactions() as sending:
        res = run_alerts(settings, lake, now=T0 + M)
    assert [d["status"] for d in res.deliveries] == ["sent"]
    assert sending.count == 2 + 1 + 1
    for i in (2, 3):
        with observe_transactions() as quiet:
            res = run_alerts(settings, lake, now=T0 + i * M)
        assert res.notifications == [] and res.deliveries == [] and len(res.firing) == 2
        assert quiet.count <= 2


def test_two_ticks_at_once_send_each_message_once(setup, hook, tmp_path):
    """The flow and ``cortex-perf alerts run`` ticking at the same moment: both decide, one sends."""
    settings, lake = setup
    depth(lake, [300] * 10)
    run_alerts(settings, lake, now=T0)
    lakes = [lake, Lake(str(tmp_path / "lake"))]
    start = threading.Barrier(2)
    results: list[object] = [None, None]

    def tick(k: int) -> None:
        start.wait()
        results[k] = run_alerts(settings, lakes[k], now=T0 + M)

    threads = [threading.Thread(target=tick, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    (msg,) = hook.at("/ops")  # once, not twice
    assert "QueueDeep" in msg["title"]
    entries = list_outbox(State.from_settings(settings))
    assert [(e.status, e.possible_duplicate) for e in entries] == [("sent", False)]
    # and the state the two left behind is whole: the next ticks neither resend nor forget the group
    assert [n for i in (2, 3) for n in run_alerts(settings, lake, now=T0 + i * M).notifications] == []
    assert len(hook.at("/ops")) == 1


def test_a_failing_notification_step_still_advances_the_rule_state(setup, hook, monkeypatch):
    """The notification decisions share the rule state's transaction; when they fail, the rule state
    is saved alone (else every later tick would re-evaluate the same times) and the error is raised."""
    from tasks.alerting import service
    from tasks.alerting.rules.ruler import RuleStore

    settings, lake = setup
    depth(lake, [300] * 4)

    def broken(*args, **kwargs):
        raise KeyError("receiver 'ops' vanished")

    monkeypatch.setattr(service, "_decide", broken)
    with pytest.raises(KeyError, match="vanished"):
        run_alerts(settings, lake, now=T0 + 3 * M)
    stored = RuleStore(State.from_settings(settings)).load()
    assert {r.alert for r in stored.values()} == {"QueueDeep", "QueueStuck"}
    assert all(r.last_eval is not None and r.last_eval <= T0 + 3 * M for r in stored.values())
    deep = next(r for r in stored.values() if r.alert == "QueueDeep")
    assert [i.labels.get("queue") for i in deep.instances] == ["jobs"]  # its alert is kept
    monkeypatch.undo()
    res = run_alerts(settings, lake, now=T0 + 4 * M)  # the next tick does not start from scratch
    assert [a.labels["alertname"] for a in res.firing] == ["QueueDeep"] and not res.errors


def test_a_failing_rule_is_counted_and_alertable_while_the_others_notify(setup, hook, tmp_path):
    """One rule failing at evaluation (here topk's k overflowing int64) neither stops the other
    rules nor their notifications; its failures become
    ``cortex_perf_rule_evaluation_failures_total{rule_group,rule}`` in the lake, on which a rule can
    alert (as on Prometheus's ``prometheus_rule_evaluation_failures_total``)."""
    from tasks.alerting.rules.evaluate import evaluate
    from tasks.alerting.rules.promql import parse

    settings, lake = setup
    rules = tmp_path / "rules.yml"
    rules.write_text(
        RULES
        + "      - alert: Broken\n        expr: topk(1e300, queue_depth) > 0\n"
        + "      - alert: RuleFailing\n        expr: increase(cortex_perf_rule_evaluation_failures_total[5m]) > 0\n"
    )
    depth(lake, [300] * 4)
    first = run_alerts(settings, lake, now=T0)
    assert [e["rule"].split("/")[1] for e in first.to_dict()["errors"]] == ["Broken"]
    second = run_alerts(settings, lake, now=T0 + M)
    assert [(n["group_key"].split("alertname=")[-1], n["reason"]) for n in second.notifications] == [
        ('"QueueDeep"}', "initial")
    ]
    assert [d["status"] for d in second.deliveries] == ["sent"] and len(hook.at("/ops")) == 1
    assert sorted(a.name for a in second.firing) == ["QueueDeep", "RuleFailing"]
    assert second.failing_rules == [
        {
            "rule_group": f"{rules};q",
            "rule": "Broken",
            "failures": 2,
            "last_error": "EvalError: Scalar value 1e+300 overflows int64",
        }
    ]
    md = second.markdown()
    assert "**Failing rules**" in md and "`Broken` (2 failures): EvalError: Scalar value 1e+300 overflows int64" in md
    counter = evaluate(parse('cortex_perf_rule_evaluation_failures_total{rule="Broken"}'), lake, T0 + M)
    assert counter == [
        ({"__name__": "cortex_perf_rule_evaluation_failures_total", "rule_group": f"{rules};q", "rule": "Broken"}, 2.0)
    ]
    # a dry run records nothing: no failure counted, nothing in the lake
    assert run_alerts(settings, lake, now=T0 + 2 * M, dry_run=True).failing_rules[0]["failures"] == 3
    assert run_alerts(settings, lake, now=T0 + 2 * M).failing_rules[0]["failures"] == 3

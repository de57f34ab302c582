"""The rule manager over a real lake and a real state DB: catch-up, restarts, hysteresis, no-data
modes, recording rules, per-rule errors."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.rules.evaluate import evaluate as evaluate_ref
from tasks.alerting.rules.lifecycle import AlertState
from tasks.alerting.rules.rule_files import load_rule_files
from tasks.alerting.rules.ruler import RuleStore, due_times
from tasks.alerting.rules.ruler import run_rules as _run_rules
from tasks.alerting.rules.sqlcompile import evaluate_many
from tasks.lake import Lake, Sample
from tasks.state import State

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


_ENGINE: dict[str, object] = {"batch": None}


@pytest.fixture(autouse=True, params=["reference", "sql"])
def engine(request):
    """Every test runs with the reference evaluator and with the SQL engine's batches."""
    _ENGINE["batch"] = evaluate_many if request.param == "sql" else None
    yield request.param
    _ENGINE["batch"] = None


def run_rules(*args, **kwargs):
    return _run_rules(*args, batch=_ENGINE["batch"], **kwargs)


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def store(tmp_path):
    return RuleStore(State(str(tmp_path / "state.duckdb")))


def write(lake, values, metric="cpu", labels=None, start=T0, every=M):
    """One sample per ``every`` from ``start``; ``None`` leaves a gap."""
    samples = [
        Sample(metric=metric, value=v, ts=start + i * every, labels=labels or {"instance": "a"})
        for i, v in enumerate(values)
        if v is not None
    ]
    lake.write_samples(samples)


def rules(tmp_path, body, name="r.yml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return load_rule_files([p])


CPU_RULE = """\
groups:
  - name: node
    interval: 1m
    rules:
      - alert: HighCPU
        expr: cpu > 0.9
        for: 5m
        severity: page
        runbook_url: https://runbooks/cpu
        annotations:
          summary: "{{ $labels.instance }} at {{ $value }}"
"""


# ---- due times ------------------------------------------------------------------------------------


def test_due_times_grid_first_catch_up_and_limit():
    now = T0 + 30 * timedelta(seconds=1)
    assert due_times(None, now, 60, timedelta(hours=1)) == ([T0], 0)
    assert due_times(T0, T0 + 59 * timedelta(seconds=1), 60, timedelta(hours=1)) == ([], 0)
    times, skipped = due_times(T0, T0 + 3 * M + timedelta(seconds=5), 60, timedelta(hours=1))
    assert times == [T0 + M, T0 + 2 * M, T0 + 3 * M] and skipped == 0
    # 3 hours behind with a 1 h limit: the newest 61 grid points, 119 skipped
    times, skipped = due_times(T0, T0 + 180 * M, 60, timedelta(hours=1))
    assert len(times) == 61 and times[-1] == T0 + 180 * M and times[0] == T0 + 120 * M and skipped == 119


# ---- catch-up and restarts ------------------------------------------------------------------------


def test_first_tick_pending_then_catch_up_fires_at_the_right_minute(tmp_path, lake, store):
    write(lake, [0.95] * 15)
    rs = rules(tmp_path, CPU_RULE)
    out = run_rules(rs, lake, store, T0 + timedelta(seconds=10))
    assert out.evaluations == 1 and not out.alerts and len(out.pending) == 1
    assert [tr.kind for _, tr in out.transitions] == ["pending"]

    # the flow was down for 10 minutes: the catch-up evaluates every missed minute on the lake's data
    out = run_rules(rs, lake, store, T0 + 10 * M + timedelta(seconds=3))
    assert out.evaluations == 10
    assert [(tr.kind, tr.t) for _, tr in out.transitions] == [("firing", T0 + 5 * M)]
    (alert,) = out.alerts
    assert alert.status == "firing" and alert.starts_at == T0
    assert alert.labels == {"alertname": "HighCPU", "instance": "a", "severity": "page"}
    assert alert.annotations == {"summary": "a at 0.95", "runbook_url": "https://runbooks/cpu"}

    # a new process (fresh store object on the same DB) continues; the same tick again does nothing
    again = run_rules(rs, lake, RuleStore(State(store.state.path)), T0 + 10 * M + timedelta(seconds=30))
    assert again.evaluations == 0 and not again.transitions and len(again.alerts) == 1


def test_restart_in_the_middle_of_for_keeps_the_clock(tmp_path, lake, store):
    write(lake, [0.95] * 8)
    rs = rules(tmp_path, CPU_RULE)
    for i in range(3):
        run_rules(rs, lake, store, T0 + i * M)
    restarted = RuleStore(State(store.state.path))
    (row,) = restarted.load().values()
    assert row.instances[0].state is AlertState.PENDING and row.instances[0].active_at == T0
    fired = []
    for i in range(3, 7):
        out = run_rules(rs, lake, restarted, T0 + i * M)
        fired += [tr.t for _, tr in out.transitions if tr.kind == "firing"]
    assert fired == [T0 + 5 * M]  # not restarted at minute 3


def test_dry_run_does_not_persist(tmp_path, lake, store):
    write(lake, [0.95] * 3)
    rs = rules(tmp_path, CPU_RULE)
    out = run_rules(rs, lake, store, T0, dry_run=True)
    assert len(out.pending) == 1
    assert store.load() == {}


def test_removed_rule_state_is_pruned(tmp_path, lake, store):
    write(lake, [0.95] * 3)
    run_rules(rules(tmp_path, CPU_RULE), lake, store, T0)
    assert len(store.load()) == 1
    other = CPU_RULE.replace("HighCPU", "Other").replace("cpu > 0.9", "cpu > 2")
    run_rules(rules(tmp_path, other, "other.yml"), lake, store, T0 + M)
    assert [r.alert for r in store.load().values()] == ["Other"]


# ---- hysteresis -----------------------------------------------------------------------------------


HYST = """\
groups:
  - name: node
    rules:
      - alert: HighCPU
        expr: cpu > 0.9
        {resolve}
"""


@pytest.mark.parametrize(
    ("resolve", "expected"),
    [
        ("resolve_expr: cpu < 0.8", ["firing", "firing", "firing", "resolved"]),
        ("", ["firing", "resolved", "resolved", "resolved"]),
    ],
)
def test_resolve_expr_holds_firing_until_recovery(tmp_path, lake, store, resolve, expected):
    write(lake, [0.95, 0.85, 0.85, 0.75])
    rs = rules(tmp_path, HYST.format(resolve=resolve))
    seen = []
    for i in range(4):
        out = run_rules(rs, lake, store, T0 + i * M)
        seen.append(out.alerts[0].status)
    assert seen == expected


# ---- no data --------------------------------------------------------------------------------------


NODATA = """\
groups:
  - name: node
    rules:
      - alert: HighCPU
        expr: cpu > 0.9
        no_data: {mode}
"""


def _statuses(out):
    return sorted((a.labels.get("nodata", ""), a.status) for a in out.alerts)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("ok", [("", "resolved")]),
        ("keep_last", [("", "firing")]),
        ("alerting", [("", "firing")]),
        ("nodata", [("", "firing"), ("true", "firing")]),
    ],
)
def test_no_data_modes_when_the_series_stops(tmp_path, lake, store, mode, expected):
    write(lake, [0.95, 0.95])  # then nothing: the 5-minute lookback runs out at minute 7
    rs = rules(tmp_path, NODATA.format(mode=mode))
    run_rules(rs, lake, store, T0)
    out = run_rules(rs, lake, store, T0 + 8 * M)
    assert _statuses(out) == expected and not out.errors
    assert out.no_data == ([] if mode == "ok" else [next(iter(store.load()))])
    later = run_rules(rs, lake, store, T0 + 9 * M)  # still no data: stable, no new transitions
    assert _statuses(later) == expected and not later.errors and not later.transitions


def test_alerting_no_data_without_live_alerts_raises_one(tmp_path, lake, store):
    write(lake, [0.5], metric="other")  # the lake has data, but not for cpu
    out = run_rules(rules(tmp_path, NODATA.format(mode="alerting")), lake, store, T0)
    assert [a.labels for a in out.alerts] == [{"alertname": "HighCPU", "nodata": "true"}]


def test_data_below_threshold_is_not_no_data(tmp_path, lake, store):
    write(lake, [0.95, 0.5])
    rs = rules(tmp_path, NODATA.format(mode="nodata"))
    run_rules(rs, lake, store, T0)
    out = run_rules(rs, lake, store, T0 + M)
    assert _statuses(out) == [("", "resolved")] and out.no_data == []


# ---- recording rules and errors ------------------------------------------------------------------


def test_recording_rule_feeds_the_next_rule_of_its_group(tmp_path, lake, store):
    write(lake, [0.95] * 2, labels={"instance": "a", "job": "n"})
    write(lake, [0.97] * 2, labels={"instance": "b", "job": "n"})
    rs = rules(
        tmp_path,
        """\
        groups:
          - name: node
            rules:
              - record: job:cpu:avg
                expr: avg by (job) (cpu)
                labels: {source: rule}
              - alert: JobHot
                expr: job:cpu:avg > 0.9
        """,
    )
    out = run_rules(rs, lake, store, T0 + M)
    assert out.recorded_samples == 1
    assert [a.labels for a in out.alerts] == [{"alertname": "JobHot", "job": "n", "source": "rule"}]
    raw = lake.raw("job:cpu:avg", T0, T0 + 2 * M)
    assert raw.height == 1 and abs(raw["value"][0] - 0.96) < 1e-12


def test_a_failing_rule_keeps_its_state_and_does_not_stop_the_others(tmp_path, lake, store):
    write(lake, [0.95] * 2, labels={"instance": "a", "job": "x"})
    write(lake, [0.95] * 2, labels={"instance": "b", "job": "x"})
    rs = rules(
        tmp_path,
        """\
        groups:
          - name: node
            rules:
              - alert: Clash
                expr: cpu > 0.9
                labels: {instance: same}
              - alert: Fine
                expr: cpu > 0.9
        """,
    )
    out = run_rules(rs, lake, store, T0)
    assert len(out.errors) == 1 and "same labelset" in out.errors[0][1]
    assert sorted(a.labels["instance"] for a in out.alerts) == ["a", "b"]


def test_rule_added_to_a_group_starts_now_while_the_others_catch_up(tmp_path, lake, store):
    write(lake, [0.95] * 10)
    run_rules(rules(tmp_path, CPU_RULE), lake, store, T0)
    both = CPU_RULE + "      - alert: Also\n        expr: cpu > 0.5\n"
    out = run_rules(rules(tmp_path, both), lake, store, T0 + 5 * M)
    assert out.evaluations == 5 + 1  # HighCPU: minutes 1..5; Also: minute 5 only
    assert sorted(a.name for a in out.alerts) == ["Also", "HighCPU"]


def test_batches_are_one_call_per_segment_between_recording_rules(tmp_path, lake, store, engine):
    write(lake, [0.95] * 3)
    calls = []

    def batch(exprs, lake_, t):
        calls.append((len(exprs), t))
        return evaluate_many(exprs, lake_, t)

    rs = rules(
        tmp_path,
        """\
        groups:
          - name: node
            rules:
              - alert: A
                expr: cpu > 0.9
              - alert: B
                expr: cpu > 0.5
              - record: cpu:doubled
                expr: cpu * 2
              - alert: C
                expr: cpu:doubled > 1.8
        """,
    )
    out = _run_rules(rs, lake, store, T0 + M, batch=batch)
    assert calls == [(2, T0 + M), (1, T0 + M)]  # A+B together; C after the recording rule wrote
    assert sorted(a.name for a in out.alerts) == ["A", "B", "C"]


TWO_RULES = """\
groups:
  - name: node
    rules:
      - alert: Boom
        expr: cpu > 0.5
      - alert: Fine
        expr: cpu > 0.9
"""


def test_an_unexpected_error_in_one_rule_is_recorded_and_the_others_run(tmp_path, lake, store, engine):
    """Any exception (not only the expected PromQL ones) fails its rule alone: recorded with its
    type, counted, the rule's state kept, the other rules evaluated and alerting."""
    write(lake, [0.95] * 3)
    rs = rules(tmp_path, TWO_RULES)
    boom = rs.groups[0].rules[0].expr_ast

    def evaluator(expr, lake_, t):
        if expr == boom:
            raise TypeError("a bug in the engine")
        return evaluate_ref(expr, lake_, t)

    def batch(exprs, lake_, t):
        if boom in exprs:  # the whole batch blows up, as evaluate_many once did on an overflow
            raise OverflowError("timestamp out of range for platform time_t")
        return evaluate_many(exprs, lake_, t)

    kw = {"batch": batch} if engine == "sql" else {"evaluator": evaluator}
    out = _run_rules(rs, lake, store, T0 + M, **kw)
    assert [a.name for a in out.alerts] == ["Fine"]
    [(key, err)] = out.errors
    assert key.startswith("node/Boom/") and err.split(":")[0] in ("TypeError", "OverflowError")
    out = _run_rules(rs, lake, store, T0 + 2 * M, **kw)
    [health] = [h for h in out.health if h.rule == "Boom"]
    assert (health.failures, health.last_error) == (2, err)
    stored = {r.alert: r for r in store.load().values()}
    assert (stored["Boom"].failures, stored["Boom"].last_error) == (2, err)
    assert (stored["Fine"].failures, stored["Fine"].last_error) == (0, None)
    # healthy again: the error clears, the count stays (a counter)
    out = _run_rules(rs, lake, store, T0 + 3 * M)
    assert sorted(a.name for a in out.alerts) == ["Boom", "Fine"] and not out.errors
    assert {r.alert: (r.failures, r.last_error) for r in store.load().values()}["Boom"] == (2, None)


def test_rule_failures_become_a_prometheus_style_counter(tmp_path, lake, store):
    """``cortex_perf_rule_evaluation_failures_total{rule_group="<file>;<group>", rule}``: a 0 one
    interval before the first failure (so increase() sees the first one), then the running total."""
    from tasks.alerting.rules.ruler import RULE_FAILURES_METRIC, failure_samples

    write(lake, [0.95] * 5)
    rs = rules(tmp_path, TWO_RULES.replace("cpu > 0.5", "topk(1e300, cpu) > 0.5"))
    first = _run_rules(rs, lake, store, T0 + M)
    assert first.errors and "overflows" in first.errors[0][1]
    second = _run_rules(rs, lake, store, T0 + 2 * M)
    group = f"{tmp_path / 'r.yml'};node"
    got = [(s.metric, dict(s.labels), s.ts, s.value) for s in failure_samples(first) + failure_samples(second)]
    labels = {"rule_group": group, "rule": "Boom"}
    assert got == [
        (RULE_FAILURES_METRIC, labels, T0, 0.0),
        (RULE_FAILURES_METRIC, labels, T0 + M, 1.0),
        (RULE_FAILURES_METRIC, labels, T0 + 2 * M, 2.0),
    ]

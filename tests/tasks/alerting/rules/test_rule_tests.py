"""promtool-format rule unit tests run with our engine: verdicts, promtool's wording, stale, bad files.

Where promtool can judge the same file, it does: the verdict and the failure text must be the same."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.alerting.rules.evaluate import StaleMarkers, Vector, evaluate
from tasks.alerting.rules.promql import Expr
from tasks.alerting.rules.rule_tests import (
    format_sample_value,
    load_test_file,
    run_test_file,
    run_test_files,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
EXAMPLES = Path(__file__).resolve().parents[4] / "data" / "examples" / "alerting"

RULES = """\
groups:
  - name: node
    interval: 5m            # ignored by unit tests: every group steps at evaluation_interval
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} down ({{ $value }})"}
      - alert: JobGone
        expr: job:up:sum == 0
"""


def _write(tmp_path: Path, test_yaml: str, rules: str = RULES) -> Path:
    (tmp_path / "rules.yml").write_text(rules)
    p = tmp_path / "test.yml"
    p.write_text(test_yaml)
    return p


def _promtool(path: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", path.name],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=60,
    )
    return proc.returncode, proc.stdout


def _ours(path: Path) -> tuple[int, str]:
    """Our runner from the file's directory (so the printed name is promtool's), both streams in one."""
    lines: list[str] = []
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        code = run_test_files([path.name], out=lines.append)
    finally:
        os.chdir(cwd)
    return code, "\n".join(lines) + "\n"


PASSING = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="api", instance="a"}'
        values: '1 0 0 0 1'
      - series: 'up{job="api", instance="b"}'
        values: '1x4'
      - series: 'up{job="db", instance="c"}'
        values: '0x4'
    alert_rule_test:
      - eval_time: 1m
        alertname: Down        # pending only
        exp_alerts:
          - exp_labels: {severity: page, job: db, instance: c}
            exp_annotations: {summary: "c down (0)"}
      - eval_time: 150s        # checked against the evaluation at 2m
        alertname: Down
        exp_alerts:
          - exp_labels: {severity: page, job: api, instance: a}
            exp_annotations: {summary: "a down (0)"}
          - exp_labels: {severity: page, job: db, instance: c}
            exp_annotations: {summary: "c down (0)"}
      - eval_time: 2m
        alertname: JobGone     # fed by the recording rule of the same group
        exp_alerts:
          - exp_labels: {job: db}
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 2m
        exp_samples:
          - labels: 'job:up:sum{job="api"}'
            value: 1
          - labels: 'job:up:sum{job="db"}'
            value: 0
      - expr: ALERTS{alertstate="pending"}
        eval_time: 1m
        exp_samples:
          - labels: 'ALERTS{alertname="Down", alertstate="pending", instance="a", job="api", severity="page"}'
            value: 1
      - expr: ALERTS_FOR_STATE{instance="a"}
        eval_time: 3m
        exp_samples:
          - labels: 'ALERTS_FOR_STATE{alertname="Down", instance="a", job="api", severity="page"}'
            value: 60
"""


def test_passing_file_passes_here_and_in_promtool(tmp_path: Path) -> None:
    path = _write(tmp_path, PASSING)
    res = run_test_file(path)
    assert res.ok, res.errors
    assert _promtool(path) == (0, "Unit Testing:  test.yml\n  SUCCESS\n\n")
    assert _ours(path) == (0, "Unit Testing:  test.yml\n  SUCCESS\n\n")


FAILING = """\
rule_files: [rules.yml]
tests:
  - interval: 1m
    name: wrong expectations
    input_series:
      - series: 'up{job="api", instance="a"}'
        values: '1 0 0 0 0'
    alert_rule_test:
      - eval_time: 3m
        alertname: Down
        exp_alerts:
          - exp_labels: {severity: ticket, job: api, instance: a}
            exp_annotations: {summary: "a down (0)"}
      - eval_time: 1m
        alertname: Down
        exp_alerts: []
    promql_expr_test:
      - expr: up * 2.5
        eval_time: 2m
        exp_samples:
          - labels: '{job="api", instance="a"}'
            value: 1e6
      - expr: 1/0
        eval_time: 0s
        exp_samples:
          - labels: '{}'
            value: 1
      - expr: 'up{'
        eval_time: 0s
"""


def test_failures_are_reported_exactly_as_promtool_words_them(tmp_path: Path) -> None:
    path = _write(tmp_path, FAILING)
    res = run_test_file(path)
    assert not res.ok and len(res.errors) == 4  # 1m passes; 3m alert, two samples, one parse error
    code, ours = _ours(path)
    pcode, theirs = _promtool(path)
    assert code == pcode == 1
    # identical except the parse error's wording (different parsers): compare everything before it
    cut = '    expr: "up{", time: 0s, err: '
    assert cut in ours and cut in theirs
    assert ours.split(cut)[0] == theirs.split(cut)[0]
    assert '        exp: {instance="a", job="api"} 1E+06\n        got: {instance="a", job="api"} 0E+00' in ours
    assert "got: {} +Inf" in ours


STALE = """\
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="api", instance="a"}'
        values: '0 0 stale _ 0'
      - series: 'g{k="v"}'
        values: '1 2 stale 4'
    alert_rule_test:
      - eval_time: 1m
        alertname: Down
        exp_alerts:
          - exp_labels: {severity: page, job: api, instance: a}
            exp_annotations: {summary: "a down (0)"}
      - eval_time: 2m          # the marker ends the series now, not 5 minutes later: resolved
        alertname: Down
        exp_alerts: []
      - eval_time: 4m          # back, but pending again (a new alert)
        alertname: Down
        exp_alerts: []
    promql_expr_test:
      - expr: g
        eval_time: 2m30s
        exp_samples: []
      - expr: g
        eval_time: 3m
        exp_samples:
          - labels: 'g{k="v"}'
            value: 4
      - expr: count_over_time(g[5m])   # range functions skip the marker
        eval_time: 3m
        exp_samples:
          - labels: '{k="v"}'
            value: 3
      - expr: absent(g)
        eval_time: 2m
        exp_samples:
          - labels: '{}'
            value: 1
"""


def test_stale_markers_end_series_like_promtool(tmp_path: Path) -> None:
    path = _write(tmp_path, STALE)
    res = run_test_file(path)
    assert res.ok, res.errors
    assert _promtool(path)[0] == 0
    # and the same file expecting the 5-minute lookback instead fails in both
    wrong = _write(
        tmp_path,
        STALE.replace(
            "exp_samples: []\n      - expr: g\n        eval_time: 3m",
            "exp_samples:\n          - labels: 'g{k=\"v\"}'\n            value: 2\n"
            "      - expr: g\n        eval_time: 3m",
        ),
    )
    assert not run_test_file(wrong).ok
    assert _promtool(wrong)[0] == 1


def test_evaluate_fn_is_the_one_engine_call(tmp_path: Path) -> None:
    """Another engine (e.g. the compiled SQL one) plugs in through ``evaluate_fn``; every evaluation uses it."""
    calls: list[datetime] = []

    def engine(expr: Expr | str, lake: Any, t: datetime, *, stale: StaleMarkers | None = None) -> float | Vector:
        calls.append(t)
        return evaluate(expr, lake, t, stale=stale)

    res = run_test_file(_write(tmp_path, PASSING), evaluate_fn=engine)
    assert res.ok, res.errors
    # 4 evaluations (0..3m) x 3 rules + 3 promql_expr_tests
    assert len(calls) == 4 * 3 + 3


def test_example_files_pass_here_and_in_promtool() -> None:
    path = EXAMPLES / "rules_test.yml"
    res = run_test_file(path)
    assert res.ok, res.errors
    assert _promtool(path)[0] == 0


# ---- bad files ------------------------------------------------------------------------------------

_HEAD = "rule_files: [rules.yml]\ntests:\n"
_SERIES = _HEAD + "  - interval: 1m\n    input_series:\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    bogus: 1\n",
            "test.yml:4:5: tests[0]: unknown field 'bogus'",
        ),
        (
            "rule_files: [rules.yml]\nevaluation_interval: 1x\n",
            "test.yml:2:22: evaluation_interval: not a valid duration",
        ),
        (
            _SERIES + "      - series: 'up'\n        values: '1 2 three'\n",
            "test.yml:6:17: tests[0].input_series[0].values: column 5: unexpected 'three'",
        ),
        (
            _SERIES + "      - series: 'up{a=~\"x\"}'\n        values: '1'\n",
            "test.yml:5:17: tests[0].input_series[0].series: column 1:",
        ),
        (
            _SERIES + "      - series: 'up'\n        values: '1 NaN'\n",
            "tests[0].input_series[0].values: nan cannot be stored in the lake",
        ),
        (
            "rule_files: [rules.yml]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        exp_alerts: []\n",
            "test.yml:4:9: tests[0].alert_rule_test[0]: field 'alertname' must be set",
        ),
        (
            _HEAD + "  - promql_expr_test:\n      - expr: up\n        exp_samples:\n          - labels: 'up{'\n",
            "tests[0].promql_expr_test[0].exp_samples[0].labels:",
        ),
        ("rule_files: [rules.yml]\ngroup_eval_order: [a, a]\n", "group name repeated in evaluation order: a"),
        ("rule_files: [rules.yml\n", "test.yml:2:1: YAML syntax error"),
        ("tests: []\n", "rule_files: must be set"),
    ],
)
def test_bad_test_files_name_the_field_and_place(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    res = run_test_file(path)
    assert not res.ok
    assert any(expected in e for e in res.errors), res.errors
    assert all(e.startswith(f"{path}:") for e in res.errors)


def test_bad_rule_file_fails_with_its_own_errors(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rule_files: [rules.yml]\ntests: []\n",
        rules="groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up >\n",
    )
    res = run_test_file(path)
    assert not res.ok
    assert res.errors[0].startswith(f"{tmp_path / 'rules.yml'}:5:")


def test_missing_rule_file_pattern_warns_like_promtool(tmp_path: Path) -> None:
    path = _write(tmp_path, "rule_files: [nope*.yml]\ntests: []\n")
    res = run_test_file(path)
    assert res.ok
    assert res.warnings == [f"  WARNING: no file match pattern {tmp_path / 'nope*.yml'}"]
    assert load_test_file(path).rule_files == []


def test_unreadable_file_is_a_failure(tmp_path: Path) -> None:
    res = run_test_file(tmp_path / "missing.yml")
    assert not res.ok and "cannot read test file" in res.errors[0]


# ---- promtool's number format --------------------------------------------------------


def test_formats_match_go() -> None:
    # durations: tests/tasks/test_timeparse.py (format_duration(..., prometheus=True))
    assert [format_sample_value(v) for v in (1, 0, 0.25, 1e6, 123.456, -2, float("inf"), float("nan"))] == [
        "1E+00",
        "0E+00",
        "2.5E-01",
        "1E+06",
        "1.23456E+02",
        "-2E+00",
        "+Inf",
        "NaN",
    ]

"""Prometheus's "vector cannot contain metrics with the same labelset", three ways: promtool, the
reference evaluator and the SQL engine must agree on which rules fail, when, and with what words.

A selector that can match several metric names (``{__name__=~"a_total|b_total"}``) feeds a
function, a unary minus or scalar arithmetic that drops ``__name__``: two series that differ only
by their name become one label set, and Prometheus 2.42 fails the whole evaluation. The SQL engine
used to return both rows (alerts where Prometheus has a rule error); it now flags such rules and
hands them to the reference for the error. Controls: the same shapes over names whose series
differ in other labels too must not fail, and must fire the same alerts in all three.

Each rule gets its own promtool test file, because promtool stops at a file's first rule error;
our runner (``tasks.alerting.rules.rule_tests.run_test_file``) runs the same file with each engine and
must print promtool's failure text, or pass where promtool passes.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tasks.alerting.rules.evaluate import EvalError, evaluate
from tasks.alerting.rules.promql import parse
from tasks.alerting.rules.promtool_series import expand_input_series
from tasks.alerting.rules.rule_tests import EPOCH, Simulation, run_test_file
from tasks.alerting.rules.sqlcompile import SQLEngine, compile_expr, evaluate_one

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DUP = "vector cannot contain metrics with the same labelset"

SERIES = [
    {"series": 'a_total{instance="x"}', "values": "0+10x20"},
    {"series": 'b_total{instance="x"}', "values": "0+5x20"},  # differs from a_total{x} by name only
    {"series": 'c_total{instance="y"}', "values": "0+3x20"},
    {"series": 'd_total{instance="x", job="j"}', "values": "0+1x20"},
]

#: rule name → (expression, fails with DUP)
RULES = {
    "DupRate": ('rate({__name__=~"a_total|b_total"}[5m]) > 0', True),
    "DupOverTime": ('avg_over_time({__name__=~"a_total|b_total"}[5m]) > 0', True),
    "DupNeg": ('-{__name__=~"a_total|b_total"} < 0', True),
    "DupArith": ('{__name__=~"a_total|b_total"} * 2 > 0', True),
    "DupBool": ('{__name__=~"a_total|b_total"} > bool 0', True),
    "DupAbs": ('abs({instance="x", job=""}) > 0', True),
    "DupInsideSum": ('sum(rate({__name__=~"a_total|b_total"}[5m])) > 0', True),
    "DupInsideAbsent": ('absent(rate({__name__=~".+_total", instance="x", job=""}[5m]))', True),
    # controls: several names, but their label sets stay apart once the name is gone
    "ControlRate": ('rate({__name__=~"a_total|c_total|d_total"}[5m]) > 0', False),
    "ControlArith": ('{__name__=~"a_total|c_total"} * 2 > 0', False),
    "ControlSum": ('sum by (instance) ({__name__=~"a_total|b_total"}) > 0', False),
}

#: Expressions (not rules: an alert drops ``__name__`` itself, which 2.42 reports as another error)
#: that keep the name, so two metrics' rows stay apart: no error from either engine.
KEEP_NAME = [
    '{__name__=~"a_total|b_total"} > 0',  # a filter keeps the name
    'last_over_time({__name__=~"a_total|b_total"}[5m])',  # 2.42 keeps it there too
    '{__name__=~"a_total|b_total"} unless {__name__="zzz"}',
]


def _write(tmp_path: Path, name: str, expr: str) -> Path:
    """A promtool test file for one rule; its expectation: no alert at 10m (whatever the engines say
    about the alerts is compared below, by promtool's own failure text)."""
    d = tmp_path / name
    d.mkdir()
    rules = {"groups": [{"name": "g", "rules": [{"alert": name, "expr": expr}]}]}
    (d / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": SERIES,
                "alert_rule_test": [{"eval_time": "10m", "alertname": name, "exp_alerts": []}],
            }
        ],
    }
    (d / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    return d / "test.yml"


def _promtool(path: Path) -> list[str]:
    """promtool's failure lines for one file (empty when it passes)."""
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("Unit Testing:"), proc.stdout
    if proc.returncode == 0:
        assert "SUCCESS" in proc.stdout, proc.stdout
        return []
    assert "FAILED:" in proc.stdout, proc.stdout
    return [ln for ln in lines[1:] if ln.strip() != "FAILED:"]


@pytest.mark.timeout(120)
def test_same_labelset_error_agrees_with_promtool_and_the_reference(tmp_path: Path) -> None:
    assert Path(PROMTOOL).exists(), "promtool (Debian package prometheus) is required: see .ci/run"
    for name, (expr, fails) in RULES.items():
        path = _write(tmp_path, name, expr)
        theirs = _promtool(path)
        ref = run_test_file(path, evaluate_fn=evaluate).errors
        sql = run_test_file(path, evaluate_fn=evaluate_one).errors
        where = f"{name}: {expr}"
        if fails:
            # promtool: the rule's first evaluation with two rows fails, and that ends the file
            assert len(theirs) == 1 and theirs[0].strip().startswith(f"rule: {name}, time: "), (where, theirs)
            assert theirs[0].endswith(f"err: {DUP}"), (where, theirs)
            assert [e.strip() for e in ref[:1]] == [theirs[0].strip()], (where, ref, theirs)
            assert [e.strip() for e in sql[:1]] == [theirs[0].strip()], (where, sql, theirs)
        else:
            # no rule error anywhere; the alerts firing at 10m (not expected by the file) are the
            # same in promtool's words as in ours
            assert not any(DUP in line for line in theirs), (where, theirs)
            assert theirs, f"{where}: the control fires nothing, so it tests nothing"
            assert _norm(ref) == _norm(sql) == _norm(theirs), (where, ref, sql, theirs)


def _norm(lines: list[str]) -> list[str]:
    return [ln.strip() for ln in "\n".join(lines).splitlines() if ln.strip() and ln.strip() != "FAILED:"]


def test_sql_engine_flags_duplicates_and_keeps_plain_rules_cheap() -> None:
    """Both engines give the same error object text at one time; rules whose selectors name one
    metric compile without the extra check (their SQL is unchanged, so the tick costs no more)."""
    with Simulation([], expand_input_series(SERIES), 60) as sim:
        t = EPOCH + timedelta(minutes=10)
        engine = SQLEngine(sim.lake)
        cases = list(RULES.items()) + [(f"keep {e}", (e, False)) for e in KEEP_NAME]
        got = engine.evaluate_many([expr for _, (expr, _) in cases], t)
        for (name, (expr, fails)), res in zip(cases, got, strict=True):
            try:
                want: object = evaluate(expr, sim.lake, t)
            except EvalError as e:
                want = e
            if fails:
                assert isinstance(res, EvalError) and str(res) == DUP, (name, res)
                assert isinstance(want, EvalError) and str(want) == DUP, (name, want)
            else:
                assert res == want and isinstance(res, list) and res, (name, res, want)
        assert engine.last_stats.reference_rechecks == sum(1 for _, f in RULES.values() if f)
    plain = compile_expr(parse('rate(a_total{instance="x"}[5m]) > 0'))
    multi = compile_expr(parse('rate({__name__=~"a_total|b_total"}[5m]) > 0'))
    assert "HAVING count(*) > 1" not in plain.sql and "HAVING count(*) > 1" in multi.sql

"""Rule files: loading the Prometheus shape plus our extensions, and promtool-like errors with the
file's line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tasks.alerting.rules.promql import Binary
from tasks.alerting.rules.rule_files import (
    DEFAULT_INTERVAL_S,
    RuleFileError,
    check_rule_files,
    load_rule_files,
    summarize,
)

GOOD = """\
groups:
  - name: node
    interval: 30s
    rules:
      - alert: HighCPU
        expr: avg by (instance) (cpu_usage) > 0.9
        for: 5m
        keep_firing_for: 1h30m
        labels:
          team: infra
        annotations:
          summary: "{{ $labels.instance }} at {{ $value | humanizePercentage }}"
        resolve_expr: avg by (instance) (cpu_usage) < 0.8
        no_data: keep_last
        severity: page
        runbook_url: https://runbooks.example/cpu
      - record: instance:cpu:avg
        expr: avg by (instance) (cpu_usage)
  - name: other
    rules:
      - alert: Down
        expr: |
          absent(up{job="api"})
"""


ALERT_A = "groups:\n  - name: x\n    rules:\n      - alert: A\n"


def _write(tmp_path: Path, text: str, name: str = "rules.yml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def _errors(tmp_path: Path, text: str) -> list[str]:
    p = _write(tmp_path, text)
    return [e.removeprefix(f"{p}:") for e in check_rule_files([p])]


def test_good_file_loads_with_typed_models(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD)
    rs = load_rule_files([p])
    assert [g.name for g in rs.groups] == ["node", "other"]
    node, other = rs.groups
    assert node.interval_s == 30.0 and other.interval_s == DEFAULT_INTERVAL_S
    cpu, rec = node.rules
    assert cpu.alert == "HighCPU" and cpu.is_alert and cpu.name == "HighCPU"
    assert isinstance(cpu.expr_ast, Binary) and isinstance(cpu.resolve_ast, Binary)
    assert cpu.for_s == 300.0 and cpu.keep_firing_for_s == 5400.0
    assert cpu.labels == {"team": "infra"}
    assert cpu.annotations["summary"].startswith("{{ $labels.instance }}")
    assert (cpu.no_data, cpu.severity, cpu.runbook_url) == ("keep_last", "page", "https://runbooks.example/cpu")
    assert cpu.file == str(p) and cpu.line == 5
    assert rec.record == "instance:cpu:avg" and not rec.is_alert and rec.no_data == "ok"
    assert other.rules[0].expr == 'absent(up{job="api"})\n'
    assert len(rs.rules) == 3 and len(rs.alerts) == 2
    assert check_rule_files([p]) == []
    assert summarize([p]) == ([], {str(p): (2, 3)})


def test_empty_file_and_empty_groups_are_fine(tmp_path: Path) -> None:
    assert load_rule_files([_write(tmp_path, "", "a.yml"), _write(tmp_path, "groups: []\n", "b.yml")]).groups == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'groups:\n  - name: x\n    rules:\n      - alert: "A\n',
            "5:1: YAML syntax error: found unexpected end of stream",
        ),
        (
            "groups:\n  - name: x\n   rules: []\n",
            "3:4: YAML syntax error: expected <block end>, but found '<block mapping start>'",
        ),
        ("group: []\n", "1:1: rule file: unknown field 'group' (allowed: groups)"),
        ("groups: {}\n", "1:9: groups must be a list"),
        ("groups:\n  - rules: []\n", "2:5: group: field 'name' must be set"),
        (
            "groups:\n  - name: x\n    colour: red\n",
            "3:5: group: unknown field 'colour' (allowed: interval, limit, name, query_offset, rules)",
        ),
        (
            "groups:\n  - name: x\n    interval: 1m30\n",
            "3:15: group 'x': interval: not a valid duration string: \"1m30\"",
        ),
        (
            "groups:\n  - name: x\n    interval: 1m1h\n",
            "3:15: group 'x': interval: not a valid duration string: \"1m1h\"",
        ),
        (
            "groups:\n  - name: x\n  - name: y\n  - name: x\n",
            "4:11: group name 'x' is repeated in the same file (first at line 2)",
        ),
        (
            "groups:\n  - name: x\n    rules:\n      - expr: up\n",
            "4:9: group 'x', rule 1: one of 'record' or 'alert' must be set",
        ),
        (
            ALERT_A + "",
            "4:9: group 'x', rule 1 ('A'): field 'expr' must be set in rule",
        ),
        (
            ALERT_A + "        record: b\n        expr: up\n",
            "5:9: group 'x', rule 1: only one of 'record' and 'alert' must be set",
        ),
        (
            ALERT_A + "        expr: up\n        expr: down\n",
            "6:9: group 'x', rule 1: field 'expr' already set",
        ),
        (
            ALERT_A + "        expr: up\n        for: 5x\n",
            "6:14: group 'x', rule 1 ('A'): for: not a valid duration string: \"5x\"",
        ),
        (
            ALERT_A + "        expr: up\n        keep_firing_for: -1m\n",
            "6:26: group 'x', rule 1 ('A'): keep_firing_for: not a valid duration string: \"-1m\"",
        ),
        (
            ALERT_A + "        expr: up\n        labels: {1bad: v}\n",
            "6:18: group 'x', rule 1 ('A'): labels: invalid label name '1bad' (must match [a-zA-Z_][a-zA-Z0-9_]*)",
        ),
        (
            ALERT_A + "        expr: up\n        labels:\n          __name__: v\n",
            "7:11: group 'x', rule 1 ('A'): labels: label name '__name__' is reserved (names starting with __)",
        ),
        (
            ALERT_A + "        expr: up\n        no_data: maybe\n",
            "6:18: group 'x', rule 1 ('A'): no_data must be one of nodata, alerting, ok, keep_last, got 'maybe'",
        ),
        (
            "groups:\n  - name: x\n    rules:\n      - record: b\n        expr: up\n        for: 5m\n",
            "6:9: group 'x', rule 1 ('b'): invalid field 'for' in recording rule",
        ),
        (
            "groups:\n  - name: x\n    rules:\n      - record: 'a-b'\n        expr: up\n",
            "4:17: group 'x', rule 1: invalid recording rule name 'a-b'",
        ),
        # PromQL errors are mapped from inside the expression to the file
        (
            ALERT_A + "        expr: rate(foo[5m]) >\n",
            "5:30: group 'x', rule 1 ('A'): expr: could not parse expression: unexpected end of input, expected an",
        ),
        (
            'groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: "sum(up) by (job) + @"\n',
            "5:35: group 'x', rule 1 ('A'): expr: could not parse expression: the '@' modifier is not supported",
        ),
        (
            ALERT_A + "        expr: |\n          sum(up)\n            by (job) +  )\n",
            "7:25: group 'x', rule 1 ('A'): expr: could not parse expression: unexpected ')', expected an expression",
        ),
        (
            ALERT_A + "        expr: >\n          sum(up)\n          by (job)  +\n          @\n",
            "8:11: group 'x', rule 1 ('A'): expr: could not parse expression: the '@' modifier is not supported",
        ),
        (
            ALERT_A + "        expr: up\n        resolve_expr: up{ == 1\n",
            "6:31: group 'x', rule 1 ('A'): resolve_expr: could not parse expression: unexpected end of input",
        ),
        # templates are parsed at check time, errors at their place in the file
        (
            ALERT_A + '        expr: up\n        annotations:\n          s: "{{ $labels.x }} {{ nope $value }}"\n',
            "7:34: group 'x', rule 1 ('A'): annotations.s: template: function \"nope\" not defined",
        ),
        (
            ALERT_A + "        expr: up\n        labels:\n          s: '{{ $value'\n",
            "7:15: group 'x', rule 1 ('A'): labels.s: template: unclosed action",
        ),
    ],
)
def test_each_bad_input_is_reported_at_its_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    errors = _errors(tmp_path, text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_all_errors_are_collected_and_raised(tmp_path: Path) -> None:
    text = """\
    groups:
      - name: a
        rules:
          - alert: X
            expr: rate(foo[5m]) >
            for: 5x
            colour: red
          - expr: up
      - name: a
    """
    p = _write(tmp_path, text)
    with pytest.raises(RuleFileError) as ei:
        load_rule_files([p])
    locs = [e.split(": ", 1)[0] for e in ei.value.errors]
    assert locs == [f"{p}:7:9", f"{p}:5:30", f"{p}:6:14", f"{p}:8:9", f"{p}:9:11"]
    assert str(ei.value).count("\n") == 4


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    (err,) = check_rule_files([missing])
    assert err.startswith(f"{missing}:1:1: cannot read rule file")

"""``cortex-perf rules check``: promtool-like output and exit codes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()

GOOD = """\
groups:
  - name: node
    rules:
      - alert: HighCPU
        expr: avg by (instance) (cpu_usage) > 0.9
        for: 5m
        annotations:
          summary: "{{ $labels.instance }} at {{ $value | humanizePercentage }}"
      - record: instance:cpu:avg
        expr: avg by (instance) (cpu_usage)
"""

BAD = """\
groups:
  - name: node
    rules:
      - alert: HighCPU
        expr: avg by (instance) (cpu_usage) >
        for: 5
"""


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_check_good_file(tmp_path: Path) -> None:
    p = tmp_path / "good.yml"
    p.write_text(GOOD)
    code, out, err = _run("rules", "check", str(p))
    assert code == 0, (out, err)
    assert f"Checking {p}" in out
    assert "  SUCCESS: 2 rules found" in out
    assert err == ""


def test_check_bad_file_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD)
    code, out, err = _run("rules", "check", str(good), str(bad))
    assert code == 1
    assert "SUCCESS: 2 rules found" in out and f"Checking {bad}" in out
    lines = err.splitlines()
    assert lines[0] == "  FAILED:"
    assert lines[1] == (
        f"{bad}:5:46: group 'node', rule 1 ('HighCPU'): expr: could not parse expression: "
        "unexpected end of input, expected an expression"
    )
    assert lines[2] == f"{bad}:6:14: group 'node', rule 1 ('HighCPU'): for: not a valid duration string: \"5\""
    assert len(lines) == 3


def test_check_missing_file_fails(tmp_path: Path) -> None:
    code, _, err = _run("rules", "check", str(tmp_path / "nope.yml"))
    assert code == 1
    assert "cannot read rule file" in err


def test_check_needs_a_file() -> None:
    code, _, _ = _run("rules", "check")
    assert code == 2


# ---- rules test ------------------------------------------------------------------------------------

EXAMPLE_TEST = Path(__file__).resolve().parents[3] / "data" / "examples" / "alerting" / "rules_test.yml"

FAILING_TEST = """\
rule_files: [rules.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'cpu_usage{instance="a"}'
        values: '0.95x10'
    alert_rule_test:
      - eval_time: 6m
        alertname: HighCPU
        exp_alerts: []
"""


def test_rules_test_passes_the_example() -> None:
    code, out, err = _run("rules", "test", str(EXAMPLE_TEST))
    assert code == 0, (out, err)
    assert out == f"Unit Testing:  {EXAMPLE_TEST}\n  SUCCESS\n\n"
    assert err == ""


def test_rules_test_failure_exits_1_and_shows_expected_and_got(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(GOOD)
    failing = tmp_path / "failing_test.yml"
    failing.write_text(FAILING_TEST)
    code, out, err = _run("rules", "test", str(EXAMPLE_TEST), str(failing))
    assert code == 1
    assert f"Unit Testing:  {EXAMPLE_TEST}\n  SUCCESS\n\nUnit Testing:  {failing}\n" in out
    assert err.splitlines()[:2] == ["  FAILED:", "    alertname: HighCPU, time: 6m, "]
    assert 'Labels:{alertname="HighCPU", instance="a"}' in err
    assert 'Annotations:{summary="a at 95%"}' in err


def test_rules_test_bad_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad_test.yml"
    bad.write_text("rule_files: []\ntests:\n  - interval: soon\n")
    code, _, err = _run("rules", "test", str(bad))
    assert code == 1
    assert f"{bad}:3:15: tests[0].interval: not a valid duration string" in err


def test_rules_test_help_explains_the_format() -> None:
    code, out, _ = _run("rules", "test", "--help")
    assert code == 0
    assert "promtool" in out and "input_series" in out and "exit code 1" in out


def test_check_rejects_overflowing_durations_with_file_line_col(tmp_path: Path) -> None:
    """``rate(x[99999999999999999999999d])`` passed `rules check` and then aborted `alerts run`
    for every rule (OverflowError); promtool says "duration out of range" at load time."""
    bad = tmp_path / "huge.yml"
    bad.write_text(
        "groups:\n"
        "  - name: g\n"
        "    rules:\n"
        "      - alert: Huge\n"
        "        expr: rate(x[99999999999999999999999d]) > 0\n"
        "        for: 293y\n"
    )
    code, out, err = _run("rules", "check", str(bad))
    assert code == 1, (out, err)
    assert err.splitlines()[1:] == [
        f"{bad}:5:22: group 'g', rule 1 ('Huge'): expr: could not parse expression: duration out of range",
        f"{bad}:6:14: group 'g', rule 1 ('Huge'): for: duration out of range",
    ]

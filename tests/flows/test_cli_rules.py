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

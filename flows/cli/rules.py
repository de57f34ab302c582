"""``cortex-perf rules …``: check rule files like ``promtool check rules`` and run rule unit tests like
``promtool test rules``. Parsing and printing only; the work is in ``tasks.alerting.rules.rule_files`` and
``tasks.alerting.rules.rule_tests``. Mounted on the app by ``flows.cli``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import console, err_console, handle_errors

rules_app = typer.Typer(
    help="Alerting rule files in the Prometheus rule-file format: validate them, run their promtool unit tests.",
    no_args_is_help=True,
)


@rules_app.command("check")
@handle_errors
def rules_check(
    files: Annotated[list[Path], typer.Argument(help="Rule files (YAML) to validate.", show_default=False)],
) -> None:
    """Validate rule files: YAML, fields, durations, label names, PromQL and templates.

    Prints `SUCCESS: N rules found` per valid file, or each problem as `file:line:col: message`
    (exit code 1), like `promtool check rules`."""
    from tasks.alerting.rules.rule_files import summarize  # lazy (start-up): polars, yaml

    failed = False
    for path in files:
        console.print(f"Checking {path}", markup=False, highlight=False, soft_wrap=True)
        errors, found = summarize([path])
        if errors:
            failed = True
            err_console.print("  FAILED:", markup=False, highlight=False, soft_wrap=True)
            for e in errors:
                err_console.print(e, markup=False, highlight=False, soft_wrap=True)
        else:
            _, n_rules = found[str(path)]
            console.print(f"  SUCCESS: {n_rules} rules found", markup=False, highlight=False, soft_wrap=True)
        console.print("", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@rules_app.command("test")
@handle_errors
def rules_test(
    files: Annotated[
        list[Path], typer.Argument(help="Unit-test files in promtool's format (YAML).", show_default=False)
    ],
) -> None:
    """Run rule unit tests written for `promtool test rules`, with our engine over a temporary lake.

    Each file names its `rule_files` (relative to it) and `tests` with `input_series` (promtool's
    notation: `1+2x10`, `_`, `stale`), `alert_rule_test` (firing alerts at `eval_time`) and
    `promql_expr_test`. Prints `Unit Testing:  FILE` then `  SUCCESS`, or `  FAILED:` with each
    failure showing expected and got; exit code 1 if any test fails. Example:
    `cortex-perf rules test data/examples/alerting/rules_test.yml`."""
    from tasks.alerting.rules.rule_tests import run_test_files  # lazy (start-up): polars, duckdb
    from tasks.alerting.rules.sqlcompile import evaluate_one  # the engine the alerts flow runs

    def out(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    def err(line: str) -> None:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    if run_test_files(files, out=out, err=err, evaluate_fn=evaluate_one):
        raise typer.Exit(1)

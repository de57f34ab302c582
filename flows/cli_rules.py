"""``cortex-perf rules …``: check alerting and recording rule files like ``promtool check rules``.
Parsing and printing only; the work is in ``tasks.alerting.rules``. Mounted on the main app by
``flows.cli``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import console, err_console, handle_errors

rules_app = typer.Typer(
    help="Alerting rule files in the Prometheus rule-file format (validate; unit tests to come).",
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
    from tasks.alerting.rules import summarize

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

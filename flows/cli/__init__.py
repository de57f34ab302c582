"""``cortex-perf``: the command line. It parses, calls ``tasks``/``flows``, and formats — nothing else.

This package is the app: it builds the typer ``app`` with the global options and mounts the command
groups, one module each (``run``, ``config``, ``lake``, ``models``, ``rules``, ``alerts``, ``scale``,
``status``, ``analytics``, ``report``, ``cache``, ``gpu``, ``router``). A group imports only
``flows.cli.common`` (consoles, errors, global options, output helpers) and ``flows.cli.output``,
never this module, so nothing imports back.

Why Prefect is imported lazily (inside the commands that run flows): Prefect reads its settings
when it is first imported, and the CLI must set them first — a per-checkout ``PREFECT_HOME``, a
longer start-up timeout for the temporary server Prefect starts when no ``PREFECT_API_URL`` is set
(15–25 s here; the default 20 s fails on a busy machine), and no telemetry. Commands that only
read the lake or the config never import Prefect at all, so they answer in well under a second.
The domain modules (polars, duckdb, pydantic: 0.2–1.4 s each) are imported inside the commands for
the same reason: every ``--help`` loads every group.

Errors are one line on stderr and exit code 2 (``config check``: exit 1); set
``CORTEX_PERF_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.alerts import alerts_app
from flows.cli.analytics import export_cmd, insights_cmd, root_cause_cmd
from flows.cli.cache import cache_app
from flows.cli.common import CliState, prepare_prefect_env
from flows.cli.config import config_app
from flows.cli.gpu import gpu_app
from flows.cli.lake import lake_app
from flows.cli.models import anomaly_app, forecast_app
from flows.cli.report import report_command
from flows.cli.router import router_app
from flows.cli.rules import rules_app
from flows.cli.run import collect, run, serve
from flows.cli.scale import scale_app
from flows.cli.status import status
from tasks.redact import install_log_redaction

__all__ = ["app", "main"]

app = typer.Typer(
    name="cortex-perf",
    help=(
        "cortex-perf: performance optimisation for AI-agent and data platforms — Prefect flows "
        "around a Parquet/DuckDB metric lake.\n\n"
        "Start with `cortex-perf run --demo`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $CORTEX_PERF_CONFIG, else ./cortex-perf.yaml if present).",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Override one setting, e.g. `--set lake.root=/tmp/lake` (repeatable; beats file and env).",
            show_default=False,
        ),
    ] = None,
) -> None:
    prepare_prefect_env()
    install_log_redaction()  # URL credentials never reach a log line, ours or Prefect's
    ctx.obj = CliState(config=config, overrides=list(set_ or []))


# The order of registration is the order of `cortex-perf --help`: commands, then groups.
app.command()(run)
app.command()(collect)
app.command()(serve)
app.command("status")(status)
app.command("insights")(insights_cmd)
app.command("root-cause")(root_cause_cmd)
app.command("export")(export_cmd)
app.command("report")(report_command)
app.add_typer(config_app, name="config")
app.add_typer(lake_app, name="lake")
app.add_typer(forecast_app, name="forecast")
app.add_typer(anomaly_app, name="anomaly")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(scale_app, name="scale")
app.add_typer(cache_app, name="cache")
app.add_typer(gpu_app, name="gpu")
app.add_typer(router_app, name="router")


def main() -> None:
    """Console-script entry point (``cortex-perf``)."""
    prepare_prefect_env()
    app()

"""``cortex-perf status``: every component's health as a table or JSON; exit code 1 when one is down.

Parsing and printing only; the checks are in ``tasks.health``. Mounted on the main app by
``flows.cli``. Prefect is imported only when ``PREFECT_API_URL`` (or ``sources.prefect.api_url``)
names an API to ask about flow runs, so the command answers in about a second otherwise.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.common import cli_state, console, err_console, handle_errors, print_json
from flows.cli.output import DataTable, escape, styled

_STYLE = {"OK": "green", "degraded": "yellow", "down": "bold red", "unknown": "dim"}


@handle_errors
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Do not write cortex_perf_component_up samples to the lake.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds all checks together may take.", min=0.1)] = 10.0,
) -> None:
    """Health of every component (sources, lake, state DB, flows, alert channels, actuators).

    Exit code 1 when anything is down; degraded and unknown components do not fail it."""
    from tasks.health import any_down, check_health, record_health  # lazy (start-up): polars
    from tasks.lake.schema import now_utc  # lazy (start-up): polars

    cli = cli_state(ctx)
    settings = cli.settings()
    lake = cli.lake()
    now = now_utc()
    results = check_health(settings, lake, now=now, timeout_s=timeout)
    if not no_record:
        try:
            record_health(lake, results, now)
        except Exception as exc:  # the report matters more than recording it
            err_console.print(f"[yellow]warning:[/yellow] could not record health in the lake: {escape(str(exc))}")
    down = any_down(results)
    if as_json:
        print_json({"ok": not down, "checked_at": now.isoformat(), "components": [r.to_dict() for r in results]})
    else:
        counts = {s: sum(r.status == s for r in results) for s in _STYLE}
        title = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        t = DataTable(title=f"cortex-perf status: {title}")
        for col in ("component", "status", "why"):
            t.add_column(col, overflow="fold")
        for r in results:
            t.add_row(r.name, styled(r.status, _STYLE[r.status]), r.why)
        console.print(t)
    if down:
        raise typer.Exit(1)

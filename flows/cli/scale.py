"""``cortex-perf scale …``: plan, apply, history and right-sizing advice for the scaling targets.
Parsing and printing only; the work is in ``tasks.scaling.service``. Mounted on the app by ``flows.cli``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from flows.cli.common import CliError, cli_state, console, handle_errors, print_json
from flows.cli.output import DataTable
from tasks.timeparse import parse_duration

if TYPE_CHECKING:  # for annotations only: a real import costs every command's start-up pydantic (see flows.cli)
    from tasks.config import Settings

scale_app = typer.Typer(
    help="Scaling targets: plan a decision, apply it, see the history, get right-sizing advice.",
    no_args_is_help=True,
)

TargetArg = Annotated[
    str | None,
    typer.Argument(help="One target by name (default: every target in scaling.targets).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fmt(v: Any, pattern: str = "{:.4g}") -> str:
    return "—" if v is None else pattern.format(v)


def _decisions_table(run: Any, title: str) -> DataTable:
    t = DataTable(title=title, title_justify="left")
    for col in ("target", "status", "from → to", "policy", "load", "forecast", "cost/h", "risk", "reason"):
        t.add_column(col, overflow="fold")
    for o in run.outcomes:
        d = o.decision or {}
        status = o.status + (" (re-run)" if o.replayed else "") + (" EMERGENCY" if d.get("emergency") else "")
        t.add_row(
            o.target,
            status,
            f"{d['from']} → {d['to']}" if d else "—",
            d.get("policy", "—"),
            _fmt(d.get("load")),
            d.get("forecast_model") or d.get("forecast_source", "—") if d else "—",
            _fmt(d.get("expected_cost_per_hour"), "{:.2f}"),
            _fmt(d.get("risk"), "{:.1%}"),
            o.error or d.get("reason", ""),
        )
    return t


def _action_text(a: dict[str, Any]) -> str:
    text = str(a["status"]) + (f" ({a['error']})" if a["error"] else "")
    return text + (f" ×{a['attempts']}" if a["attempts"] > 1 else "")


def _targets(settings: Settings, target: str | None) -> list[str] | None:
    if not settings.scaling.targets:
        raise CliError("no scaling targets configured (scaling.targets in the config file)", code=1)
    return [target] if target else None


@scale_app.command("plan")
@handle_errors
def scale_plan(ctx: typer.Context, target: TargetArg = None, as_json: JsonOpt = False) -> None:
    """The decision each target would get now, and why. Nothing is recorded or applied."""
    from tasks.scaling.service import run_scaling  # lazy (start-up): polars, duckdb, pydantic

    st = cli_state(ctx)
    settings = st.settings()
    run = run_scaling(settings, st.lake(), mode=settings.scaling.mode, targets=_targets(settings, target), record=False)
    if as_json:
        print_json(run.to_dict())
    else:
        console.print(_decisions_table(run, f"Plan at {run.now:%Y-%m-%d %H:%M:%S} UTC (nothing applied)"))
    if run.failed:
        raise typer.Exit(1)


@scale_app.command("apply")
@handle_errors
def scale_apply(
    ctx: typer.Context,
    target: TargetArg = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and record, but let the actuators change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run one scaling tick now and apply it through the actuators (what the `scale` flow does in apply mode).

    Exit 1 when any target failed (the failure is recorded as an `action.failed` event)."""
    from tasks.scaling.service import run_scaling  # lazy (start-up): polars, duckdb, pydantic

    st = cli_state(ctx)
    settings = st.settings()
    mode: Literal["dry-run", "apply"] = "dry-run" if dry_run else "apply"
    run = run_scaling(settings, st.lake(), mode=mode, targets=_targets(settings, target))
    if as_json:
        print_json(run.to_dict())
    else:
        console.print(_decisions_table(run, f"Tick at {run.now:%Y-%m-%d %H:%M:%S} UTC ({mode})"))
    if run.failed:
        raise typer.Exit(1)


@scale_app.command("history")
@handle_errors
def scale_history(
    ctx: typer.Context,
    target: TargetArg = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most decisions shown.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recorded decisions (newest first) and what the actuators did with them."""
    from tasks.scaling.history import decision_history  # lazy (start-up): duckdb, pydantic

    settings = cli_state(ctx).settings()
    if target:
        settings.scaling.target(target)  # a typo is an error naming the known targets
    rows = decision_history(settings, target, limit=limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No scaling decision recorded yet (run `cortex-perf scale apply` or the `scale` flow).")
        return
    t = DataTable(title="Scaling decisions (newest first)", title_justify="left")
    for col in ("tick", "target", "from → to", "policy", "mode", "action", "reason"):
        t.add_column(col, overflow="fold")
    for r in rows:
        acts = "; ".join(_action_text(a) for a in r["actions"])
        if not acts:
            acts = "hold" if r["from"] == r["to"] else ("recorded only" if r["mode"] == "dry-run" else "not applied")
        policy = r["policy"] + (" EMERGENCY" if r.get("emergency") else "")
        t.add_row(r["tick"][:19].replace("T", " "), r["target"], f"{r['from']} → {r['to']}", policy, r["mode"], acts,
                  r.get("reason", ""))  # fmt: skip
    console.print(t)


@scale_app.command("recommend")
@handle_errors
def scale_recommend(
    ctx: typer.Context,
    lookback: Annotated[str, typer.Option("--lookback", help="Load history to judge by (e.g. 1d, 7d).")] = "1d",
    hours: Annotated[float, typer.Option("--hours", min=0.25, help="How far ahead forecasts are checked.")] = 6.0,
    as_json: JsonOpt = False,
) -> None:
    """Right-sizing advice with numbers: idle floors, cheaper night settings, saturation, SLO risk ahead."""

    from tasks.scaling.service import recommend  # lazy (start-up): polars, duckdb, pydantic

    st = cli_state(ctx)
    settings = st.settings()
    _targets(settings, None)
    recs = recommend(settings, st.lake(), lookback=parse_duration(lookback), horizon=timedelta(hours=hours))
    if as_json:
        print_json(recs)
        return
    t = DataTable(
        title=f"Recommendations (load over the last {lookback}, forecasts {hours:g} h ahead)", title_justify="left"
    )
    for col in ("target", "finding", "advice"):
        t.add_column(col, overflow="fold")
    for r in recs:
        t.add_row(r["target"], r["kind"], r["message"])
    console.print(t)

"""``cortex-perf gpu rebalance|optimize``: plan moves of queued and preemptible GPU tasks, and apply them.

Parsing and printing only; the plan is ``tasks.gpu.rebalance`` and applying it goes through the
``gpu_rebalance`` actuator (``tasks.gpu.rebalance_actuator``: ledger, once per plan, ``gpu.rebalanced``
and ``action.*`` events in the lake). ``rebalance`` is a **dry run unless given ``--apply``** (the
design's rule: it stops running processes); ``optimize`` only plans. Registered on ``gpu_app`` by
``flows.cli.gpu``; domain modules are imported inside the commands (start-up).

Devices: ``--devices FILE`` (a declared fleet, as ``gpu place`` takes), else this host's inventory
(``gpu.inventory.source``), whose thermal/power findings mark devices hot; ``--hot`` adds devices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows.cli.common import CliError, cli_state, console, fail, handle_errors, print_json
from flows.cli.gpu_queue import DevicesOpt, _devices
from flows.cli.output import DataTable, escape

if TYPE_CHECKING:
    from tasks.gpu.rebalance import RebalancePlan

__all__ = ["optimize_cmd", "rebalance_cmd"]

#: health findings that make a device "hot": move preemptible work off it

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
HotOpt = Annotated[
    list[str] | None,
    typer.Option("--hot", help="A device to move preemptible work off (its UUID, or NODE:ID). Repeatable."),
]
StrategyOpt = Annotated[
    str | None, typer.Option("--strategy", help="Where moved tasks go (default: the gpu strategy in force).")
]


def _plan(
    ctx: typer.Context, path: Any, hot_opt: list[str] | None, strategy: str | None, *, consolidate: bool
) -> tuple[RebalancePlan, Any, str | None]:
    """The plan for --devices FILE, else this host's inventory (its hot devices from health findings)."""
    from tasks.gpu.placement import STRATEGIES  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.service import hot_devices, inventory, placeable, rebalance_plan  # lazy (start-up): idem

    if strategy is not None and (strategy not in STRATEGIES or strategy == "random"):
        raise CliError(f"strategy: unknown {strategy!r} (one of {', '.join(n for n in STRATEGIES if n != 'random')})")
    for h in hot_opt or []:
        if not 0 < len(h) <= 200:
            raise CliError(f"--hot: {h[:40]!r} is not a device id")
    st = cli_state(ctx)
    status: str | None = None
    hot: set[str] = set(hot_opt or [])
    if path is not None:
        devs: list[Any] = _devices(path)
    else:
        inv = inventory(st.settings(), st.lake())
        devs, status = placeable(inv.devices), inv.status
        hot |= hot_devices(inv)
    plan, queue = rebalance_plan(st.settings(), st.state(), devs, hot=hot, strategy=strategy, consolidate=consolidate)
    return plan, queue, status


def _print_plan(plan: RebalancePlan, status: str | None) -> None:
    if status:
        console.print(f"[dim]{escape(status)}[/dim]", highlight=False, soft_wrap=True)
    if plan.moves:
        t = DataTable(title=f"rebalancing plan ({plan.strategy})", title_justify="left")
        for col in ("task", "state", "owner", "from", "to", "why"):
            t.add_column(col, overflow="fold")
        for m in plan.moves:
            why = m.why + (f" for {m.for_task}" if m.for_task else "")
            t.add_row(m.task_id, m.state, m.owner, f"{m.from_node}:{','.join(m.from_devices)}",
                      f"{m.to_node}:{','.join(m.to_devices)}", why)  # fmt: skip
        console.print(t)
    for f in plan.freed:
        whom = f"for task {f.for_task}" if f.for_task else "(consolidation)"
        console.print(f"frees {escape(f.node)}:{escape(','.join(f.devices))} {escape(whom)}", highlight=False)
    for n in plan.notes:
        console.print(f"note: {escape(n)}", highlight=False)
    console.print(escape(plan.summary()), highlight=False)


@handle_errors
def rebalance_cmd(
    ctx: typer.Context,
    devices: DevicesOpt = None,
    hot: HotOpt = None,
    strategy: StrategyOpt = None,
    grace_s: Annotated[
        float, typer.Option("--grace-s", min=0, max=600, help="Seconds a stopped task gets before SIGKILL.")
    ] = 10.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run/--apply",
            help="--dry-run (the default): print the plan, change nothing. --apply: stop, requeue and pin the "
            "moved tasks (recorded as an action, once per plan).",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Move queued and preemptible tasks off hot devices and free whole GPUs for queued tasks that fit
    nowhere although enough is free in total. Never moves running non-preemptible work."""
    plan, queue, status = _plan(ctx, devices, hot, strategy, consolidate=False)
    if dry_run or plan.empty:
        if json_out:
            print_json({**plan.to_json(), "status": "dry-run" if dry_run else "nothing to do"})
        else:
            _print_plan(plan, status)
            if dry_run and not plan.empty:
                console.print("[dim]dry run: nothing changed (add --apply to do it)[/dim]")
        return
    from tasks.actuators import ActionLedger  # lazy (start-up): duckdb, pydantic (see flows/cli/common.py)
    from tasks.gpu.rebalance_actuator import run_rebalance  # lazy (start-up): pulls tasks.actuators

    st = cli_state(ctx)
    with console.status("stopping and requeueing the moved tasks…"):
        result = run_rebalance(plan, queue=queue, ledger=ActionLedger.from_settings(st.settings()), lake=st.lake(),
                               dry_run=False, grace_s=grace_s)  # fmt: skip
    if json_out:
        print_json({**plan.to_json(), **result.to_dict()})
    else:
        _print_plan(plan, status)
        console.print(f"{result.status}: action {result.decision_id}", highlight=False, markup=False)
        if result.detail.get("reason"):
            console.print(f"  ({result.detail['reason']})", highlight=False, markup=False)
    if not result.ok:
        fail(f"rebalance failed: {result.error}", 1)


@handle_errors
def optimize_cmd(
    ctx: typer.Context,
    devices: DevicesOpt = None,
    hot: HotOpt = None,
    strategy: StrategyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The plan for the current state with no waiting task (optimizeMemoryAllocation): cool hot
    devices and consolidate shared tasks so whole GPUs come free. Plans only; `gpu rebalance --apply`
    acts."""
    plan, _, status = _plan(ctx, devices, hot, strategy, consolidate=True)
    if json_out:
        print_json({**plan.to_json(), "status": "plan"})
    else:
        _print_plan(plan, status)

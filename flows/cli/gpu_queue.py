"""``cortex-perf gpu submit|cancel|status|queue|strategy|place``: the GPU work queue and placement.

Parsing and printing only; the work is in ``tasks.gpu`` (queue, scheduler, launch). Registered on
``gpu_app`` by ``flows.cli.gpu``; domain modules are imported inside the commands (start-up).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flows.cli.common import CliError, cli_state, console, handle_errors, human_bytes, print_json
from flows.cli.output import DataTable

__all__ = ["cancel_cmd", "place_cmd", "queue_cmd", "status_cmd", "strategy_cmd", "submit_cmd"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DevicesOpt = Annotated[
    Path | None,
    typer.Option(
        "--devices",
        help="A JSON list of devices ({host, index, uuid, memory_total_bytes, memory_used_bytes}) to place on, "
        "instead of this host's inventory.",
        dir_okay=False,
    ),
]


def _devices(path: Path | None) -> list[Any]:
    """The devices to place on: a declared fleet file, else none known (the inventory fills this)."""
    from tasks.gpu.cluster import DeviceRecord  # lazy (start-up): see flows/cli/common.py

    if path is None:
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CliError(f"--devices: cannot read {path}: {e}") from None
    if not isinstance(data, list) or len(data) > 100_000:
        raise CliError("--devices: not a JSON list of devices (at most 100,000)")
    return [DeviceRecord.from_json(d) if isinstance(d, dict) else DeviceRecord.from_json({}) for d in data]


def _max_gpus(devices: list[Any]) -> int | None:
    per_host: dict[str, int] = {}
    for d in devices:
        per_host[d.host] = per_host.get(d.host, 0) + 1
    return max(per_host.values()) if per_host else None


@handle_errors
def submit_cmd(
    ctx: typer.Context,
    gpus: Annotated[int, typer.Option("--gpus", help="Whole GPUs needed (1 with --gpu-fraction for a share).")],
    command: Annotated[str | None, typer.Option("--command", help="The command to run (split like a shell).")] = None,
    deployment: Annotated[str | None, typer.Option("--deployment", help="A Prefect deployment FLOW/NAME.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="A deployment parameter k=v (repeat).")] = None,
    fraction: Annotated[float, typer.Option("--gpu-fraction", help="Share of one GPU (0 < F ≤ 1).")] = 1.0,
    memory: Annotated[str, typer.Option("--memory", help="GPU memory per GPU, e.g. 20GiB.")] = "0",
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first.")] = 0,
    preemptible: Annotated[bool, typer.Option("--preemptible", help="Rebalancing may move it.")] = False,
    max_wait: Annotated[str | None, typer.Option("--max-wait", help="Expire if not started within, e.g. 2h.")] = None,
    owner: Annotated[str, typer.Option("--owner", help="Whose (quotas: gpu.queue.quotas).")] = "default",
    devices: DevicesOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and show the task; queue nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Queue GPU work: a command or a Prefect deployment, with its GPUs, memory and priority."""
    from tasks.gpu.request import GpuRequest, parse_bytes  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.scheduler import queue_from_settings  # lazy (start-up): see flows/cli/common.py
    from tasks.timeparse import parse_duration  # lazy (start-up): see flows/cli/common.py

    if (command is None) == (deployment is None):
        raise CliError("give exactly one of --command or --deployment")
    params: dict[str, Any] = {}
    for p in param or []:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise CliError(f"--param: {p!r} is not k=v")
        try:
            params[k.strip()] = json.loads(v)
        except ValueError:
            params[k.strip()] = v
    argv: tuple[str, ...] = ()
    if command is not None:
        try:
            argv = tuple(shlex.split(command))
        except ValueError as e:
            raise CliError(f"--command: {e}") from None
    req = GpuRequest(
        "command" if command is not None else "deployment",
        gpus,
        command=argv,
        deployment=deployment,
        parameters=params,
        fraction=fraction,
        memory_bytes=parse_bytes(memory),
        priority=priority,
        preemptible=preemptible,
        max_wait_s=parse_duration(max_wait).total_seconds() if max_wait else None,
        owner=owner,
    )
    req.check_fits(_max_gpus(_devices(devices)))
    st = cli_state(ctx)
    settings = st.settings()
    quota = settings.gpu.queue.quotas.get(req.owner)
    if quota is not None and req.gpus * req.fraction > quota:
        raise CliError(f"gpus: {req.gpus * req.fraction:g} is over owner {req.owner}'s quota of {quota} GPUs")
    if dry_run:
        out = {"dry_run": True, "would_queue": {"kind": req.kind, "gpus": req.gpus, "fraction": req.fraction,
               "memory_bytes": req.memory_bytes, "priority": req.priority, "owner": req.owner}}  # fmt: skip
        print_json(out) if json_out else console.print(f"dry run: would queue {escape(json.dumps(out['would_queue']))}")
        return
    row = queue_from_settings(settings, st.state()).submit(req)
    if json_out:
        print_json(row.to_json())
    else:
        console.print(f"queued {row.id} ({row.gpus} GPU(s), priority {row.priority}, owner {escape(row.owner)})")


@handle_errors
def cancel_cmd(ctx: typer.Context, task_id: Annotated[str, typer.Argument(help="The task id.")]) -> None:
    """Cancel a queued or running task (a running local one is stopped, its reservation released)."""
    from tasks.gpu.scheduler import queue_from_settings  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    q = queue_from_settings(st.settings(), st.state())
    before = q.get(task_id)
    row = q.cancel(task_id)
    if before is not None and before.status == "running" and before.pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(before.pid, signal.SIGTERM)  # the wrapper passes it on to the command
    console.print(f"cancelled {escape(row.id)}")


def _task_table(rows: list[Any], title: str) -> DataTable:
    t = DataTable(title=title, title_justify="left")
    for col in ("id", "status", "owner", "prio", "gpus", "memory", "what", "node", "devices", "submitted"):
        t.add_column(col, overflow="fold")
    for r in rows:
        what = " ".join(r.spec.get("command", [])) or str(r.spec.get("deployment"))
        gpus = f"{r.gpus}" if r.milli == 1000 else f"{r.milli / 1000:g}"
        when = r.submitted_at.strftime("%Y-%m-%d %H:%M:%S")
        devices = ",".join(r.devices or []) or "—"
        t.add_row(r.id, r.status, r.owner, str(r.priority), gpus, human_bytes(r.memory_bytes), what[:80],
                  r.node or "—", devices, when)  # fmt: skip
    return t


@handle_errors
def status_cmd(
    ctx: typer.Context, task_id: Annotated[str, typer.Argument(help="The task id.")], json_out: JsonOpt = False
) -> None:
    """One task: its state, placement, process and exit code."""
    from tasks.gpu.scheduler import queue_from_settings  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    row = queue_from_settings(st.settings(), st.state()).get(task_id)
    if row is None:
        raise CliError(f"task: no task {task_id!r}", code=1)
    if json_out:
        print_json(row.to_json())
        return
    console.print(_task_table([row], f"GPU task {row.id}"))
    if row.reason:
        console.print(f"reason: {escape(row.reason)}")


@handle_errors
def queue_cmd(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Finished tasks too (the last 100).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Queued and running tasks, in the order they will be placed."""
    from tasks.gpu.scheduler import queue_from_settings  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    q = queue_from_settings(st.settings(), st.state())
    rows = q.reservations() + q.ordered()
    if all_:
        seen = {r.id for r in rows}
        rows += [r for r in q.tasks(limit=100) if r.id not in seen]
    if json_out:
        print_json([r.to_json() for r in rows])
        return
    if not rows:
        console.print("the GPU queue is empty")
        return
    console.print(_task_table(rows, "GPU queue (running, then queued in placement order)"))


@handle_errors
def strategy_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="best_fit, first_fit, spread or fragmentation_aware.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; change nothing.")] = False,
) -> None:
    """Show the default placement strategy, or set it (kept in the state DB across restarts)."""
    from tasks.gpu.scheduler import (
        CHOOSABLE,
        default_strategy,
        set_default_strategy,
    )  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    current = default_strategy(st.settings(), st.state())
    if name is None:
        console.print(f"strategy: {current}")
        return
    if name not in CHOOSABLE:
        raise CliError(f"strategy: unknown {name!r} (one of {', '.join(CHOOSABLE)})")
    if dry_run:
        console.print(f"dry run: strategy would change from {current} to {escape(name)}")
        return
    set_default_strategy(st.state(), name)
    console.print(f"strategy: {current} → {name}")


@handle_errors
def place_cmd(
    ctx: typer.Context,
    devices: DevicesOpt = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="This pass only (default: gpu strategy).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show; start nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Place what is queued on the current devices and launch it (what the gpu flow runs each minute)."""
    from tasks.gpu.placement import STRATEGIES  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.scheduler import place_queued, this_host  # lazy (start-up): see flows/cli/common.py

    if strategy is not None and strategy not in STRATEGIES:
        raise CliError(f"strategy: unknown {strategy!r} (one of {', '.join(sorted(STRATEGIES))})")
    st = cli_state(ctx)
    devs = _devices(devices)
    local = None
    if devices is None:  # this host's inventory (NVML, DCGM or the lake, as configured)
        from tasks.gpu.service import inventory, placeable  # lazy (start-up): see flows/cli/common.py

        devs = placeable(inventory(st.settings(), st.lake()).devices)
        local = [this_host()]
    res = place_queued(st.settings(), st.state(), devs, strategy=strategy, dry_run=dry_run, local_nodes=local)
    if json_out:
        print_json(res.to_json())
        return
    if not devs:
        console.print("no GPU devices known (see `cortex-perf gpu list`; or give --devices): nothing placed")
    t = DataTable(title=f"placement ({res.strategy}{', dry run' if dry_run else ''})", title_justify="left")
    for col in ("task", "owner", "placed", "node", "devices", "pid / run", "reason"):
        t.add_column(col, overflow="fold")
    for d in res.decisions:
        p = d.placement
        t.add_row(d.task_id, d.owner, "yes" if d.placed else "no", p.node_name if p else "—",
                  ",".join(p.device_ids) if p else "—", str(d.pid or d.flow_run_id or "—"), d.reason or "")  # fmt: skip
    console.print(t)
    for tid in res.ended:
        console.print(f"released {tid}: its deployment run is over")
    for tid in res.lost:
        console.print(f"released {tid}: its process or flow run is gone")
    for tid in res.expired:
        console.print(f"expired {tid}: waited longer than its max wait")

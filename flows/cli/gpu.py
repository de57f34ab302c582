"""``cortex-perf gpu …``: GPU inventory and health, the GPU work queue, placement and rebalancing.

Parsing and printing only; the work is in ``tasks.gpu``. Mounted on the app by ``flows.cli``. The
domain modules are imported inside the commands (see flows/cli/common.py: every ``--help`` loads
every group).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.common import cli_state, console, handle_errors, human_bytes, print_json
from flows.cli.gpu_queue import cancel_cmd, place_cmd, queue_cmd, status_cmd, strategy_cmd, submit_cmd
from flows.cli.gpu_rebalance import optimize_cmd, rebalance_cmd
from flows.cli.output import DataTable, escape

if TYPE_CHECKING:
    from tasks.gpu.model import Device, DeviceWork, GpuInventory

gpu_app = typer.Typer(
    help="GPUs: inventory and health, a priority queue of GPU work, placement strategies, rebalancing.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Window = Annotated[
    str, typer.Option("--window", help="History read from the lake for idle-time and consolidation advice (e.g. 6h).")
]


def device_work(ctx: typer.Context, devices: Iterable[Device]) -> Mapping[str, DeviceWork]:
    """What the GPU queue runs on each device, by ``Device.key`` (tasks.gpu.service.device_work)."""
    from tasks.gpu.service import device_work as work_of  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    return work_of(st.settings(), st.state(), devices)


def _inventory(ctx: typer.Context) -> GpuInventory:
    from tasks.gpu.service import inventory  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    return inventory(st.settings(), st.lake())


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def _num(v: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}{unit}"


def _mem(d: Device) -> str:
    if d.memory_total_bytes is None:
        return "—"
    used = "?" if d.memory_used_bytes is None else human_bytes(d.memory_used_bytes)
    return f"{used} / {human_bytes(d.memory_total_bytes)} ({_pct(d.memory_used_ratio)})"


def _status(inv: GpuInventory) -> None:
    console.print(f"[dim]{escape(inv.status)}[/dim]", highlight=False, soft_wrap=True)


@gpu_app.command("list")
@handle_errors
def list_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every GPU: memory, utilisation, temperature, power, health, and the work queued and running on it.

    Source: `gpu.inventory.source` (auto: NVML here, else the DCGM exporter, else the lake). No GPU
    or no driver is a status line and exit 0."""
    from tasks.gpu.health import device_findings, health_word  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.model import DeviceWork  # lazy (start-up): see flows/cli/common.py

    inv = _inventory(ctx)
    work = device_work(ctx, inv.devices)
    if json_out:
        devices = [
            {**d.to_json(), "health": [f.to_json() for f in device_findings(d)],
             "work": work.get(d.key, DeviceWork()).to_json() if work is not None else None}
            for d in inv.devices
        ]  # fmt: skip
        print_json({**inv.to_json(), "devices": devices})
        return
    _status(inv)
    if not inv.devices:
        return
    t = DataTable(title=f"GPUs ({inv.source})", title_justify="left")
    for col in ("gpu", "name", "memory used", "util", "temp", "power", "health", "running", "queued"):
        t.add_column(col, justify="right" if col in ("util", "temp", "power") else "left", overflow="fold")
    for d in inv.devices:
        w = work.get(d.key, DeviceWork()) if work is not None else None
        power = (
            "—"
            if d.power_w is None
            else f"{d.power_w:.0f}" + (f"/{d.power_limit_w:.0f} W" if d.power_limit_w else " W")
        )
        t.add_row(
            d.label,
            d.name or "—",
            _mem(d),
            _pct(d.utilization_ratio) if d.utilization_ratio is not None or not d.mig_enabled else "n/a (MIG)",
            _num(d.temperature_c, " °C"),
            power,
            health_word(device_findings(d)),
            "—" if w is None else (", ".join(w.running) or "none"),
            "—" if w is None else (", ".join(w.queued) or "none"),
        )
    console.print(t)


@gpu_app.command("stats")
@handle_errors
def stats_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every GPU in detail: clocks and throttle reasons, ECC, retired/remapped rows, MIG instances,
    processes and their memory, and the health findings with their numbers."""
    from tasks.gpu.health import device_findings  # lazy (start-up): see flows/cli/common.py

    inv = _inventory(ctx)
    if json_out:
        devices = [{**d.to_json(), "health": [f.to_json() for f in device_findings(d)]} for d in inv.devices]
        print_json({**inv.to_json(), "devices": devices})
        return
    _status(inv)
    if not inv.devices:
        return
    t = DataTable(title=f"GPU details ({inv.source})", title_justify="left")
    for col in ("gpu", "clocks sm/max · mem", "throttle", "ecc vol c/u · agg c/u", "retired · remapped c/u",
                "mig", "processes (memory)"):  # fmt: skip
        t.add_column(col, overflow="fold")
    for d in inv.devices:
        throttle = "—" if d.throttle_reasons is None else (", ".join(d.throttle_reasons) or "none")
        remap = "—" if d.remapped_rows_correctable is None else (
            f"{d.remapped_rows_correctable}/{d.remapped_rows_uncorrectable}"
            + (" pending" if d.remap_pending else "") + (" FAILED" if d.remap_failure else ""))  # fmt: skip
        mig = "—" if d.mig_enabled is None else "off" if not d.mig_enabled else (
            "on: " + ", ".join(f"{m.name or m.index} {human_bytes(m.memory_used_bytes or 0)}" for m in d.mig_instances)
        )  # fmt: skip
        procs = "—" if d.processes is None else ", ".join(
            f"{p.pid} ({human_bytes(p.used_memory_bytes) if p.used_memory_bytes is not None else 'n/a'})"
            for p in d.processes
        ) or "none"  # fmt: skip
        t.add_row(
            d.label,
            f"{_num(d.sm_clock_mhz)}/{_num(d.max_sm_clock_mhz)} · {_num(d.memory_clock_mhz)} MHz",
            throttle,
            f"{_num(d.ecc_volatile_corrected)}/{_num(d.ecc_volatile_uncorrected)} · "
            f"{_num(d.ecc_aggregate_corrected)}/{_num(d.ecc_aggregate_uncorrected)}",
            f"{_num(d.retired_pages)} · {remap}",
            mig,
            procs,
        )
    console.print(t)
    for d in inv.devices:
        for f in device_findings(d):
            console.print(f"{escape(f.severity)}: {escape(f.message)}", highlight=False)
        for n in d.notes:
            console.print(f"[dim]{escape(d.label)}: {escape(n)}[/dim]", highlight=False)


@gpu_app.command("advise")
@handle_errors
def advise_cmd(ctx: typer.Context, window: Window = "6h", json_out: JsonOpt = False) -> None:
    """Recommendations with numbers: idle GPUs holding memory (over --window of the lake's history),
    near thermal/power limits, memory pressure, consolidation that would free GPUs."""
    from tasks.gpu.advice import advise  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.history import usage_from_lake  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.scheduler import queue_from_settings  # lazy (start-up): see flows/cli/common.py
    from tasks.gpu.service import placeable, reservation_use  # lazy (start-up): see flows/cli/common.py
    from tasks.timeparse import parse_duration  # lazy (start-up): see flows/cli/common.py

    span = parse_duration(window)
    inv = _inventory(ctx)
    now = datetime.now(UTC)
    st = cli_state(ctx)
    usage = usage_from_lake(st.lake(), now - span, now)
    running = queue_from_settings(st.settings(), st.state()).tasks(statuses=["running"])
    found = advise(inv, usage=usage, reservations=reservation_use(running, placeable(inv.devices)))
    if json_out:
        print_json({"source": inv.source, "status": inv.status, "window": window,
                    "advice": [a.to_json() for a in found]})  # fmt: skip
        return
    _status(inv)
    if not found:
        console.print(f"No recommendations for {len(inv.devices)} GPU(s).", highlight=False)
        return
    t = DataTable(title="GPU recommendations", title_justify="left")
    for col in ("severity", "target", "finding", "what to do"):
        t.add_column(col, overflow="fold")
    for a in found:
        t.add_row(a.severity, a.target, a.message, a.action)
    console.print(t)


# The queue's commands live in gpu_queue.py (submit, cancel, status, queue, strategy, place).
gpu_app.command("submit")(submit_cmd)
gpu_app.command("cancel")(cancel_cmd)
gpu_app.command("status")(status_cmd)
gpu_app.command("queue")(queue_cmd)
gpu_app.command("strategy")(strategy_cmd)
gpu_app.command("place")(place_cmd)
# Rebalancing lives in gpu_rebalance.py (rebalance, optimize).
gpu_app.command("rebalance")(rebalance_cmd)
gpu_app.command("optimize")(optimize_cmd)

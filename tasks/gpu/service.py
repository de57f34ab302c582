"""One GPU tick, and what the CLI shares with it: the inventory as placeable devices, the queue's
work per device, the queue's reservations for the advice.

Why here: ``cortex-perf gpu place|list|advise`` and the ``gpu`` flow must see the same devices
(the local NVML host named as the scheduler names it), the same reservations and the same advice,
so both call these functions; the flow only adds scheduling, artifacts and logs.

A tick: read the inventory; place what is queued on it (local commands on this host, deployment
runs anywhere), each placement a ``gpu.allocated`` event; the health findings and recommendations,
with the queue's reservations against what their devices use; and a few gauges in the lake
(``cortex_perf_gpu_queue_tasks{status}``, ``cortex_perf_gpu_findings{severity}``) so a rule can alert
on a queue that does not drain or a GPU in trouble.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tasks.actuators import ActionLedger
from tasks.config import Settings
from tasks.events import emit
from tasks.gpu.advice import Advice, ReservationUse, advise
from tasks.gpu.cluster import PlaceableDevice, cluster_from_devices
from tasks.gpu.health import Finding, device_findings, findings
from tasks.gpu.history import usage_from_lake
from tasks.gpu.inventory import read_inventory
from tasks.gpu.model import Device, DeviceWork, GpuInventory
from tasks.gpu.placement import FragmentationAware, make_strategy
from tasks.gpu.queue import GpuQueue, TaskRow
from tasks.gpu.rebalance import RebalancePlan, optimize, plan_rebalance
from tasks.gpu.rebalance_actuator import run_rebalance
from tasks.gpu.scheduler import (
    WORKLOAD_WINDOW,
    PlaceResult,
    default_strategy,
    place_queued,
    queue_from_settings,
    shape_of,
    this_host,
)
from tasks.gpu.workload import Workload
from tasks.lake import Lake, Sample
from tasks.markdown import md_cell
from tasks.state import State

__all__ = [
    "HOT_FINDINGS",
    "GpuTick",
    "device_work",
    "gpu_tick",
    "hot_devices",
    "inventory",
    "placeable",
    "rebalance_plan",
    "reservation_use",
]

STATUSES = ("queued", "running")


def inventory(settings: Settings, lake: Lake) -> GpuInventory:
    """The configured inventory (the lake is read only by sources that use it)."""
    cfg = settings.gpu.inventory
    return read_inventory(cfg, lake=lake if cfg.source in ("auto", "lake") else None)


def placeable(devices: Iterable[Device]) -> list[Device]:
    """The devices as the scheduler places on them: NVML's local devices (no host) named after this
    host, as the queue records where a local command runs."""
    here = this_host()
    return [d if d.host else replace(d, host=here) for d in devices]


def device_work(settings: Settings, state: State, devices: Iterable[Device]) -> dict[str, DeviceWork]:
    """The queue's running tasks on each device, by ``Device.key`` (queued work has no device yet:
    it is listed against every device as ``queued`` only when nothing is placed, never guessed)."""
    queue = queue_from_settings(settings, state)
    running = queue.tasks(statuses=["running"])
    here = this_host()
    out: dict[str, DeviceWork] = {}
    for d in devices:
        host = d.host or here
        ids = {x for x in (d.uuid, str(d.index)) if x}
        mine = tuple(r.id for r in running if (r.node or "") == host and ids & set(r.devices or []))
        out[d.key] = DeviceWork(running=mine)
    return out


def reservation_use(running: Iterable[TaskRow], devices: Iterable[Device]) -> list[ReservationUse]:
    """Each running task's reservation per GPU against what its processes use on its devices now
    (the most any of its devices shows for its pid; a deployment run without a pid is skipped)."""
    by_id: dict[str, Device] = {}
    for d in devices:
        for x in (d.uuid, str(d.index)):
            if x:
                by_id[x] = d
    out: list[ReservationUse] = []
    for r in running:
        if r.pid is None or r.memory_bytes <= 0:
            continue
        used = [p.used_memory_bytes or 0 for dev in (by_id.get(x) for x in r.devices or []) if dev
                for p in (dev.processes or ()) if p.pid == r.pid]  # fmt: skip
        if used:
            out.append(ReservationUse(r.id, r.memory_bytes, max(used)))
    return out


#: Health findings that make a device "hot": its preemptible work is moved off it.
HOT_FINDINGS = frozenset({"thermal-throttle", "near-thermal-limit", "power-throttle", "near-power-limit"})


def hot_devices(inv: GpuInventory) -> set[str]:
    """``host:device`` keys of devices at or near their thermal or power limit."""
    here = this_host()
    return {f"{d.host or here}:{d.uuid or d.index}" for d in inv.devices
            if any(f.kind in HOT_FINDINGS for f in device_findings(d))}  # fmt: skip


def rebalance_plan(
    settings: Settings,
    state: State,
    devices: Sequence[PlaceableDevice],
    *,
    hot: Collection[str] = frozenset(),
    strategy: str | None = None,
    consolidate: bool = False,
) -> tuple[RebalancePlan, GpuQueue]:
    """The rebalancing plan for ``devices`` (free of the queue's reservations) and the queue it was
    made from: moves off ``hot`` devices and whole GPUs freed for queued tasks that fit nowhere
    (``consolidate``: the optimize plan, no waiting task). The same for ``gpu rebalance|optimize``
    and the gpu flow."""
    queue = queue_from_settings(settings, state)
    running = queue.reservations()
    reserved = [(r.node or "", d, r.milli, r.memory_bytes) for r in running for d in (r.devices or [])]
    cluster = cluster_from_devices(devices, reserved)
    workload = Workload(window=WORKLOAD_WINDOW)
    for r in queue.tasks(limit=WORKLOAD_WINDOW):
        workload.observe(shape_of(r))
    strat = make_strategy(strategy or default_strategy(settings, state), workload=workload)
    if isinstance(strat, FragmentationAware):
        strat.learn = False  # the queue's history is its workload, as in the placement pass
    if not devices:
        return RebalancePlan(strat.name, notes=["no GPU devices known (see `cortex-perf gpu list`)"]), queue
    if consolidate:
        return optimize(cluster, running, strategy=strat, hot=hot), queue
    return plan_rebalance(cluster, running, queue.ordered(), strategy=strat, hot=hot), queue


@dataclass
class GpuTick:
    """What one GPU tick saw and did."""

    now: datetime
    inventory: GpuInventory
    findings: list[Finding]
    advice: list[Advice]
    placement: PlaceResult | None
    queue: Mapping[str, int] = field(default_factory=dict)
    rebalance: RebalancePlan | None = None
    rebalance_status: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "source": self.inventory.source,
            "status": self.inventory.status,
            "devices": len(self.inventory.devices),
            "findings": [f.to_json() for f in self.findings],
            "advice": [a.to_json() for a in self.advice],
            "placement": self.placement.to_json() if self.placement else None,
            "queue": dict(self.queue),
            "rebalance": None if self.rebalance is None else self._rebalance_json(),
        }

    def _rebalance_json(self) -> dict[str, Any]:
        assert self.rebalance is not None
        return {**self.rebalance.to_json(), "status": self.rebalance_status}

    def markdown(self) -> str:
        """The tick as the Prefect UI shows it: devices, queue, placements, findings, advice."""
        lines = [f"## GPUs at {self.now:%Y-%m-%d %H:%M} UTC", "", f"{md_cell(self.inventory.status)}", ""]
        if self.inventory.devices:
            lines += ["| device | name | util | memory used | temp | power |", "|---|---|---:|---:|---:|---:|"]
            for d in self.inventory.devices:
                util = "—" if d.utilization_ratio is None else f"{d.utilization_ratio:.0%}"
                mem = "—" if d.memory_used_bytes is None else f"{d.memory_used_bytes / 2**30:.1f} GiB"
                temp = "—" if d.temperature_c is None else f"{d.temperature_c:.0f} °C"
                power = "—" if d.power_w is None else f"{d.power_w:.0f} W"
                lines.append(f"| {md_cell(d.key)} | {md_cell(d.name or '')} | {util} | {mem} | {temp} | {power} |")
        lines += ["", "### Queue", "", ", ".join(f"{k}: {v}" for k, v in self.queue.items()) or "empty"]
        if self.placement is not None and self.placement.decisions:
            lines += ["", "| task | placed | node | devices | reason |", "|---|---|---|---|---|"]
            for dec in self.placement.decisions:
                p = dec.placement
                node = md_cell(p.node_name) if p else "—"
                lines.append(f"| {dec.task_id} | {'yes' if dec.placed else 'no'} | {node} "
                             f"| {','.join(p.device_ids) if p else '—'} | {md_cell(dec.reason or '')} |")  # fmt: skip
        if self.rebalance is not None:
            lines += ["", f"### Rebalancing ({self.rebalance_status})", "", md_cell(self.rebalance.summary())]
            for m in self.rebalance.moves:
                lines.append(
                    f"- {md_cell(m.task_id)}: {md_cell(m.from_node)}:{','.join(m.from_devices)} → "
                    f"{md_cell(m.to_node)}:{','.join(m.to_devices)} ({md_cell(m.why)})"
                )
            lines += [f"- note: {md_cell(n)}" for n in self.rebalance.notes]
        lines += ["", "### Findings and recommendations", ""]
        lines += [f"- **{a.severity}** {md_cell(a.message)} — {md_cell(a.action)}" for a in self.advice] or ["- none"]
        return "\n".join(lines) + "\n"


def gpu_tick(
    settings: Settings,
    lake: Lake,
    state: State,
    now: datetime,
    *,
    place: bool = True,
    dry_run: bool = False,
    usage_window: timedelta = timedelta(hours=6),
) -> GpuTick:
    """One tick (see the module docstring). ``dry_run``: decide placements, start nothing."""
    inv = inventory(settings, lake)
    devices = placeable(inv.devices)
    result = None
    if place:
        result = place_queued(settings, state, devices, dry_run=dry_run, local_nodes=[this_host()], now=now)
        if not dry_run:
            for d in result.decisions:
                if d.placed and d.placement is not None:
                    emit(lake, "gpu.allocated", f"gpu.{d.task_id}",
                         {"task": d.task_id, "owner": d.owner, "node": d.placement.node_name,
                          "devices": list(d.placement.device_ids), "strategy": result.strategy}, ts=now)  # fmt: skip
    queue = queue_from_settings(settings, state)
    running = queue.tasks(statuses=["running"])
    counts = {s: len(queue.tasks(statuses=[s])) for s in STATUSES}
    usage = usage_from_lake(lake, now - usage_window, now)
    found = findings(inv)
    advice = advise(inv, usage=usage, reservations=reservation_use(running, devices))
    tick = GpuTick(now, inv, found, advice, result, counts)
    _rebalance(settings, lake, state, tick, devices, dry_run=dry_run)
    gauges = [Sample("cortex_perf_gpu_queue_tasks", float(n), now, {"status": s}) for s, n in counts.items()]
    for severity in ("critical", "warning", "info"):
        n = sum(f.severity == severity for f in found)
        gauges.append(Sample("cortex_perf_gpu_findings", float(n), now, {"severity": severity}))
    lake.write_samples(gauges)
    return tick


def _rebalance(settings: Settings, lake: Lake, state: State, tick: GpuTick, devices: Sequence[Device], *,
               dry_run: bool) -> None:  # fmt: skip
    """Plan (and in ``gpu.rebalance.mode: apply``, apply) a rebalancing when it has a reason: a device
    is hot, or queued work found no device this tick. Nothing to plan without one."""
    cfg = settings.gpu.rebalance
    hot = hot_devices(tick.inventory)
    waiting = tick.placement is not None and any(not d.placed for d in tick.placement.decisions)
    if cfg.mode == "off" or not devices or not (hot or waiting):
        return
    plan, queue = rebalance_plan(settings, state, devices, hot=hot)
    tick.rebalance, tick.rebalance_status = plan, "dry-run"
    if cfg.mode == "apply" and not dry_run and not plan.empty:
        result = run_rebalance(plan, queue=queue, ledger=ActionLedger.from_settings(settings), lake=lake,
                               dry_run=False, grace_s=cfg.grace_s, now=tick.now)  # fmt: skip
        tick.rebalance_status = result.status

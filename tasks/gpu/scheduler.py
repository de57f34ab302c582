"""Place what is queued on the current devices and launch it: one pass, what ``gpu place`` and the
gpu flow run each minute.

One pass: release reservations whose process is gone, expire tasks that waited too long, build the
placement model (devices minus the running tasks' reservations), then go through the queue in
order (``GpuQueue.ordered``) placing each task that fits and is within its owner's quota, with the
default strategy (``gpu strategy``, kept in the state DB; ``gpu.placement.strategy`` until set).
A task that fits nowhere waits and lets smaller ones behind it pass (backfill); aging raises it
until it is first in line, and rebalancing frees whole GPUs for it.

The fragmentation-aware strategy learns its target workload from the shapes of the tasks this
queue has seen (the last ``WORKLOAD_WINDOW``), the queue's "stream so far".
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasks.config import Settings
from tasks.gpu.cluster import Cluster, PlaceableDevice, Placement, TaskShape, cluster_from_devices
from tasks.gpu.launch import RUN_ENDS, deployment_run_state, launch_deployment, launch_local
from tasks.gpu.placement import DEFAULT_WINDOW, STRATEGIES, FragmentationAware, Strategy, make_strategy
from tasks.gpu.queue import GpuQueue, TaskRow
from tasks.gpu.workload import Workload
from tasks.state import ClaimOwner, State

__all__ = [
    "STRATEGY_KEY",
    "Decision",
    "PlaceResult",
    "apply_reservations",
    "default_strategy",
    "place_queued",
    "queue_from_settings",
    "set_default_strategy",
]

log = logging.getLogger("cortex_perf.gpu.scheduler")

STRATEGY_KEY = "gpu.placement.strategy"
WORKLOAD_WINDOW = DEFAULT_WINDOW  # the strategy's own measured default (500: BENCHMARKS.md "GPU placement")
#: strategies a person may choose as the default (``random`` is the benchmark's floor only)
CHOOSABLE = tuple(n for n in STRATEGIES if n != "random")


def queue_from_settings(settings: Settings, state: State) -> GpuQueue:
    q = settings.gpu.queue
    return GpuQueue(state, aging_s=q.aging_s, max_wait_s=q.max_wait_s)


def default_strategy(settings: Settings, state: State) -> str:
    """The default strategy: the one ``gpu strategy NAME`` set (state DB), else the config's."""
    name = state.get(STRATEGY_KEY)
    return name if isinstance(name, str) and name in CHOOSABLE else settings.gpu.placement.strategy


def set_default_strategy(state: State, name: str) -> str:
    """Keep ``name`` as the default (survives restarts); an unknown name changes nothing."""
    if name not in CHOOSABLE:
        raise ValueError(f"strategy: unknown {name!r} (one of {', '.join(CHOOSABLE)})")
    state.set(STRATEGY_KEY, name)
    return name


def shape_of(row: TaskRow) -> TaskShape:
    return TaskShape(row.gpus, row.milli, row.memory_bytes)


def apply_reservations(cluster: Cluster, running: Iterable[TaskRow]) -> None:
    """Take the running tasks' reservations out of ``cluster`` (matched by node name and device id)."""
    index = {name: i for i, name in enumerate(cluster.names)}
    for row in running:
        n = index.get(row.node or "")
        if n is None or not row.devices:
            continue
        gpus = [cluster.gpu_ids[n].index(d) for d in row.devices if d in cluster.gpu_ids[n]]
        for g in gpus:
            cluster.gpu_free[n, g] = max(0, int(cluster.gpu_free[n, g]) - row.milli)
            cluster.gpu_mem[n, g] = max(0, int(cluster.gpu_mem[n, g]) - row.memory_bytes)
        cluster.version[n] += 1


def pinned(cluster: Cluster, shape: TaskShape, pin: Any) -> Placement | None:
    """The placement a rebalancing plan pinned a requeued task to (``spec["pin"]``), if it still fits;
    ``None`` (the strategy decides) when there is no pin or its devices are no longer free."""
    if not isinstance(pin, dict) or pin.get("node") not in cluster.names or not isinstance(pin.get("devices"), list):
        return None
    n = cluster.names.index(pin["node"])
    ids = cluster.gpu_ids[n]
    if len(pin["devices"]) != shape.gpus or any(d not in ids for d in pin["devices"]):
        return None
    gpus = [ids.index(d) for d in pin["devices"]]
    node_ok, gpu_ok = cluster.fits(shape)
    if not node_ok[n] or not all(gpu_ok[n, g] for g in gpus):
        return None
    return cluster.placement(n, gpus, shape)


@dataclass
class Decision:
    """What happened to one queued task in this pass."""

    task_id: str
    owner: str
    placed: bool
    placement: Placement | None = None
    reason: str | None = None
    pid: int | None = None
    flow_run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task_id,
            "owner": self.owner,
            "placed": self.placed,
            "placement": self.placement.to_json() if self.placement else None,
            "reason": self.reason,
            "pid": self.pid,
            "flow_run_id": self.flow_run_id,
        }


@dataclass
class PlaceResult:
    strategy: str
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # deployment runs Prefect says are over
    devices: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "dry_run": self.dry_run,
            "devices": self.devices,
            "decisions": [d.to_json() for d in self.decisions],
            "lost": self.lost,
            "expired": self.expired,
            "ended": self.ended,
        }


def reconcile_deployment_runs(queue: GpuQueue, make_client: Callable[[], Any]) -> tuple[list[str], list[str]]:
    """Release the reservations of deployment-run tasks whose flow run is over, as Prefect says:
    (ended, lost) task ids. ``queue.reconcile`` judges local processes; a deployment run has no
    process here, so without this its GPUs stayed reserved after the run finished. A run that no
    longer exists is ``lost``; when the API cannot be read, nothing is released (a live run may
    still hold the GPUs) and the next pass asks again."""
    rows = [r for r in queue.reservations() if r.flow_run_id]
    ended: list[str] = []
    lost: list[str] = []
    if not rows:
        return ended, lost
    try:
        with make_client() as client:
            for r in rows:
                assert r.flow_run_id is not None
                state = deployment_run_state(client, r.flow_run_id)
                if state is None:
                    if queue.finish(r.id, "lost", reason=f"flow run {r.flow_run_id} no longer exists"):
                        lost.append(r.id)
                elif state in RUN_ENDS:
                    why = f"flow run {r.flow_run_id} {state.lower()}"
                    if queue.finish(r.id, RUN_ENDS[state], reason=why):  # type: ignore[arg-type]
                        ended.append(r.id)
    except Exception as e:  # the API is down: keep every reservation, ask again next pass
        log.warning("gpu: deployment runs not checked (reservations kept): %s", e)
    return ended, lost


def _workload(queue: GpuQueue) -> Workload:
    wl = Workload(window=WORKLOAD_WINDOW)
    for row in queue.tasks(limit=WORKLOAD_WINDOW):
        wl.observe(shape_of(row))
    return wl


def place_queued(
    settings: Settings,
    state: State,
    devices: Sequence[PlaceableDevice] | Cluster,
    *,
    strategy: str | Strategy | None = None,
    dry_run: bool = False,
    local_nodes: Iterable[str] | None = None,
    prefect_client: Callable[[], Any] | None = None,
    now: datetime | None = None,
) -> PlaceResult:
    """One placement pass (see the module's docstring). ``devices``: the inventory's devices, or a
    placement model (the trace, tests). ``local_nodes``: the nodes a local command may run on
    (default: every node). ``prefect_client``: makes a synchronous Prefect client for deployment
    tasks (default: Prefect's own ``get_client``). ``dry_run``: decide and say, start nothing."""
    queue = queue_from_settings(settings, state)
    lost = [] if dry_run else queue.reconcile(now=now)
    ended: list[str] = []
    if not dry_run:
        ended, gone = reconcile_deployment_runs(queue, prefect_client or sync_prefect_client)
        lost += gone
    expired = [] if dry_run else queue.expire(now=now)
    running = queue.reservations()
    if isinstance(devices, Cluster):
        cluster = devices
        apply_reservations(cluster, running)
    else:
        reserved = [(r.node or "", d, r.milli, r.memory_bytes) for r in running for d in (r.devices or [])]
        cluster = cluster_from_devices(devices, reserved)
    name = strategy.name if isinstance(strategy, Strategy) else strategy or default_strategy(settings, state)
    strat = strategy if isinstance(strategy, Strategy) else make_strategy(name, workload=_workload(queue))
    if isinstance(strat, FragmentationAware) and not isinstance(strategy, Strategy):
        strat.learn = False  # the queue's history is its workload
    result = PlaceResult(name, dry_run, lost=lost, expired=expired, ended=ended, devices=int(cluster.gpu_count.sum()))
    local = set(local_nodes) if local_nodes is not None else None
    quotas = settings.gpu.queue.quotas
    held: dict[str, int] = {}
    for r in running:
        held[r.owner] = held.get(r.owner, 0) + r.gpu_milli
    for row in queue.ordered(now=now):
        quota = quotas.get(row.owner)
        if quota is not None and held.get(row.owner, 0) + row.gpu_milli > quota * 1000:
            result.decisions.append(
                Decision(row.id, row.owner, False, reason=f"owner {row.owner} at quota ({quota} GPUs)")
            )
            continue
        shape = shape_of(row)
        p = pinned(cluster, shape, row.spec.get("pin"))
        if p is None:
            p = strat.place(cluster, shape) if len(cluster) else None
        if p is None:
            result.decisions.append(Decision(row.id, row.owner, False, reason="no device fits now"))
            continue
        if row.kind == "command" and local is not None and p.node_name not in local:
            result.decisions.append(Decision(row.id, row.owner, False, reason=f"{p.node_name} is not this host"))
            continue
        cluster.allocate(p, shape)
        held[row.owner] = held.get(row.owner, 0) + row.gpu_milli
        d = Decision(row.id, row.owner, True, p)
        result.decisions.append(d)
        if not dry_run:
            _start(settings, queue, row, d, prefect_client, now)
    return result


def _start(
    settings: Settings,
    queue: GpuQueue,
    row: TaskRow,
    d: Decision,
    prefect_client: Callable[[], Any] | None,
    now: datetime | None,
) -> None:
    """Reserve, then launch; a launch that fails ends the task ``failed`` (reservation released)."""
    assert d.placement is not None
    devices = list(d.placement.device_ids)
    if not queue.start(row.id, d.placement.node_name, devices, ClaimOwner.me(), now=now):
        d.placed, d.reason = False, "no longer queued (cancelled or started elsewhere)"
        return
    try:
        if row.kind == "command":
            d.pid = launch_local(
                settings.state.path, row.id, row.spec["command"], devices, lock_timeout_s=settings.state.lock_timeout_s
            )
            queue.launched(row.id, holder=ClaimOwner.of_process(d.pid), pid=d.pid, flow_run_id=None)
        else:
            make = prefect_client or sync_prefect_client
            with make() as client:
                d.flow_run_id = launch_deployment(
                    client, row.spec["deployment"], row.spec.get("parameters") or {}, devices, row.id
                )
            # a deployment run answers for itself in Prefect: no local process holds it
            queue.launched(row.id, holder=None, pid=None, flow_run_id=d.flow_run_id)
    except Exception as e:
        log.warning("gpu task %s: launch failed: %s", row.id, e)
        queue.finish(row.id, "failed", reason=f"launch failed: {e}"[:500])
        d.placed, d.reason = False, f"launch failed: {e}"


def sync_prefect_client() -> Any:
    # lazy: Prefect's client costs ~1 s to import and only deployment tasks need it
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def this_host() -> str:
    return socket.gethostname()

"""Rebalancing plans: which queued and preemptible tasks to move so hot devices cool down and whole
GPUs come free for large tasks (the seed's ``optimizeMemoryAllocation``).

Three reasons to move, planned in this order on one working copy of the placement model:

1. **Hot devices** (``hot``: the devices a health finding says run at or near their thermal or
   power limit): each preemptible running task on one is re-placed on a device that is not hot.
2. **Fragmentation**: a queued task (in queue order) that fits nowhere although enough GPU compute
   is free in total. For each node with enough GPUs, the planner picks the GPUs whose occupants are
   cheapest to move (fewest running tasks, then fewest tasks, then least compute), takes the task's
   place there, and re-places the occupants elsewhere with the placement strategy; the node whose
   freeing costs least wins. Occupants are preemptible running tasks and *queued placements* (the
   queued tasks ahead in line, as the next placement pass would place them). A move is planned
   only when every occupant fits elsewhere.
3. **Consolidation** (``optimize``: no waiting task): a GPU partly used by shared (fractional)
   tasks is emptied when they all fit on other partly used GPUs, one whole GPU freed per step.

Never moved: a running task that is not preemptible (its GPUs are off limits, and when that leaves
no way to free enough GPUs the plan is empty and its notes say so). A preemptible Prefect
deployment run moves like a local process: applying the plan cancels its flow run through Prefect
(the worker stops its infrastructure) and requeues the task pinned to its new devices.

The plan carries its numbers: each move (task, from node/devices → to node/devices, why), the GPUs
freed and for which task, the cluster's fragmentation (``tasks.gpu.fragmentation``, against the
mix of the tasks' own shapes) before → after the running tasks' moves, and the free whole GPUs and
the largest block of them on one node before → after. Pure: the cluster given is not changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tasks.gpu.cluster import WHOLE, Cluster, Placement, TaskShape
from tasks.gpu.fragmentation import cluster_fragmentation
from tasks.gpu.placement import Strategy
from tasks.gpu.queue import TaskRow
from tasks.gpu.workload import Workload

__all__ = ["Freed", "Move", "RebalancePlan", "optimize", "plan_rebalance"]

MoveWhy = Literal["hot", "frees-gpus", "consolidate"]


@dataclass(frozen=True)
class Move:
    """One task to move: a running one is stopped and requeued, a queued one is re-pinned."""

    task_id: str
    owner: str
    state: Literal["running", "queued"]
    from_node: str
    from_devices: tuple[str, ...]
    to_node: str
    to_devices: tuple[str, ...]
    why: MoveWhy
    for_task: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task_id,
            "owner": self.owner,
            "state": self.state,
            "from": {"node": self.from_node, "devices": list(self.from_devices)},
            "to": {"node": self.to_node, "devices": list(self.to_devices)},
            "why": self.why,
            "for_task": self.for_task,
        }


@dataclass(frozen=True)
class Freed:
    """Whole GPUs the plan frees on one node, and the queued task they are for (``None``: consolidation)."""

    node: str
    devices: tuple[str, ...]
    for_task: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "devices": list(self.devices), "for_task": self.for_task}


@dataclass
class RebalancePlan:
    """What to move and what it buys (see the module docstring)."""

    strategy: str
    moves: list[Move] = field(default_factory=list)
    freed: list[Freed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fragmentation_before: float = 0.0  # GPUs' worth (milli / 1000)
    fragmentation_after: float = 0.0
    free_gpus_before: int = 0  # fully free GPUs
    free_gpus_after: int = 0
    largest_block_before: int = 0  # most fully free GPUs on one node
    largest_block_after: int = 0

    @property
    def empty(self) -> bool:
        return not self.moves and not self.freed

    def content(self) -> dict[str, Any]:
        """What the plan does (moves and targets), without its figures: the identity of a decision."""
        return {"moves": [m.to_json() for m in self.moves], "freed": [f.to_json() for f in self.freed]}

    def id(self, now: datetime | None = None) -> str:
        """A stable id: the plan's content and the minute it is for. The same plan re-run within a
        minute (a retried flow run, the CLI and the schedule together) is one action, applied once."""
        minute = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        text = json.dumps(self.content(), sort_keys=True) + minute
        return "gpu-rebalance-" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def summary(self) -> str:
        if self.empty:
            return "nothing to move" + (f": {self.notes[0]}" if self.notes else "")
        running = sum(m.state == "running" for m in self.moves)
        gpus = sum(len(f.devices) for f in self.freed)
        return (
            f"{len(self.moves)} move(s) ({running} running), {gpus} GPU(s) freed; fragmentation "
            f"{self.fragmentation_before:.2f} → {self.fragmentation_after:.2f} GPUs; free whole GPUs "
            f"{self.free_gpus_before} → {self.free_gpus_after} (largest block {self.largest_block_before} → "
            f"{self.largest_block_after})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.content(),
            "strategy": self.strategy,
            "notes": list(self.notes),
            "fragmentation_before": round(self.fragmentation_before, 4),
            "fragmentation_after": round(self.fragmentation_after, 4),
            "free_gpus_before": self.free_gpus_before,
            "free_gpus_after": self.free_gpus_after,
            "largest_block_before": self.largest_block_before,
            "largest_block_after": self.largest_block_after,
            "summary": self.summary(),
        }


@dataclass
class _Held:
    """A task's place in the working model."""

    row: TaskRow
    shape: TaskShape
    node: int
    gpus: tuple[int, ...]
    state: Literal["running", "queued"]

    @property
    def movable(self) -> bool:
        return self.state == "queued" or self.row.preemptible


def _copy(c: Cluster) -> Cluster:
    out = Cluster(list(c.names), c.gpu_free.copy(), c.gpu_mem.copy(), c.cpu_free.copy(), c.host_free.copy(),
                  [list(ids) for ids in c.gpu_ids])  # fmt: skip
    return out


def _shape(row: TaskRow) -> TaskShape:
    return TaskShape(row.gpus, row.milli, row.memory_bytes)


def _placement(c: Cluster, h: _Held) -> Placement:
    return c.placement(h.node, h.gpus, h.shape)


def _free_whole(c: Cluster) -> tuple[int, int]:
    whole = (c.gpu_free >= WHOLE).sum(axis=1)
    return int(whole.sum()), int(whole.max()) if len(c) else 0


class _Planner:
    def __init__(self, cluster: Cluster, strategy: Strategy, hot: Collection[str]) -> None:
        self.work = _copy(cluster)
        self.strategy = strategy
        self.hot = np.zeros_like(cluster.gpu_free, dtype=bool)
        for n, name in enumerate(cluster.names):
            for g, dev in enumerate(cluster.gpu_ids[n]):
                self.hot[n, g] = dev in hot or f"{name}:{dev}" in hot
        self.held: dict[str, _Held] = {}
        self.plan = RebalancePlan(strategy.name)

    # -- the working model -------------------------------------------------------------------
    def where(self, row: TaskRow) -> tuple[int, tuple[int, ...]] | None:
        """A running task's node and GPU slots in the model (None: its node or devices are unknown)."""
        if row.node not in self.work.names or not row.devices:
            return None
        n = self.work.names.index(row.node)
        ids = self.work.gpu_ids[n]
        if any(d not in ids for d in row.devices):
            return None
        return n, tuple(ids.index(d) for d in row.devices)

    def place_avoiding(self, c: Cluster, shape: TaskShape, blocked: npt.NDArray[np.bool_]) -> Placement | None:
        """The strategy's placement with ``blocked`` GPUs off limits (hidden, then restored)."""
        if not blocked.any():
            return self.strategy.place(c, shape)
        rows = np.flatnonzero(blocked.any(axis=1))
        saved = c.gpu_free[blocked].copy()
        c.gpu_free[blocked] = -1
        c.version[rows] += 1
        try:
            return self.strategy.place(c, shape)
        finally:
            c.gpu_free[blocked] = saved
            c.version[rows] += 1

    def occupants(self, n: int, g: int) -> list[_Held]:
        return [h for h in self.held.values() if h.node == n and g in h.gpus]

    def move(self, h: _Held, p: Placement, why: MoveWhy, for_task: str | None = None) -> None:
        names = self.work.names
        self.plan.moves.append(
            Move(
                h.row.id,
                h.row.owner,
                h.state,
                names[h.node],
                tuple(self.work.gpu_ids[h.node][g] for g in h.gpus),
                p.node_name,
                p.device_ids,
                why,
                for_task,
            )
        )
        h.node, h.gpus = p.node, p.gpus

    # -- 1. hot devices ----------------------------------------------------------------------
    def cool(self) -> None:
        for h in [h for h in self.held.values() if h.state == "running"]:
            if not any(self.hot[h.node, g] for g in h.gpus):
                continue
            label = f"task {h.row.id} on hot {self.work.names[h.node]}:{','.join(h.row.devices or [])}"
            if not h.movable:
                self.plan.notes.append(f"{label} is not preemptible: not moved")
                continue
            self.work.release(_placement(self.work, h), h.shape)
            p = self.place_avoiding(self.work, h.shape, self.hot)
            if p is None:
                self.work.allocate(_placement(self.work, h), h.shape)
                self.plan.notes.append(f"{label}: no cooler device fits it: not moved")
                continue
            self.work.allocate(p, h.shape)
            self.move(h, p, "hot")

    # -- 2. fragmentation: free whole GPUs for a queued task -----------------------------------
    def make_room(self, queued: Sequence[TaskRow]) -> None:
        for row in queued:
            shape = _shape(row)
            p = self.place_avoiding(self.work, shape, self.hot)
            if p is not None:  # the next pass places it: a queued placement, movable
                self.work.allocate(p, shape)
                self.held[row.id] = _Held(row, shape, p.node, p.gpus, "queued")
                continue
            free = int(np.clip(np.where(self.hot, 0, self.work.gpu_free), 0, None).sum())
            if free < shape.gpu_milli:
                self.plan.notes.append(
                    f"task {row.id} ({shape.gpu_milli / WHOLE:g} GPUs) waits: only {free / WHOLE:g} GPUs free in total"
                )
                continue
            if not shape.whole:
                self.plan.notes.append(f"task {row.id} (a GPU share) fits nowhere now: it waits for a share to free")
                continue
            best: tuple[tuple[int, int, int, int], Cluster, list[tuple[_Held, Placement]], Placement] | None = None
            reasons: list[str] = []
            for n in np.flatnonzero(self.work.gpu_count >= shape.gpus):
                got = self._free_node(int(n), shape, reasons)
                if got is not None and (best is None or got[0] < best[0]):
                    best = got
            if best is None:
                why = "; ".join(dict.fromkeys(reasons)) or "no node has enough GPUs"
                self.plan.notes.append(f"task {row.id} ({shape.gpus} GPUs) cannot get whole GPUs freed: {why}")
                continue
            _, trial, moved, target = best
            self.work = trial
            for h, p in moved:
                self.move(h, p, "frees-gpus", row.id)
            self.held[row.id] = _Held(row, shape, target.node, target.gpus, "queued")
            self.plan.freed.append(Freed(target.node_name, target.device_ids, row.id))

    def _free_node(
        self, n: int, shape: TaskShape, reasons: list[str]
    ) -> tuple[tuple[int, int, int, int], Cluster, list[tuple[_Held, Placement]], Placement] | None:
        w, name = self.work, self.work.names[n]
        cost: dict[int, list[_Held]] = {}
        for g in range(int(w.gpu_count[n])):
            if self.hot[n, g]:
                continue
            occ = self.occupants(n, g)
            stuck = [h for h in occ if not h.movable]
            if stuck:
                h = stuck[0]
                reasons.append(f"{name}:{w.gpu_ids[n][g]} holds running task {h.row.id} (not preemptible)")
                continue
            if int(w.gpu_mem[n, g]) + sum(h.shape.memory_bytes for h in occ) < shape.memory_bytes:
                reasons.append(f"{name}:{w.gpu_ids[n][g]} has too little memory")
                continue
            cost[g] = occ
        if len(cost) < shape.gpus:
            return None
        chosen: list[int] = []
        moving: dict[str, _Held] = {}
        while len(chosen) < shape.gpus:

            def extra(g: int) -> tuple[int, int, int, int]:
                new = [h for h in cost[g] if h.row.id not in moving]
                return (sum(h.state == "running" for h in new), len(new), sum(h.shape.gpu_milli for h in new), g)

            g = min((g for g in cost if g not in chosen), key=extra)
            chosen.append(g)
            moving.update({h.row.id: h for h in cost[g]})
        trial = _copy(w)
        for h in moving.values():
            trial.release(_placement(trial, h), h.shape)
        target = trial.placement(n, sorted(chosen), shape)
        trial.allocate(target, shape)
        moved: list[tuple[_Held, Placement]] = []
        for h in sorted(moving.values(), key=lambda h: (-h.shape.gpu_milli, h.row.seq)):
            p = self.place_avoiding(trial, h.shape, self.hot)
            if p is None:
                reasons.append(f"freeing {name} needs task {h.row.id} moved, and it fits nowhere else")
                return None
            trial.allocate(p, h.shape)
            moved.append((h, p))
        running = sum(h.state == "running" for h in moving.values())
        key = (running, len(moving), sum(h.shape.gpu_milli for h in moving.values()), n)
        return key, trial, moved, target

    # -- 3. consolidation --------------------------------------------------------------------
    def consolidate(self) -> None:
        w = self.work
        tried: set[tuple[int, int]] = set()
        while True:
            used = WHOLE - w.gpu_free
            partial = (w.gpu_free > 0) & (w.gpu_free < WHOLE) & ~self.hot
            cands = [(int(used[n, g]), n, g) for n, g in zip(*np.nonzero(partial), strict=True)]
            cands = [c for c in sorted(cands) if (c[1], c[2]) not in tried]
            if not cands:
                return
            _, n, g = cands[0]
            tried.add((n, g))
            occ = self.occupants(n, g)
            if not occ or any(not h.movable or h.shape.whole for h in occ):
                continue
            trial = _copy(w)
            for h in occ:
                trial.release(_placement(trial, h), h.shape)
            # only onto GPUs already in use: filling a free GPU frees nothing
            blocked = self.hot | (trial.gpu_free >= WHOLE)
            placed: list[tuple[_Held, Placement]] = []
            for h in sorted(occ, key=lambda h: (-h.shape.gpu_milli, h.row.seq)):
                p = self.place_avoiding(trial, h.shape, blocked)
                if p is None:
                    break
                trial.allocate(p, h.shape)
                placed.append((h, p))
            else:
                self.work = w = trial
                for h, p in placed:
                    self.move(h, p, "consolidate")
                self.plan.freed.append(Freed(w.names[n], (w.gpu_ids[n][g],)))


def _workload(rows: Iterable[TaskRow]) -> Workload:
    wl = Workload()
    for r in rows:
        wl.observe(_shape(r))
    return wl


def plan_rebalance(
    cluster: Cluster,
    running: Sequence[TaskRow],
    queued: Sequence[TaskRow],
    *,
    strategy: Strategy,
    hot: Collection[str] = frozenset(),
    consolidate: bool = False,
    workload: Workload | None = None,
) -> RebalancePlan:
    """Plan moves (see the module docstring).

    ``cluster``: the free placement model with the running tasks' reservations already taken out
    (as ``tasks.gpu.scheduler.place_queued`` builds it). ``running``: those tasks; ``queued``: the
    queue in placement order (``GpuQueue.ordered``). ``hot``: device ids (``GPU-…``) or
    ``node:device`` keys of devices at their thermal or power limit. ``workload``: the mix the
    fragmentation figures are measured against (default: the shapes of ``running`` and ``queued``).
    """
    planner = _Planner(cluster, strategy, hot)
    for row in running:
        at = planner.where(row)
        if at is None:
            planner.plan.notes.append(f"task {row.id}: its node or devices are not in the model: left alone")
            continue
        planner.held[row.id] = _Held(row, _shape(row), at[0], at[1], "running")
    before = _copy(planner.work)
    if hot:
        planner.cool()
    planner.make_room(queued)
    if consolidate:
        planner.consolidate()
    plan = planner.plan
    # "after": the model with the running tasks' moves done (queued placements do not hold anything yet)
    after = _copy(before)
    ends: dict[str, tuple[Move, Move]] = {}  # a task moved twice (off a hot GPU, then again): first from, last to
    for m in plan.moves:
        if m.state == "running":
            ends[m.task_id] = (ends.get(m.task_id, (m, m))[0], m)
    for first, _ in ends.values():
        h, src = planner.held[first.task_id], before.names.index(first.from_node)
        after.release(
            after.placement(src, [before.gpu_ids[src].index(d) for d in first.from_devices], h.shape), h.shape
        )
    for _, last in ends.values():
        h, dst = planner.held[last.task_id], before.names.index(last.to_node)
        after.allocate(after.placement(dst, [before.gpu_ids[dst].index(d) for d in last.to_devices], h.shape), h.shape)
    wl = workload if workload is not None else _workload([*running, *queued])
    if wl.total:
        plan.fragmentation_before = cluster_fragmentation(before, wl) / WHOLE
        plan.fragmentation_after = cluster_fragmentation(after, wl) / WHOLE
    plan.free_gpus_before, plan.largest_block_before = _free_whole(before)
    plan.free_gpus_after, plan.largest_block_after = _free_whole(after)
    if plan.empty and not plan.notes:
        plan.notes.append("no device is hot and every queued task fits where it is")
    return plan


def optimize(
    cluster: Cluster, running: Sequence[TaskRow], *, strategy: Strategy, hot: Collection[str] = frozenset()
) -> RebalancePlan:
    """``optimizeMemoryAllocation``: the plan for the current state with no waiting task: cool hot
    devices, then consolidate shared tasks so whole GPUs come free."""
    plan = plan_rebalance(cluster, running, [], strategy=strategy, hot=hot, consolidate=True)
    if plan.empty and plan.notes == ["no device is hot and every queued task fits where it is"]:
        plan.notes = ["no partly used GPU can be emptied onto the others: nothing to consolidate"]
    return plan

"""How long a rebalancing plan takes at the Alibaba GPU trace's size (1,523 nodes, 6,212 GPUs).

The fleet is filled with pods drawn from ``openb_pod_list_default.csv`` (seeded), placed best-fit,
half of them preemptible, until the first 8-GPU pod no longer fits anywhere (fragmented: GPUs are
free in total, but no node has 8). Then it times ``plan_rebalance`` for one queued 8-GPU task
(free a node for it) and ``optimize`` (consolidate shares), and prints what each plan buys.

    uv run python benchmarks/gpu_rebalance_bench.py [--seed 1] [--json] [--datasets DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.gpu.cluster import TaskShape
from tasks.gpu.placement import BestFit
from tasks.gpu.queue import TaskRow
from tasks.gpu.rebalance import RebalancePlan, optimize, plan_rebalance
from tasks.gpu.trace import load_nodes, load_pods

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _row(i: int, s: TaskShape, pre: bool, node: str | None, devices: list[str] | None) -> TaskRow:
    status = "running" if node else "queued"
    return TaskRow(f"t{i}", i, "o", "command", {}, s.gpus, s.milli, s.memory_bytes, 0, pre, 3600.0, status, T0,
                   T0 if node else None, None, node, devices, None, None, None, None, None)  # fmt: skip


def _figures(plan: RebalancePlan, ms: float) -> dict[str, Any]:
    return {
        "ms": round(ms, 1),
        "moves": len(plan.moves),
        "gpus_freed": sum(len(f.devices) for f in plan.freed),
        "fragmentation": [round(plan.fragmentation_before, 2), round(plan.fragmentation_after, 2)],
        "free_gpus": [plan.free_gpus_before, plan.free_gpus_after],
        "largest_block": [plan.largest_block_before, plan.largest_block_after],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    d = Path(a.datasets) / "alibaba-gpu-2023"
    cluster = load_nodes(d)
    pods = [p for p in load_pods(d) if p.gpus > 0]
    rng, strat, running = random.Random(a.seed), BestFit(), []
    i = 0
    while strat.place(cluster, TaskShape(8)) is not None:
        i += 1
        s = rng.choice(pods)
        p = strat.place(cluster, s)
        if p is not None:
            cluster.allocate(p, s)
            running.append(_row(i, s, rng.random() < 0.5, p.node_name, list(p.device_ids)))
    big = _row(i + 1, TaskShape(8), False, None, None)
    t = time.perf_counter()
    reb = plan_rebalance(cluster, running, [big], strategy=BestFit())
    reb_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    opt = optimize(cluster, running, strategy=BestFit())
    opt_ms = (time.perf_counter() - t) * 1000
    out = {
        "nodes": len(cluster),
        "running": len(running),
        "free_gpus_total": cluster.free_milli() / 1000,
        "rebalance_8gpu": _figures(reb, reb_ms),
        "optimize": _figures(opt, opt_ms),
    }
    if a.json:
        print(json.dumps(out))
        return
    print(f"{out['nodes']} nodes, {out['running']} running tasks, {out['free_gpus_total']:.1f} GPUs free in total")
    print(f"rebalance for one 8-GPU task: {reb_ms:.0f} ms — {reb.summary()}")
    print(f"optimize:                     {opt_ms:.0f} ms — {opt.summary()}")


if __name__ == "__main__":
    main()

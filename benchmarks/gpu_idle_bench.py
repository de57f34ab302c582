"""Idle GPUs holding memory, measured on a real trace through the advice's own code path.

Reads the Alibaba GenAI per-pod GPU utilisation and memory series
(``../shared/datasets/alibaba-genai-gpu-util``: 143–144 Stable-Diffusion serving pods, one sample
per 57 s over 22.8 h), joins them on (pod, timestamp), and feeds each pod's series to
``tasks.gpu.advice`` — ``idle_holding_usage`` per GPU, ``summarize_idle`` for the fleet and
``advise`` for the recommendations — exactly as ``cortex-perf gpu advise`` does with the lake's
history. Prints how many GPU-hours sat idle (0 % utilisation) while holding ≥ 1 GiB, and how much
they held. The dataset's README reads 66.8 % of samples at 0 % and memory deciles around 22 GiB.

    uv run python benchmarks/gpu_idle_bench.py [--json] [--data DIR] [--idle-pct 0]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tarfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from tasks.gpu.advice import UsagePoint, advise, idle_holding_usage, summarize_idle
from tasks.gpu.health import HOLDING_MIN_BYTES
from tasks.gpu.model import GpuInventory

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "alibaba-genai-gpu-util"
FALLBACK_DATA = Path("/work/shared/datasets/alibaba-genai-gpu-util")


def _rows(archive: Path) -> list[dict[str, str]]:
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".csv"))
        f = tar.extractfile(member)
        assert f is not None
        return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))


def load(data: Path) -> tuple[dict[str, list[UsagePoint]], dict[str, int]]:
    """Per pod: the joined (time, utilisation 0–1, memory bytes) points; and the row counts."""
    util = _rows(data / "pod_gpu_duty_cycle_anon.tar.gz")
    mem = _rows(data / "pod_gpu_memory_used_bytes_anon.tar.gz")
    mem_at = {(r["container_ip"], float(r["timestamp_anon"])): float(r["value"]) for r in mem}
    series: dict[str, list[UsagePoint]] = defaultdict(list)
    for r in util:
        key = (r["container_ip"], float(r["timestamp_anon"]))
        if key in mem_at:
            series[key[0]].append(UsagePoint(key[1], float(r["value"]) / 100.0, mem_at[key]))
    zero = sum(1 for r in util if float(r["value"]) == 0.0)
    return dict(series), {"util_rows": len(util), "memory_rows": len(mem), "util_rows_at_zero": zero,
                          "joined": sum(len(v) for v in series.values())}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="the dataset folder (default: ../shared/datasets/...)")
    ap.add_argument("--idle-pct", type=float, default=0.0, help="utilisation at or below this %% is idle (default 0)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.exists() else FALLBACK_DATA)
    if not (0.0 <= args.idle_pct <= 100.0):
        print(f"error: --idle-pct {args.idle_pct}: not between 0 and 100", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    series, counts = load(data)
    t1 = time.perf_counter()
    idle_ratio = args.idle_pct / 100.0
    per = [idle_holding_usage(pod, pts, idle_utilization=idle_ratio) for pod, pts in sorted(series.items())]
    fleet = summarize_idle(per)
    inv = GpuInventory("lake", "trace", datetime.now(UTC))
    found = advise(inv, usage=series) if idle_ratio == 0.0 else []  # advise uses the default threshold
    t2 = time.perf_counter()
    held_gib = sorted(h.mean_held_bytes / 2**30 for h in per if h.idle_holding_seconds)
    # the same predicate per sample, for the median the dataset's README quotes (deciles of memory)
    idle_samples = sorted(
        p.memory_used_bytes / 2**30
        for pts in series.values()
        for p in pts
        if p.utilization_ratio <= idle_ratio and p.memory_used_bytes >= HOLDING_MIN_BYTES
    )
    out = {
        "dataset": "alibaba-genai-gpu-util (cluster-trace-v2026-GenAI)",
        "pods": len(series),
        **counts,
        "idle_pct": args.idle_pct,
        "holding_min_gib": HOLDING_MIN_BYTES / 2**30,
        "idle_holding_sample_share": round(float(fleet["idle_holding_samples"]) / counts["joined"], 4),
        "util_rows_at_zero_share": round(counts["util_rows_at_zero"] / counts["util_rows"], 4),
        "gpu_hours": round(float(fleet["gpu_hours"]), 1),
        "idle_holding_gpu_hours": round(float(fleet["idle_holding_gpu_hours"]), 1),
        "idle_holding_time_share": round(float(fleet["idle_holding_time_share"]), 4),
        "mean_held_gib": round(float(fleet["mean_held_gib"]), 2),
        "median_sample_held_gib": round(idle_samples[len(idle_samples) // 2], 2) if idle_samples else 0.0,
        "median_pod_held_gib": round(held_gib[len(held_gib) // 2], 2) if held_gib else 0.0,
        "held_gib_hours": round(float(fleet["held_gib_hours"]), 1),
        "pods_idle_holding_over_half_the_time": sum(1 for a in found if a.kind == "idle-holding-memory"),
        "recommendations": len(found),
        "load_s": round(t1 - t0, 2),
        "advice_s": round(t2 - t1, 2),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['pods']} pods, {out['joined']:,} joined samples ({out['util_rows']:,} utilisation rows, "
          f"{out['util_rows_at_zero_share']:.1%} of them at 0 %)")  # fmt: skip
    print(f"idle (≤ {args.idle_pct:g} %) while holding ≥ {out['holding_min_gib']:g} GiB: "
          f"{out['idle_holding_sample_share']:.1%} of samples, {out['idle_holding_gpu_hours']:,} of "
          f"{out['gpu_hours']:,} GPU-hours ({out['idle_holding_time_share']:.1%})")  # fmt: skip
    print(f"memory held while idle: {out['mean_held_gib']} GiB on average (median sample "
          f"{out['median_sample_held_gib']} GiB, median pod {out['median_pod_held_gib']} GiB), "
          f"{out['held_gib_hours']:,} GiB-hours")  # fmt: skip
    print(f"recommendations: {out['recommendations']} ({out['pods_idle_holding_over_half_the_time']} pods idle-holding "
          f"over half the time); load {out['load_s']} s, advice {out['advice_s']} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

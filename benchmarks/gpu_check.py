"""Check the GPU source on a machine with a real NVIDIA GPU: print what it reads, fail if it reads nothing.

Run on a GPU machine (the CI has none, so the tests cover NVML only through a fake)::

    uv run python benchmarks/gpu_check.py

Prints one row per sample (metric, labels, value), checks every sample against the lake's schema
and that each GPU reports the core metrics. Exit codes: 0 ok; 1 no GPU samples at all (no driver,
no device); 2 samples present but a core metric missing or a sample invalid.
"""

from __future__ import annotations

import logging
import sys
import time

from tasks.lake.schema import SchemaError, canonical_labels, now_utc, validate_metric_name, validate_value
from tasks.sources import GpuSource, collect_all

#: Every NVIDIA data-centre and consumer GPU answers these; the others are reported if present.
CORE = ("gpu_utilization_ratio", "gpu_memory_used_bytes", "gpu_memory_total_bytes", "gpu_temperature_celsius")
OPTIONAL = (
    "gpu_memory_copy_utilization_ratio",
    "gpu_power_watts",
    "gpu_power_limit_watts",
    "gpu_sm_clock_hertz",
    "gpu_memory_clock_hertz",
    "gpu_ecc_corrected_errors_total",
    "gpu_ecc_uncorrected_errors_total",
    "gpu_processes",
)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source = GpuSource()
    t0 = time.perf_counter()
    res = collect_all([source], timeout_s=30)
    took = time.perf_counter() - t0
    for f in res.failures:
        print(f"FAILED {f.source}: {f.error} (timed out: {f.timed_out})")
    samples = [s for s in res.samples if s.metric.startswith("gpu_")]

    width = max((len(s.metric) for s in samples), default=6)
    print(f"{'metric':<{width}}  {'value':>16}  labels")
    for s in samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.metric:<{width}}  {s.value:>16.6g}  {labels}")
    print(f"\n{len(samples)} GPU samples in {took * 1000:.0f} ms at {now_utc().isoformat()}")

    if not samples:
        print("NO GPU SAMPLES: no NVIDIA driver or no device visible to NVML", file=sys.stderr)
        return 1

    problems: list[str] = []
    for s in samples:
        try:
            validate_metric_name(s.metric)
            canonical_labels(s.labels)
            validate_value(s.value)
        except SchemaError as exc:
            problems.append(f"invalid sample {s}: {exc}")
    gpus = sorted({s.labels["gpu"] for s in samples if "uuid" in s.labels}, key=int)
    for gpu in gpus:
        have = {s.metric for s in samples if s.labels.get("gpu") == gpu}
        missing = [m for m in CORE if m not in have]
        if missing:
            problems.append(f"GPU {gpu}: core metrics missing: {missing}")
        absent = [m for m in OPTIONAL if m not in have]
        print(f"GPU {gpu}: {len(have)} metrics; optional fields not supported here: {absent or 'none'}")
    for gpu in gpus:
        util = [s.value for s in samples if s.metric == "gpu_utilization_ratio" and s.labels["gpu"] == gpu]
        used = [s.value for s in samples if s.metric == "gpu_memory_used_bytes" and s.labels["gpu"] == gpu]
        total = [s.value for s in samples if s.metric == "gpu_memory_total_bytes" and s.labels["gpu"] == gpu]
        if util and not 0.0 <= util[0] <= 1.0:
            problems.append(f"GPU {gpu}: utilisation {util[0]} outside 0..1")
        if used and total and not 0 <= used[0] <= total[0]:
            problems.append(f"GPU {gpu}: memory used {used[0]} not within total {total[0]}")
    for p in problems:
        print("PROBLEM", p, file=sys.stderr)
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

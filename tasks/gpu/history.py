"""Fill the device model from the lake's ``gpu_*`` samples, for fleets known only through samples.

The collector's GPU source (``tasks.sources.gpu``) writes, per GPU (labels ``gpu``, ``uuid``,
``name``; ``instance``/``host`` when the samples were scraped or pushed from elsewhere):
``gpu_utilization_ratio``, ``gpu_memory_{used,total,free}_bytes``, ``gpu_temperature_celsius``,
``gpu_power_watts``, ``gpu_power_limit_watts``, ``gpu_{sm,memory}_clock_hertz``,
``gpu_ecc_{corrected,uncorrected}_errors_total`` (volatile counts) and
``gpu_process_memory_bytes{gpu, pid}``. The newest sample of each within ``lookback`` is the
device's reading; what the samples never carry (throttle reasons, MIG, retired rows) stays None.

Also the usage series the advice reads (utilisation and memory over a window), so the live
advice and the benchmark on a trace go through the same code (``tasks.gpu.advice``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from tasks.gpu.advice import UsagePoint
from tasks.gpu.model import Device, GpuInventory, GpuProcess
from tasks.lake import Lake
from tasks.lake.schema import now_utc

__all__ = ["read_history", "usage_from_lake"]

_FIELDS: dict[str, tuple[str, float]] = {  # metric → (Device field, scale)
    "gpu_utilization_ratio": ("utilization_ratio", 1.0),
    "gpu_memory_used_bytes": ("memory_used_bytes", 1.0),
    "gpu_memory_total_bytes": ("memory_total_bytes", 1.0),
    "gpu_memory_free_bytes": ("memory_free_bytes", 1.0),
    "gpu_temperature_celsius": ("temperature_c", 1.0),
    "gpu_power_watts": ("power_w", 1.0),
    "gpu_power_limit_watts": ("power_limit_w", 1.0),
    "gpu_sm_clock_hertz": ("sm_clock_mhz", 1e-6),
    "gpu_memory_clock_hertz": ("memory_clock_mhz", 1e-6),
    "gpu_ecc_corrected_errors_total": ("ecc_volatile_corrected", 1.0),
    "gpu_ecc_uncorrected_errors_total": ("ecc_volatile_uncorrected", 1.0),
}
_INT_FIELDS = {"memory_used_bytes", "memory_total_bytes", "memory_free_bytes", "ecc_volatile_corrected",
               "ecc_volatile_uncorrected"}  # fmt: skip


def _where(labels: dict[str, str]) -> tuple[str | None, int] | None:
    try:
        index = int(labels.get("gpu", ""))
    except ValueError:
        return None
    return (labels.get("host") or labels.get("instance") or None, index)


def read_history(lake: Lake, *, at: datetime | None = None, lookback: timedelta = timedelta(hours=1)) -> GpuInventory:
    """The newest reading of every GPU the lake has heard of within ``lookback`` of ``at``."""
    at = at or now_utc()
    df = lake.latest('{__name__=~"gpu_.+"}', at=at, lookback=lookback)
    devs: dict[tuple[str | None, int], dict[str, Any]] = {}
    procs: dict[tuple[str | None, int], list[GpuProcess]] = {}
    newest: datetime | None = None
    for row in df.iter_rows(named=True):
        labels = json.loads(row["labels"])
        where = _where(labels)
        if where is None:
            continue
        d = devs.setdefault(where, {"index": where[1], "host": where[0]})
        d["uuid"] = d.get("uuid") or labels.get("uuid")
        d["name"] = d.get("name") or labels.get("name")
        newest = row["ts"] if newest is None or row["ts"] > newest else newest
        metric, value = row["metric"], float(row["value"])
        if metric == "gpu_process_memory_bytes" and labels.get("pid", "").isdigit():
            procs.setdefault(where, []).append(GpuProcess(int(labels["pid"]), int(value)))
        elif metric in _FIELDS:
            name, scale = _FIELDS[metric]
            d[name] = int(value) if name in _INT_FIELDS else value * scale
    devices = tuple(
        Device(**d, processes=tuple(sorted(procs.get(k, ()), key=lambda p: p.pid)) if k in procs else None,
               notes=("from the lake's samples: no throttle reasons, MIG or retired rows",))
        for k, d in sorted(devs.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    )  # fmt: skip
    if not devices:
        return GpuInventory("lake", f"lake: no gpu_* samples in the {_span(lookback)} to {at:%Y-%m-%d %H:%M} UTC", at)
    when = f", newest {newest:%Y-%m-%d %H:%M:%S} UTC" if newest else ""
    return GpuInventory("lake", f"lake: {len(devices)} GPU(s) from samples{when}", at, devices)


def usage_from_lake(lake: Lake, start: datetime, end: datetime) -> dict[str, list[UsagePoint]]:
    """Per device (``host/gpuN`` or ``gpuN``): (time, utilisation, memory used) over [start, end)."""
    util = lake.raw("gpu_utilization_ratio", start, end)
    mem = lake.raw("gpu_memory_used_bytes", start, end)
    mem_at: dict[tuple[str, datetime], float] = {}
    for row in mem.iter_rows(named=True):
        key = _label(json.loads(row["labels"]))
        if key:
            mem_at[(key, row["ts"])] = float(row["value"])
    out: dict[str, list[UsagePoint]] = {}
    for row in util.iter_rows(named=True):
        key = _label(json.loads(row["labels"]))
        if key and (key, row["ts"]) in mem_at:
            point = UsagePoint(row["ts"].timestamp(), float(row["value"]), mem_at[key, row["ts"]])
            out.setdefault(key, []).append(point)
    return out


def _label(labels: dict[str, str]) -> str | None:
    where = _where(labels)
    if where is None:
        return None
    return f"{where[0]}/gpu{where[1]}" if where[0] else f"gpu{where[1]}"


def _span(d: timedelta) -> str:
    s = int(d.total_seconds())
    return f"{s // 3600} h" if s % 3600 == 0 else f"{s // 60} min"

"""GPU recommendations with the numbers behind them (``cortex-perf gpu advise``, the gpu flow).

Why rules and not a model: each recommendation is something an operator acts on (free an idle
context, consolidate, shrink a request, cool a node) and must be able to check. The kinds:
- **idle GPUs holding memory**, measured over time: GPU-hours at 0 % utilisation while ≥ 1 GiB is
  held (``idle_holding_usage`` — the same function reads the lake's history here and the Alibaba
  trace in ``benchmarks/gpu_idle_bench.py``);
- near the thermal or power limit, memory pressure (from ``tasks.gpu.health``);
- **tasks whose requests are far above what they use** (``over_requested``: the queue hands it
  (task, requested, used) triples; it knows reservations, this module does not);
- **consolidation** that would free N GPUs: the light work on a host packed onto fewer GPUs.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tasks.gpu.health import GIB, HOLDING_MIN_BYTES, IDLE_UTILIZATION, findings
from tasks.gpu.model import GpuInventory

__all__ = [
    "Advice",
    "IdleHolding",
    "ReservationUse",
    "UsagePoint",
    "advise",
    "consolidation",
    "idle_holding_usage",
    "over_requested",
    "summarize_idle",
]

Severity = Literal["critical", "warning", "info"]
_ORDER = {"critical": 0, "warning": 1, "info": 2}

#: A gap longer than this between two samples is missing data, not idleness: it counts this long.
MAX_GAP_S = 300.0
#: A device idle-holding at least this share of the time gets its own recommendation.
IDLE_SHARE_ADVICE = 0.5
#: Consolidation packs a host's work up to these limits per GPU (headroom for peaks).
PACK_UTILIZATION = 0.8
PACK_MEMORY = 0.9
#: A request is "far above use" when use is under this share of it and the gap is ≥ 1 GiB.
OVER_REQUEST_SHARE = 0.5


@dataclass(frozen=True)
class Advice:
    """One recommendation: what, where, how bad, the numbers, and what to do about it."""

    kind: str
    severity: Severity
    target: str
    message: str
    action: str = ""
    numbers: dict[str, float | int | str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---- idle GPUs holding memory, over time ---------------------------------------------------------
@dataclass(frozen=True)
class UsagePoint:
    """One reading of one GPU: Unix seconds, utilisation 0–1, memory used in bytes."""

    t: float
    utilization_ratio: float
    memory_used_bytes: float


@dataclass(frozen=True)
class IdleHolding:
    """How long one GPU sat idle while holding memory, and how much it held then."""

    device: str
    samples: int
    idle_holding_samples: int
    seconds: float
    idle_holding_seconds: float
    #: ∫ memory dt over the idle-holding time (byte-seconds): mean held = this / idle_holding_seconds.
    held_byte_seconds: float
    mean_utilization: float

    @property
    def idle_share(self) -> float:
        return self.idle_holding_seconds / self.seconds if self.seconds else 0.0

    @property
    def mean_held_bytes(self) -> float:
        return self.held_byte_seconds / self.idle_holding_seconds if self.idle_holding_seconds else 0.0


def idle_holding_usage(
    device: str,
    points: Sequence[UsagePoint],
    *,
    idle_utilization: float = IDLE_UTILIZATION,
    min_bytes: float = HOLDING_MIN_BYTES,
    max_gap_s: float = MAX_GAP_S,
    default_step_s: float = 60.0,
) -> IdleHolding:
    """Idle-while-holding time of one GPU's series. Each reading stands for the time until the next
    (at most ``max_gap_s``); the last one for the series' median step (``default_step_s`` alone)."""
    pts = sorted(points, key=lambda p: p.t)
    gaps = [b.t - a.t for a, b in itertools.pairwise(pts)]
    last = statistics.median(gaps) if gaps else default_step_s
    n_idle = 0
    seconds = idle_s = held = util_s = 0.0
    for i, p in enumerate(pts):
        w = min(gaps[i], max_gap_s) if i < len(gaps) else min(last, max_gap_s)
        seconds += w
        util_s += p.utilization_ratio * w
        if p.utilization_ratio <= idle_utilization and p.memory_used_bytes >= min_bytes:
            n_idle += 1
            idle_s += w
            held += p.memory_used_bytes * w
    return IdleHolding(device, len(pts), n_idle, seconds, idle_s, held, util_s / seconds if seconds else 0.0)


def summarize_idle(per_device: Iterable[IdleHolding]) -> dict[str, float | int]:
    """Fleet totals: GPU-hours observed and idle-holding, share of samples, mean memory held (GiB)."""
    items = list(per_device)
    samples = sum(i.samples for i in items)
    idle_samples = sum(i.idle_holding_samples for i in items)
    seconds = sum(i.seconds for i in items)
    idle_s = sum(i.idle_holding_seconds for i in items)
    held = sum(i.held_byte_seconds for i in items)
    return {
        "devices": len(items),
        "samples": samples,
        "idle_holding_samples": idle_samples,
        "idle_holding_sample_share": idle_samples / samples if samples else 0.0,
        "gpu_hours": seconds / 3600.0,
        "idle_holding_gpu_hours": idle_s / 3600.0,
        "idle_holding_time_share": idle_s / seconds if seconds else 0.0,
        "mean_held_gib": held / idle_s / GIB if idle_s else 0.0,
        "held_gib_hours": held / GIB / 3600.0,
    }


def _idle_advice(usage: Mapping[str, Sequence[UsagePoint]]) -> list[Advice]:
    out: list[Advice] = []
    per = [idle_holding_usage(dev, pts) for dev, pts in sorted(usage.items()) if pts]
    for h in per:
        if h.idle_share >= IDLE_SHARE_ADVICE:
            out.append(Advice("idle-holding-memory", "warning", h.device,
                              f"{h.device} sat idle {h.idle_share:.0%} of {h.seconds / 3600:.1f} h while holding "
                              f"{h.mean_held_bytes / GIB:.1f} GiB on average "
                              f"(mean utilisation {h.mean_utilization:.1%})",
                              "free the idle context (stop the process holding it), or share the GPU "
                              "(MIG / time-slicing) with other work",
                              {"idle_share": round(h.idle_share, 4), "hours": round(h.seconds / 3600, 3),
                               "idle_holding_hours": round(h.idle_holding_seconds / 3600, 3),
                               "mean_held_gib": round(h.mean_held_bytes / GIB, 2)}))  # fmt: skip
    if len(per) > 1:
        s = summarize_idle(per)
        if s["idle_holding_gpu_hours"]:
            out.append(Advice("fleet-idle-holding", "info", "fleet",
                              f"{s['idle_holding_gpu_hours']:.1f} of {s['gpu_hours']:.1f} GPU-hours "
                              f"({s['idle_holding_time_share']:.0%}) idle while holding "
                              f"{s['mean_held_gib']:.1f} GiB on average across {s['devices']} GPU(s)",
                              "consolidate idle-holding work (see consolidation) or release idle contexts",
                              {k: round(float(v), 4) for k, v in s.items()}))  # fmt: skip
    return out


# ---- requests far above use (the queue's seam) ---------------------------------------------------
@dataclass(frozen=True)
class ReservationUse:
    """A task's memory reservation per GPU against the most it used (the queue fills these)."""

    task: str
    requested_bytes: int
    used_bytes: int


def over_requested(pairs: Iterable[ReservationUse]) -> list[Advice]:
    """Tasks using under half of what they reserved (and ≥ 1 GiB less): shrink the request."""
    out: list[Advice] = []
    for r in pairs:
        if r.requested_bytes <= 0:
            continue
        share = r.used_bytes / r.requested_bytes
        suggest = max(r.used_bytes * 1.25, GIB)  # 25 % headroom over the peak seen, never under 1 GiB
        if share < OVER_REQUEST_SHARE and r.requested_bytes - r.used_bytes >= GIB and suggest < r.requested_bytes:
            out.append(Advice("over-requested", "info", r.task,
                              f"task {r.task} reserved {r.requested_bytes / GIB:.1f} GiB per GPU and used at most "
                              f"{r.used_bytes / GIB:.1f} GiB ({share:.0%})",
                              f"submit it with about {suggest / GIB:.1f} GiB per GPU",
                              {"requested_bytes": r.requested_bytes, "used_bytes": r.used_bytes,
                               "used_share": round(share, 4), "suggested_bytes": int(suggest)}))  # fmt: skip
    return out


# ---- consolidation -------------------------------------------------------------------------------
def consolidation(inventory: GpuInventory, mean_utilization: Mapping[str, float] | None = None) -> list[Advice]:
    """Per host: the GPUs in use whose work would fit on fewer (first-fit decreasing on memory, up to
    ``PACK_UTILIZATION`` and ``PACK_MEMORY`` per GPU). ``mean_utilization`` (by device label) replaces
    the instantaneous reading where a history is known. MIG-enabled GPUs are left out (already shared)."""
    mean_utilization = mean_utilization or {}
    by_host: dict[str, list[tuple[str, float, int, int]]] = {}
    for d in inventory.devices:
        util = mean_utilization.get(d.label, d.utilization_ratio)
        if d.mig_enabled or util is None or d.memory_used_bytes is None or not d.memory_total_bytes:
            continue
        if util <= IDLE_UTILIZATION and d.memory_used_bytes < HOLDING_MIN_BYTES:
            continue  # empty already
        by_host.setdefault(d.host or "this host", []).append((d.label, util, d.memory_used_bytes, d.memory_total_bytes))
    out: list[Advice] = []
    for host, items in sorted(by_host.items()):
        if len(items) < 2:
            continue
        cap_mem = PACK_MEMORY * min(t for _, _, _, t in items)
        bins: list[list[float]] = []  # [util, memory]
        for _, util, mem, _ in sorted(items, key=lambda x: (-x[2], -x[1])):
            if util > PACK_UTILIZATION or mem > cap_mem:
                bins.append([util, float(mem)])  # too big to share: keeps a GPU of its own
                continue
            for b in bins:
                if b[0] + util <= PACK_UTILIZATION and b[1] + mem <= cap_mem:
                    b[0] += util
                    b[1] += mem
                    break
            else:
                bins.append([util, float(mem)])
        freed = len(items) - len(bins)
        if freed >= 1:
            names = ", ".join(n for n, _, _, _ in items)
            out.append(Advice("consolidation", "info", host,
                              f"the work on {len(items)} GPU(s) of {host} ({names}) fits on {len(bins)} "
                              f"(≤ {PACK_UTILIZATION:.0%} utilisation and ≤ {PACK_MEMORY:.0%} memory each): "
                              f"consolidating frees {freed} GPU(s)",
                              "move the light tasks onto fewer GPUs (queued work: cortex-perf gpu rebalance)",
                              {"gpus_in_use": len(items), "gpus_needed": len(bins), "gpus_freed": freed}))  # fmt: skip
    return out


# ---- everything --------------------------------------------------------------------------------
_FROM_HEALTH = {
    "near-thermal-limit": "check the node's cooling and airflow; move work off it before it throttles",
    "thermal-throttle": "move work off it and check the node's cooling: its clocks are already reduced",
    "near-power-limit": "expect power-capped clocks; spread work to other GPUs or raise the limit (nvidia-smi -pl)",
    "power-throttle": "spread work to other GPUs or raise the power limit (nvidia-smi -pl)",
    "memory-pressure": "place no more work here; large allocations will fail with CUDA out-of-memory",
    "ecc-uncorrected": "drain the GPU and reset it (nvidia-smi -r); replace it if errors recur",
    "row-remap-failed": "drain the GPU and have it serviced",
    "row-remap-pending": "drain the GPU and reset it to apply the remap",
}


def advise(
    inventory: GpuInventory,
    *,
    usage: Mapping[str, Sequence[UsagePoint]] | None = None,
    reservations: Iterable[ReservationUse] = (),
) -> list[Advice]:
    """Every recommendation for ``inventory`` (most severe first). ``usage``: each device's recent
    series (by device label), for idle-holding over time and consolidation on mean utilisation;
    without it the current readings stand alone. ``reservations``: the queue's (task, requested, used)."""
    out: list[Advice] = []
    for f in findings(inventory):
        if f.kind in _FROM_HEALTH:
            out.append(Advice(f.kind, f.severity, f.device, f.message, _FROM_HEALTH[f.kind], dict(f.numbers)))
        elif f.kind == "idle-holding-memory" and f.device not in (usage or {}):  # no history: the reading
            act = "free the idle context (stop the process holding it), or share the GPU"
            out.append(Advice(f.kind, f.severity, f.device, f.message, act, dict(f.numbers)))
    means: dict[str, float] = {}
    if usage:
        out += _idle_advice(usage)
        means = {k: idle_holding_usage(k, v).mean_utilization for k, v in usage.items() if v}
    out += over_requested(reservations)
    out += consolidation(inventory, means)
    return sorted(out, key=lambda a: (_ORDER[a.severity], a.kind, a.target))

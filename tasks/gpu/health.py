"""Health findings for one inventory: what is wrong with each GPU right now, with the numbers.

Why these checks and thresholds: they are what an operator pages on or acts on by hand, and each
is read straight off the device model, so a person can check it with ``nvidia-smi -q``:
- clocks held down for heat (NVML's thermal throttle reasons) or at the power cap;
- within ``THERMAL_MARGIN_C`` of the driver's slowdown temperature (85 °C when it gives none:
  the common data-centre slowdown point), or drawing ≥ 95 % of the enforced power limit;
- uncorrected (double-bit) ECC errors, pending or failed row remaps, retired pages (the GPU needs
  a reset or an RMA); corrected errors only as information;
- memory held by idle processes (utilisation 0 while ≥ 1 GiB is in use: a notebook kernel or a
  finished job that never freed its context);
- memory pressure (≥ 95 % used: the next allocation fails with CUDA OOM).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tasks.gpu.model import POWER_THROTTLE, THERMAL_THROTTLE, Device, GpuInventory

__all__ = [
    "HOLDING_MIN_BYTES",
    "IDLE_UTILIZATION",
    "Finding",
    "device_findings",
    "findings",
    "health_word",
    "idle_holding",
]

Severity = Literal["critical", "warning", "info"]
_ORDER = {"critical": 0, "warning": 1, "info": 2}

GIB = 1024**3
THERMAL_MARGIN_C = 5.0
DEFAULT_SLOWDOWN_C = 85.0
POWER_NEAR = 0.95
MEMORY_PRESSURE = 0.95
#: "Idle": utilisation at or below this ratio (NVML reports whole percent, so 0 means < 1 %).
IDLE_UTILIZATION = 0.0
#: "Holding memory": at least this much in use (a bare CUDA context takes ~0.3–0.5 GiB).
HOLDING_MIN_BYTES = 1 * GIB


@dataclass(frozen=True)
class Finding:
    """One health problem of one device."""

    kind: str
    severity: Severity
    device: str
    message: str
    numbers: dict[str, float | int | str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB"


def device_findings(d: Device) -> list[Finding]:
    """Every finding for one device (unsorted)."""
    out: list[Finding] = []
    dev = d.label
    reasons = set(d.throttle_reasons or ())
    hot = sorted(reasons & THERMAL_THROTTLE)
    if hot:
        out.append(Finding("thermal-throttle", "critical", dev,
                           f"{dev} clocks held down for heat ({', '.join(hot)}) at {_c(d.temperature_c)}",
                           {"temperature_c": d.temperature_c, "reasons": ",".join(hot)}))  # fmt: skip
    capped = sorted(reasons & POWER_THROTTLE)
    if capped:
        out.append(Finding("power-throttle", "warning", dev,
                           f"{dev} clocks held down at the power cap ({', '.join(capped)}): "
                           f"{_w(d.power_w)} of {_w(d.power_limit_w)}",
                           {"power_w": d.power_w, "power_limit_w": d.power_limit_w}))  # fmt: skip
    if d.temperature_c is not None and not hot:
        slowdown = d.temperature_slowdown_c or DEFAULT_SLOWDOWN_C
        if d.temperature_c >= slowdown - THERMAL_MARGIN_C:
            out.append(Finding("near-thermal-limit", "warning", dev,
                               f"{dev} at {_c(d.temperature_c)}, within {THERMAL_MARGIN_C:.0f} °C of its "
                               f"slowdown point {_c(slowdown)}",
                               {"temperature_c": d.temperature_c, "slowdown_c": slowdown}))  # fmt: skip
    if d.power_w is not None and d.power_limit_w and not capped and d.power_w >= POWER_NEAR * d.power_limit_w:
        out.append(Finding("near-power-limit", "warning", dev,
                           f"{dev} draws {_w(d.power_w)}, {d.power_w / d.power_limit_w:.0%} of its "
                           f"{_w(d.power_limit_w)} limit",
                           {"power_w": d.power_w, "power_limit_w": d.power_limit_w}))  # fmt: skip
    if d.ecc_volatile_uncorrected:
        out.append(Finding("ecc-uncorrected", "critical", dev,
                           f"{dev} had {d.ecc_volatile_uncorrected} uncorrected ECC error(s) since the driver "
                           "loaded: drain it and reset the GPU",
                           {"ecc_volatile_uncorrected": d.ecc_volatile_uncorrected}))  # fmt: skip
    if d.remap_failure:
        out.append(Finding("row-remap-failed", "critical", dev, f"{dev}: a row remap failed: it needs service", {}))
    elif d.remap_pending:
        out.append(Finding("row-remap-pending", "warning", dev, f"{dev}: a row remap is pending: reset the GPU",
                           {"remapped_rows_uncorrectable": d.remapped_rows_uncorrectable}))  # fmt: skip
    if d.retired_pages:
        out.append(Finding("retired-pages", "info", dev, f"{dev} has {d.retired_pages} retired memory page(s)",
                           {"retired_pages": d.retired_pages}))  # fmt: skip
    if d.ecc_volatile_corrected:
        out.append(Finding("ecc-corrected", "info", dev,
                           f"{dev} corrected {d.ecc_volatile_corrected} ECC error(s) since the driver loaded",
                           {"ecc_volatile_corrected": d.ecc_volatile_corrected}))  # fmt: skip
    used = d.memory_used_bytes
    if idle_holding(d):
        assert used is not None
        procs = [p for p in (d.processes or ()) if p.used_memory_bytes]
        who = (
            "; held by pid " + ", ".join(f"{p.pid} ({_gib(p.used_memory_bytes or 0)})" for p in procs[:5])
            if procs
            else ""
        )
        out.append(Finding("idle-holding-memory", "warning", dev,
                           f"{dev} idle (utilisation {d.utilization_ratio:.0%}) while holding {_gib(used)}{who}",
                           {"memory_used_bytes": used, "utilization_ratio": d.utilization_ratio,
                            "pids": ",".join(str(p.pid) for p in procs)}))  # fmt: skip
    ratio = d.memory_used_ratio
    if ratio is not None and ratio >= MEMORY_PRESSURE:
        out.append(Finding("memory-pressure", "warning", dev,
                           f"{dev} memory {ratio:.0%} used ({_gib(used or 0)} of {_gib(d.memory_total_bytes or 0)}): "
                           "the next allocation may fail",
                           {"memory_used_bytes": used, "memory_total_bytes": d.memory_total_bytes}))  # fmt: skip
    return out


def idle_holding(d: Device) -> bool:
    """Idle now (utilisation known and ≤ ``IDLE_UTILIZATION``) while ≥ ``HOLDING_MIN_BYTES`` is in use."""
    return (
        d.utilization_ratio is not None
        and d.utilization_ratio <= IDLE_UTILIZATION
        and (d.memory_used_bytes or 0) >= HOLDING_MIN_BYTES
    )


def findings(inventory: GpuInventory) -> list[Finding]:
    """Every finding of every device, most severe first."""
    out = [f for d in inventory.devices for f in device_findings(d)]
    return sorted(out, key=lambda f: (_ORDER[f.severity], f.device, f.kind))


def health_word(found: list[Finding]) -> str:
    """One word for a table cell: ``ok``, or the worst severity and the kinds."""
    if not found:
        return "ok"
    worst = min(found, key=lambda f: _ORDER[f.severity]).severity
    return f"{worst}: " + ", ".join(sorted({f.kind for f in found}))


def _c(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f} °C"


def _w(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f} W"

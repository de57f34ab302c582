"""The device model every part of the GPU manager reads: what one GPU is and holds, right now.

Why one model filled from three places (NVML, a DCGM exporter, the lake's history): health,
advice, placement and the CLI should not care where a reading came from, only whether it is
known. So every reading is optional (``None`` = "n/a": the device or the source cannot say, e.g.
NVML's ``NotSupported``), and a ``note`` says why where the reason matters (a MIG-enabled GPU
reports no utilisation through NVML).

Units are fixed here, once: bytes for memory, watts for power (NVML reports mW), °C, MHz,
utilisation as a ratio 0–1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "POWER_THROTTLE",
    "THERMAL_THROTTLE",
    "THROTTLE_REASONS",
    "Device",
    "DeviceWork",
    "GpuInventory",
    "GpuProcess",
    "InventorySource",
    "MigInstance",
    "decode_throttle_reasons",
]

InventorySource = Literal["nvml", "dcgm", "lake", "none"]

#: NVML's clock-event ("throttle") reason bits (nvmlClocksEventReason*, the same bits DCGM exports
#: as DCGM_FI_DEV_CLOCK_THROTTLE_REASONS), in bit order, with the names we show.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal"),
    (0x040, "hw_thermal"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clocks"),
)
#: Reasons that mean "too hot" (HW slowdown fires on thermal *or* power-brake; counted as thermal
#: because the driver raises it first for temperature) and "at the power cap".
THERMAL_THROTTLE = frozenset({"sw_thermal", "hw_thermal", "hw_slowdown"})
POWER_THROTTLE = frozenset({"sw_power_cap", "hw_power_brake"})


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """Names of the set bits of an NVML/DCGM throttle-reason bitmask (unknown bits as ``bit_0xN``)."""
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    known = 0
    for bit, _ in THROTTLE_REASONS:
        known |= bit
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"bit_{bit:#x}")
            rest &= ~bit
        bit <<= 1
    return tuple(names)


@dataclass(frozen=True)
class GpuProcess:
    """A process with a context on the GPU; ``used_memory_bytes`` None where the driver hides it."""

    pid: int
    used_memory_bytes: int | None
    kind: Literal["compute", "graphics"] = "compute"


@dataclass(frozen=True)
class MigInstance:
    """One MIG device (a GPU instance + compute instance) of a MIG-enabled GPU."""

    index: int
    uuid: str | None = None
    name: str | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    #: DCGM's graphics-engine activity (0–1); NVML has no utilisation for MIG devices.
    activity_ratio: float | None = None


@dataclass(frozen=True)
class Device:
    """One physical GPU. ``host`` is None for the local machine (NVML) and set from DCGM/lake labels."""

    index: int
    uuid: str | None = None
    name: str | None = None
    host: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    utilization_ratio: float | None = None
    temperature_c: float | None = None
    #: The driver's slowdown threshold (clocks drop above it); None when not reported.
    temperature_slowdown_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    max_sm_clock_mhz: float | None = None
    throttle_reasons: tuple[str, ...] | None = None
    ecc_volatile_corrected: int | None = None
    ecc_volatile_uncorrected: int | None = None
    ecc_aggregate_corrected: int | None = None
    ecc_aggregate_uncorrected: int | None = None
    retired_pages: int | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    mig_enabled: bool | None = None
    mig_instances: tuple[MigInstance, ...] = ()
    processes: tuple[GpuProcess, ...] | None = None
    #: Why a reading is missing or partial ("utilization: MIG mode ..."), for people.
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The device's identity across sources and runs: its UUID, else ``host:index``."""
        return self.uuid or f"{self.host or 'local'}:{self.index}"

    @property
    def memory_used_ratio(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return self.memory_used_bytes / self.memory_total_bytes

    @property
    def label(self) -> str:
        """``host/gpuN`` or ``gpuN``: how a person names the device in a table."""
        return f"{self.host}/gpu{self.index}" if self.host else f"gpu{self.index}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["key"] = self.key
        out["memory_used_ratio"] = self.memory_used_ratio
        return out


@dataclass(frozen=True)
class DeviceWork:
    """What the GPU queue has on one device (filled by the queue, ``tasks.gpu`` queue part): task ids."""

    running: tuple[str, ...] = ()
    queued: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"running": list(self.running), "queued": list(self.queued)}


@dataclass(frozen=True)
class GpuInventory:
    """Every device one source sees, with a one-line status saying what was (not) found and why."""

    source: InventorySource
    status: str
    at: datetime
    devices: tuple[Device, ...] = ()
    driver_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "at": self.at.isoformat(),
            "driver_version": self.driver_version,
            "devices": [d.to_json() for d in self.devices],
        }

"""The gpu section: where GPU readings come from, how work is placed, queued and rebalanced.

Why a section of its own (and not ``sources.gpu``): the source only *reads* NVML for the lake; the
GPU manager also keeps a queue, places work on devices, launches it and moves it, with its own
limits. Each sub-section belongs to one part of ``tasks.gpu``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.config.section import Section

__all__ = [
    "GpuInventorySettings",
    "GpuPlacementSettings",
    "GpuQueueSettings",
    "GpuRebalanceSettings",
    "GpuSettings",
]


class GpuInventorySettings(Section):
    """Where the device model comes from."""

    source: Literal["auto", "nvml", "dcgm", "lake"] = Field(
        "auto", description="`auto`: NVML when a driver is present, else the DCGM exporter if set, else the lake."
    )
    dcgm_url: str | None = Field(None, description="A DCGM exporter's /metrics URL (fleets where NVML is not local).")
    timeout_s: float = Field(5.0, gt=0, le=600, description="Timeout of one DCGM scrape.")


class GpuQueueSettings(Section):
    """The durable queue of GPU work (in the state DB)."""

    aging_s: float = Field(
        600.0, gt=0, le=30 * 86400.0, description="A queued task gains one priority level per this many seconds waited."
    )
    max_wait_s: float = Field(
        86400.0, gt=0, le=365 * 86400.0, description="Default longest wait before a task expires."
    )
    quotas: dict[str, int] = Field(
        default_factory=dict, description="GPUs an owner may hold at once (running), by owner; unlisted: no limit."
    )


class GpuPlacementSettings(Section):
    """How placed work picks its devices."""

    strategy: Literal["best_fit", "first_fit", "spread", "fragmentation_aware"] = Field(
        "fragmentation_aware", description="Default placement strategy (`cortex-perf gpu strategy NAME` changes it)."
    )


class GpuRebalanceSettings(Section):
    """When the gpu flow rebalances (a device runs hot, or queued work fits nowhere)."""

    mode: Literal["off", "dry-run", "apply"] = Field(
        "dry-run", description="`dry-run`: the flow shows the plan; `apply`: it stops, requeues and pins moved tasks."
    )
    grace_s: float = Field(10.0, ge=0, le=600, description="Seconds a stopped task gets before SIGKILL.")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        """YAML reads a bare ``off`` as ``false``: that is what the user meant."""
        return "off" if v is False else v


class GpuSettings(Section):
    """The GPU manager (``cortex-perf gpu …``, the ``gpu`` flow)."""

    enabled: bool = Field(False, description="Run the gpu flow (inventory, placement, rebalancing) on its schedule.")
    inventory: GpuInventorySettings = Field(default_factory=GpuInventorySettings)
    queue: GpuQueueSettings = Field(default_factory=GpuQueueSettings)
    placement: GpuPlacementSettings = Field(default_factory=GpuPlacementSettings)
    rebalance: GpuRebalanceSettings = Field(default_factory=GpuRebalanceSettings)

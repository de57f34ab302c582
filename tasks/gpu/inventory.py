"""Which source fills the device model (``gpu.inventory.source``), and the one call that reads it.

``auto``: NVML when this machine has a driver; else the DCGM exporter when ``dcgm_url`` is set;
else the lake's samples when a lake is at hand; else NVML's empty inventory, whose status line
says no driver was found. Why that order: the local driver is the freshest and richest reading,
a configured exporter is the operator's explicit choice for remote fleets, and the lake is what is
left when GPUs are only known through collected samples.

A configured DCGM exporter that is down is an error (``DcgmError``), not an empty fleet: the
operator asked for it, and "no GPUs" would hide the outage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pynvml

from tasks.config.gpu import GpuInventorySettings
from tasks.gpu.dcgm import read_dcgm
from tasks.gpu.history import read_history
from tasks.gpu.model import GpuInventory
from tasks.gpu.nvml import read_nvml
from tasks.lake import Lake

__all__ = ["read_inventory"]


def read_inventory(
    cfg: GpuInventorySettings,
    *,
    lake: Lake | None = None,
    nvml: Any = pynvml,
    client: httpx.Client | None = None,
    now: datetime | None = None,
    lookback: timedelta = timedelta(hours=1),
) -> GpuInventory:
    """The inventory from the configured source (see the module docstring for ``auto``)."""
    if cfg.source == "nvml":
        return read_nvml(nvml, now=now)
    if cfg.source == "dcgm":
        if not cfg.dcgm_url:
            raise ValueError("gpu.inventory.dcgm_url: not set, and gpu.inventory.source is dcgm")
        return read_dcgm(cfg.dcgm_url, timeout_s=cfg.timeout_s, client=client, now=now)
    if cfg.source == "lake":
        if lake is None:
            raise ValueError("gpu.inventory.source is lake, but no lake was given")
        return read_history(lake, at=now, lookback=lookback)
    local = read_nvml(nvml, now=now)
    if local.source == "nvml" and local.devices:
        return local
    if cfg.dcgm_url:
        return read_dcgm(cfg.dcgm_url, timeout_s=cfg.timeout_s, client=client, now=now)
    if lake is not None:
        hist = read_history(lake, at=now, lookback=lookback)
        if hist.devices:
            return hist
        return GpuInventory("none", f"{local.status}; {hist.status}", local.at)
    return local

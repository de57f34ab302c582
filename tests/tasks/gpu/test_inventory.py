"""Which source ``gpu.inventory.source`` reads, and ``auto``'s order: NVML, then DCGM, then the lake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pynvml
import pytest
from dcgmpage import DcgmHandler
from localhttp import LocalServer
from nvmlrecorded import H100, RecordedNVML

from tasks.config.gpu import GpuInventorySettings
from tasks.gpu.dcgm import DcgmError
from tasks.gpu.inventory import read_inventory
from tasks.lake import Lake
from tasks.lake.schema import Sample

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NO_DRIVER = RecordedNVML([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


@pytest.fixture
def exporter() -> Iterator[LocalServer]:
    srv = LocalServer(DcgmHandler)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lk = Lake(str(tmp_path / "lake"))
    lk.write_samples([Sample("gpu_utilization_ratio", 0.25, NOW - timedelta(minutes=1), {"gpu": "0"})])
    return lk


def test_auto_prefers_a_local_driver(exporter: LocalServer, lake: Lake) -> None:
    cfg = GpuInventorySettings(dcgm_url=exporter.url + "/metrics")
    inv = read_inventory(cfg, lake=lake, nvml=RecordedNVML([H100]), now=NOW)
    assert inv.source == "nvml" and len(inv.devices) == 1


def test_auto_without_a_driver_reads_the_dcgm_exporter_then_the_lake(exporter: LocalServer, lake: Lake) -> None:
    cfg = GpuInventorySettings(dcgm_url=exporter.url + "/metrics")
    assert read_inventory(cfg, lake=lake, nvml=NO_DRIVER, now=NOW).source == "dcgm"
    inv = read_inventory(GpuInventorySettings(), lake=lake, nvml=NO_DRIVER, now=NOW)
    assert inv.source == "lake" and inv.devices[0].utilization_ratio == 0.25


def test_auto_with_nothing_anywhere_says_both(tmp_path: Path) -> None:
    inv = read_inventory(GpuInventorySettings(), lake=Lake(str(tmp_path / "empty")), nvml=NO_DRIVER, now=NOW)
    assert inv.source == "none" and inv.devices == ()
    assert inv.status == (
        "no NVIDIA driver found (NVML: NVML Shared Library Not Found); "
        "lake: no gpu_* samples in the 1 h to 2026-12-07 12:00 UTC"
    )
    assert read_inventory(GpuInventorySettings(), nvml=NO_DRIVER, now=NOW).status.startswith("no NVIDIA driver")


def test_auto_with_a_configured_exporter_down_is_an_error(exporter: LocalServer) -> None:
    url = exporter.url + "/metrics"
    exporter.close()
    with pytest.raises(DcgmError, match="is not reachable"):
        read_inventory(GpuInventorySettings(dcgm_url=url), nvml=NO_DRIVER, now=NOW)


def test_explicit_sources(lake: Lake) -> None:
    assert read_inventory(GpuInventorySettings(source="nvml"), nvml=NO_DRIVER, now=NOW).source == "none"
    assert read_inventory(GpuInventorySettings(source="lake"), lake=lake, now=NOW).source == "lake"
    with pytest.raises(ValueError, match="gpu.inventory.dcgm_url: not set"):
        read_inventory(GpuInventorySettings(source="dcgm"), now=NOW)
    with pytest.raises(ValueError, match="no lake was given"):
        read_inventory(GpuInventorySettings(source="lake"), now=NOW)

"""GpuSource: the real pynvml path on a machine without a driver, and the mapping on a fake NVML.

The fake is the only stand-in in these tests: CI machines have no NVIDIA GPU. It implements the
same functions and constants as ``pynvml`` and raises pynvml's own error classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from tasks.sources import GpuSource, collect_all
from tasks.sources import gpu as gpu_module

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _reset_notice() -> None:
    gpu_module._no_driver_logged = False


def _driver_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver (see benchmarks/gpu_check.py)")
def test_no_driver_yields_nothing_and_says_so_once(caplog) -> None:
    src = GpuSource()
    with caplog.at_level(logging.INFO, logger="cortex_perf.sources.gpu"):
        assert src.collect(NOW) == []
        assert GpuSource().collect(NOW) == []  # another instance: still said only once per process
        res = collect_all([src], timeout_s=5, now=NOW)
    notices = [r for r in caplog.records if "no NVIDIA driver" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.INFO
    assert notices[0].name == "cortex_perf.sources.gpu"
    assert res.ok  # absence of a GPU is not a failure
    assert [s.value for s in res.samples if s.metric == "cortex_perf_source_up"] == [1.0]


NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION


@dataclass
class FakeDevice:
    uuid: str
    name: str | bytes
    fields: dict[str, Any]  # value, or an NVML error code to raise


class FakeNVML:
    """Just enough of pynvml's surface for GpuSource, answering from ``devices``."""

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_MEMORY_ERROR_TYPE_CORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC

    def __init__(self, devices: list[FakeDevice], init_error: int | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.inits = self.shutdowns = 0

    def _field(self, h: FakeDevice, key: str) -> Any:
        if f"err:{key}" in h.fields:
            raise pynvml.NVMLError(h.fields[f"err:{key}"])
        return h.fields[key]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeDevice:
        return self.devices[i]

    def nvmlDeviceGetUUID(self, h: FakeDevice) -> str:
        return h.uuid

    def nvmlDeviceGetName(self, h: FakeDevice) -> str | bytes:
        return h.name

    def nvmlDeviceGetUtilizationRates(self, h: FakeDevice) -> Any:
        return self._field(h, "util")

    def nvmlDeviceGetMemoryInfo(self, h: FakeDevice) -> Any:
        return self._field(h, "mem")

    def nvmlDeviceGetTemperature(self, h: FakeDevice, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._field(h, "temp")

    def nvmlDeviceGetPowerUsage(self, h: FakeDevice) -> int:
        return self._field(h, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeDevice) -> int:
        return self._field(h, "limit_mw")

    def nvmlDeviceGetClockInfo(self, h: FakeDevice, clock: int) -> int:
        return self._field(h, {pynvml.NVML_CLOCK_SM: "sm_mhz", pynvml.NVML_CLOCK_MEM: "mem_mhz"}[clock])

    def nvmlDeviceGetTotalEccErrors(self, h: FakeDevice, kind: int, counter: int) -> int:
        assert counter == pynvml.NVML_VOLATILE_ECC
        return self._field(h, {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "ecc_c"}.get(kind, "ecc_u"))

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeDevice) -> list[Any]:
        return self._field(h, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: FakeDevice) -> list[Any]:
        return self._field(h, "graphics")


def proc(pid: int, used: int | None) -> Any:
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


def full_device() -> FakeDevice:
    return FakeDevice(
        uuid="GPU-aaaa",
        name=b"NVIDIA H100 80GB HBM3",  # older bindings return bytes
        fields={
            "util": SimpleNamespace(gpu=57, memory=23),
            "mem": SimpleNamespace(total=80 * 2**30, used=20 * 2**30, free=60 * 2**30),
            "temp": 61,
            "power_mw": 123_456,
            "limit_mw": 700_000,
            "sm_mhz": 1410,
            "mem_mhz": 2619,
            "ecc_c": 4,
            "ecc_u": 0,
            "compute": [proc(101, 2**30), proc(102, None)],
            "graphics": [proc(101, 2**29), proc(103, 2**64 - 1)],  # 2**64-1: NVML "not available"
        },
    )


def sparse_device() -> FakeDevice:
    """A consumer card: no power, clocks, ECC; processes hidden (no permission)."""
    return FakeDevice(
        uuid="GPU-bbbb",
        name="NVIDIA GeForce RTX 4090",
        fields={
            "util": SimpleNamespace(gpu=0, memory=0),
            "mem": SimpleNamespace(total=24 * 2**30, used=0, free=24 * 2**30),
            "temp": 35,
            "err:power_mw": NOT_SUPPORTED,
            "err:limit_mw": NOT_SUPPORTED,
            "err:sm_mhz": NOT_SUPPORTED,
            "err:mem_mhz": NOT_SUPPORTED,
            "err:ecc_c": NOT_SUPPORTED,
            "err:ecc_u": NOT_SUPPORTED,
            "err:compute": NO_PERMISSION,
            "err:graphics": NO_PERMISSION,
        },
    )


def by(samples, metric: str) -> dict[str, float]:
    return {s.labels["gpu"]: s.value for s in samples if s.metric == metric}


def test_fake_nvml_mapping(check_samples, caplog) -> None:
    nvml = FakeNVML([full_device(), sparse_device()])
    with caplog.at_level(logging.DEBUG, logger="cortex_perf.sources.gpu"):
        samples = check_samples(GpuSource(nvml=nvml).collect(NOW))
    assert nvml.inits == 1 and nvml.shutdowns == 1

    gpu0 = [s for s in samples if s.labels.get("uuid") == "GPU-aaaa"]
    assert {dict(s.labels)["name"] for s in gpu0} == {"NVIDIA H100 80GB HBM3"}
    assert by(samples, "gpu_utilization_ratio") == {"0": 0.57, "1": 0.0}
    assert by(samples, "gpu_memory_copy_utilization_ratio") == {"0": 0.23, "1": 0.0}
    assert by(samples, "gpu_memory_used_bytes") == {"0": 20 * 2**30, "1": 0}
    assert by(samples, "gpu_memory_total_bytes") == {"0": 80 * 2**30, "1": 24 * 2**30}
    assert by(samples, "gpu_memory_used_ratio") == {"0": 0.25, "1": 0.0}
    assert by(samples, "gpu_temperature_celsius") == {"0": 61, "1": 35}
    # Unsupported on GPU 1: simply absent, the rest of GPU 1 still reported.
    assert by(samples, "gpu_power_watts") == {"0": pytest.approx(123.456)}
    assert by(samples, "gpu_power_limit_watts") == {"0": 700.0}
    assert by(samples, "gpu_sm_clock_hertz") == {"0": 1.41e9}
    assert by(samples, "gpu_memory_clock_hertz") == {"0": 2.619e9}
    assert by(samples, "gpu_ecc_corrected_errors_total") == {"0": 4}
    assert by(samples, "gpu_ecc_uncorrected_errors_total") == {"0": 0}

    procs = {s.labels["pid"]: s.value for s in samples if s.metric == "gpu_process_memory_bytes"}
    assert procs == {"101": 2**30, "102": 0, "103": 0}
    assert {tuple(sorted(s.labels)) for s in samples if s.metric == "gpu_process_memory_bytes"} == {("gpu", "pid")}
    assert by(samples, "gpu_processes") == {"0": 3}
    # No permission is unexpected: one warning (per field), not an exception.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("failed" in r.getMessage() for r in warnings)
    assert all(s.ts == NOW for s in samples)

    with caplog.at_level(logging.DEBUG, logger="cortex_perf.sources.gpu"):
        caplog.clear()
        GpuSource(nvml=nvml).collect(NOW)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # said once already


def test_fake_nvml_init_failure_is_silent_after_first_time(caplog) -> None:
    nvml = FakeNVML([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with caplog.at_level(logging.INFO, logger="cortex_perf.sources.gpu"):
        for _ in range(3):
            assert GpuSource(nvml=nvml).collect(NOW) == []
    assert len([r for r in caplog.records if "no NVIDIA driver" in r.getMessage()]) == 1
    assert nvml.shutdowns == 0  # never initialised, never shut down


def test_zero_gpus_yields_nothing_but_shuts_down() -> None:
    nvml = FakeNVML([])
    assert GpuSource(nvml=nvml).collect(NOW) == []
    assert (nvml.inits, nvml.shutdowns) == (1, 1)

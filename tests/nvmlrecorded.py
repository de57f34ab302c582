"""Recorded NVML answers for tests, served through an object with pynvml's surface.

The only stand-in in the GPU tests: CI machines have no NVIDIA GPU. ``RecordedNVML`` has pynvml's
function names, constants and exception classes (the real ones, imported from ``pynvml``), and
answers from ``H100`` / ``A100_MIG`` below — values as NVML returns them (bytes, milliwatts, MHz,
whole-percent utilisation, throttle bitmasks), written down from an H100 SXM5 80GB (driver
550.54.15) and an A100-SXM4-40GB in MIG mode. An ``int`` NVML error code in place of a value makes
the call raise that error, as the library does (3 = NOT_SUPPORTED, 4 = NO_PERMISSION).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
MIB = 1024 * 1024


class Err(int):
    """An NVML error code standing where a value would be (``Err(3)``: raise NOT_SUPPORTED)."""


@dataclass
class Rec:
    """One recorded device (or MIG device): NVML function name → answer (``Err`` raises)."""

    answers: dict[str, Any]
    mig: list[Rec | None] = field(default_factory=list)


H100 = Rec(
    {
        "nvmlDeviceGetUUID": "GPU-5f2c1e0a-7d1b-4c8e-9a0f-3b6e2d1c4a55",
        "nvmlDeviceGetName": b"NVIDIA H100 80GB HBM3",  # bytes: older bindings answer bytes
        "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=85520809984, used=2285895680, free=83234914304),
        "nvmlDeviceGetMigMode": [0, 0],
        "nvmlDeviceGetUtilizationRates": SimpleNamespace(gpu=37, memory=12),
        "nvmlDeviceGetTemperature": 41,
        "nvmlDeviceGetTemperatureThreshold": 87,
        "nvmlDeviceGetPowerUsage": 213467,  # mW
        "nvmlDeviceGetEnforcedPowerLimit": 700000,  # mW
        "nvmlDeviceGetClockInfo": {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619},
        "nvmlDeviceGetMaxClockInfo": {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619},
        "nvmlDeviceGetCurrentClocksEventReasons": 0x0,
        "nvmlDeviceGetTotalEccErrors": {("c", "v"): 0, ("u", "v"): 0, ("c", "a"): 3, ("u", "a"): 0},
        "nvmlDeviceGetRetiredPages": Err(NOT_SUPPORTED),  # Hopper remaps rows instead
        "nvmlDeviceGetRemappedRows": (0, 0, 0, 0),
        "nvmlDeviceGetComputeRunningProcesses": [SimpleNamespace(pid=4242, usedGpuMemory=1610612736)],
        "nvmlDeviceGetGraphicsRunningProcesses": [],
    }
)

#: Idle in MIG mode and hot: utilisation not supported, thermal throttling, power reading refused.
A100_MIG = Rec(
    {
        "nvmlDeviceGetUUID": "GPU-a1b2c3d4-0000-1111-2222-333344445555",
        "nvmlDeviceGetName": "NVIDIA A100-SXM4-40GB",
        "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=42949672960, used=10737418240, free=32212254720),
        "nvmlDeviceGetMigMode": [1, 1],
        "nvmlDeviceGetUtilizationRates": Err(NOT_SUPPORTED),
        "nvmlDeviceGetTemperature": 86,
        "nvmlDeviceGetTemperatureThreshold": 88,
        "nvmlDeviceGetPowerUsage": Err(NO_PERMISSION),
        "nvmlDeviceGetEnforcedPowerLimit": 400000,
        "nvmlDeviceGetClockInfo": {pynvml.NVML_CLOCK_SM: 1095, pynvml.NVML_CLOCK_MEM: 1215},
        "nvmlDeviceGetMaxClockInfo": {pynvml.NVML_CLOCK_SM: 1410, pynvml.NVML_CLOCK_MEM: 1215},
        "nvmlDeviceGetCurrentClocksEventReasons": 0x20 | 0x40 | 0x4,  # sw+hw thermal, sw power cap
        "nvmlDeviceGetTotalEccErrors": {("c", "v"): 12, ("u", "v"): 1, ("c", "a"): 40, ("u", "a"): 1},
        "nvmlDeviceGetRetiredPages": {0: [0x1A2B000], 1: [0x3C4D000, 0x3C4E000]},
        "nvmlDeviceGetRemappedRows": (2, 1, 1, 0),
        "nvmlDeviceGetMaxMigDeviceCount": 7,
        # In MIG mode the driver hides per-process memory: NVML's "not available" (2^64 − 1).
        "nvmlDeviceGetComputeRunningProcesses": [SimpleNamespace(pid=777, usedGpuMemory=2**64 - 1)],
        "nvmlDeviceGetGraphicsRunningProcesses": Err(NOT_SUPPORTED),
    },
    mig=[
        Rec(
            {
                "nvmlDeviceGetUUID": "MIG-11111111-2222-3333-4444-555555555555",
                "nvmlDeviceGetName": "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
                "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=20937965568, used=10737418240, free=10200547328),
                "nvmlDeviceGetGpuInstanceId": 1,
                "nvmlDeviceGetComputeInstanceId": 0,
            }
        ),
        None,  # an empty slot: NVML answers NOT_FOUND
        Rec(
            {
                "nvmlDeviceGetUUID": "MIG-66666666-7777-8888-9999-000000000000",
                "nvmlDeviceGetName": "NVIDIA A100-SXM4-40GB MIG 2g.10gb",
                "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=10468982784, used=0, free=10468982784),
                "nvmlDeviceGetGpuInstanceId": 5,
                "nvmlDeviceGetComputeInstanceId": 0,
            }
        ),
    ],
)

_ECC_KIND = {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "c", pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "u"}
_ECC_COUNTER = {pynvml.NVML_VOLATILE_ECC: "v", pynvml.NVML_AGGREGATE_ECC: "a"}


class RecordedNVML:
    """pynvml's surface over recorded devices. ``init_error``: the code ``nvmlInit`` raises."""

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_MEMORY_ERROR_TYPE_CORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC
    NVML_AGGREGATE_ECC = pynvml.NVML_AGGREGATE_ECC
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = (
        pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
    )
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE

    def __init__(self, devices: list[Rec], *, init_error: int | None = None, driver: str = "550.54.15") -> None:
        self.devices = devices
        self.init_error = init_error
        self.driver = driver
        self.inits = self.shutdowns = 0

    def _ans(self, h: Rec, fn: str) -> Any:
        v = h.answers.get(fn, Err(NOT_SUPPORTED))
        if isinstance(v, Err):
            raise pynvml.NVMLError(int(v))
        return v

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Rec:
        return self.devices[i]

    def nvmlDeviceGetUUID(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetUUID")

    def nvmlDeviceGetName(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetName")

    def nvmlDeviceGetMemoryInfo(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetMemoryInfo")

    def nvmlDeviceGetMigMode(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetMigMode")

    def nvmlDeviceGetUtilizationRates(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetUtilizationRates")

    def nvmlDeviceGetTemperature(self, h: Rec, sensor: int) -> Any:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._ans(h, "nvmlDeviceGetTemperature")

    def nvmlDeviceGetTemperatureThreshold(self, h: Rec, which: int) -> Any:
        assert which == pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        return self._ans(h, "nvmlDeviceGetTemperatureThreshold")

    def nvmlDeviceGetPowerUsage(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetPowerUsage")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetEnforcedPowerLimit")

    def nvmlDeviceGetClockInfo(self, h: Rec, clock: int) -> Any:
        return self._ans(h, "nvmlDeviceGetClockInfo")[clock]

    def nvmlDeviceGetMaxClockInfo(self, h: Rec, clock: int) -> Any:
        return self._ans(h, "nvmlDeviceGetMaxClockInfo")[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetCurrentClocksEventReasons")

    def nvmlDeviceGetTotalEccErrors(self, h: Rec, kind: int, counter: int) -> Any:
        return self._ans(h, "nvmlDeviceGetTotalEccErrors")[_ECC_KIND[kind], _ECC_COUNTER[counter]]

    def nvmlDeviceGetRetiredPages(self, h: Rec, cause: int) -> Any:
        return self._ans(h, "nvmlDeviceGetRetiredPages")[cause]

    def nvmlDeviceGetRemappedRows(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetRemappedRows")

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetMaxMigDeviceCount")

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Rec, i: int) -> Rec:
        got = h.mig[i] if i < len(h.mig) else None
        if got is None:
            raise pynvml.NVMLError(NOT_FOUND)
        return got

    def nvmlDeviceGetGpuInstanceId(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetGpuInstanceId")

    def nvmlDeviceGetComputeInstanceId(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetComputeInstanceId")

    def nvmlDeviceGetComputeRunningProcesses(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetComputeRunningProcesses")

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: Rec) -> Any:
        return self._ans(h, "nvmlDeviceGetGraphicsRunningProcesses")

"""NVIDIA GPU metrics through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Per GPU (labels ``gpu`` index, ``uuid``, ``name``): utilisation, memory, temperature, power,
clocks, volatile ECC error counts, and the memory of each running process
(``gpu_process_memory_bytes{gpu, pid}``).

Why every query after the first few is optional: consumer cards, MIG slices and virtual GPUs each
lack different fields (``NVMLError_NotSupported``); one unsupported field must not hide the rest.
Why no driver is not an error: most machines that run cortex-perf have no NVIDIA GPU, so the source
yields nothing and says so once per process at INFO.

The NVML module is injectable: tests pass an object with the same functions and constants.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tasks.config.settings import GpuSourceSettings
from tasks.lake.schema import Sample, now_utc
from tasks.sources.base import Source, log_once, source_logger

__all__ = ["GpuSource"]

#: Set once the "no NVIDIA driver" notice has been logged in this process.
_no_driver_logged = False
_flag_lock = threading.Lock()


def _text(v: object) -> str:
    """NVML returns ``bytes`` in older bindings and ``str`` in newer ones."""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class GpuSource(Source):
    """Reads every NVIDIA GPU once per ``collect``; yields ``[]`` where there is no driver."""

    def __init__(self, *, name: str = "gpu", nvml: Any | None = None, process_memory: bool = True) -> None:
        self.name = name
        self._nvml = nvml
        self.process_memory = process_memory
        self._log = source_logger(name)

    @classmethod
    def from_settings(cls, cfg: GpuSourceSettings) -> GpuSource:
        return cls()

    def _module(self) -> Any:
        if self._nvml is None:
            # lazy: NVML is optional at run time (no driver on most hosts: nvmlInit fails) and the
            # module is needed only when the GPU source is enabled and no NVML was injected.
            import pynvml

            self._nvml = pynvml
        return self._nvml

    def collect(self, now: datetime | None = None) -> list[Sample]:
        global _no_driver_logged
        now = now or now_utc()
        nvml = self._module()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            with _flag_lock:
                first = not _no_driver_logged
                _no_driver_logged = True
            if first:
                self._log.info("no NVIDIA driver/NVML on this machine (%s): GPU metrics skipped", exc)
            return []
        try:
            out: list[Sample] = []
            for i in range(nvml.nvmlDeviceGetCount()):
                out.extend(self._device(nvml, i, now))
            return out
        finally:
            with contextlib.suppress(nvml.NVMLError):  # a failed shutdown changes nothing we return
                nvml.nvmlShutdown()

    def _device(self, nvml: Any, index: int, now: datetime) -> list[Sample]:
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        base = {"gpu": str(index)}
        uuid = self._opt(nvml, "uuid", nvml.nvmlDeviceGetUUID, h)
        model = self._opt(nvml, "name", nvml.nvmlDeviceGetName, h)
        if uuid is not None:
            base["uuid"] = _text(uuid)
        if model is not None:
            base["name"] = _text(model)
        out: list[Sample] = []

        def add(metric: str, value: float, **extra: str) -> None:
            out.append(Sample(metric, float(value), now, {**base, **extra}))

        util = self._opt(nvml, "utilization", nvml.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            add("gpu_utilization_ratio", util.gpu / 100.0)
            # NVML's "memory" utilisation: share of time the memory controller was busy.
            add("gpu_memory_copy_utilization_ratio", util.memory / 100.0)
        mem = self._opt(nvml, "memory", nvml.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            add("gpu_memory_used_bytes", mem.used)
            add("gpu_memory_total_bytes", mem.total)
            add("gpu_memory_free_bytes", mem.free)
            if mem.total > 0:
                add("gpu_memory_used_ratio", mem.used / mem.total)
        temp = self._opt(nvml, "temperature", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
        if temp is not None:
            add("gpu_temperature_celsius", temp)
        power = self._opt(nvml, "power", nvml.nvmlDeviceGetPowerUsage, h)
        if power is not None:
            add("gpu_power_watts", power / 1000.0)  # NVML reports milliwatts
        limit = self._opt(nvml, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit, h)
        if limit is not None:
            add("gpu_power_limit_watts", limit / 1000.0)
        for metric, clock in (("gpu_sm_clock_hertz", "NVML_CLOCK_SM"), ("gpu_memory_clock_hertz", "NVML_CLOCK_MEM")):
            mhz = self._opt(nvml, metric, nvml.nvmlDeviceGetClockInfo, h, getattr(nvml, clock))
            if mhz is not None:
                add(metric, mhz * 1e6)
        for metric, kind in (
            ("gpu_ecc_corrected_errors_total", "NVML_MEMORY_ERROR_TYPE_CORRECTED"),
            ("gpu_ecc_uncorrected_errors_total", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED"),
        ):
            n = self._opt(
                nvml, metric, nvml.nvmlDeviceGetTotalEccErrors, h, getattr(nvml, kind), nvml.NVML_VOLATILE_ECC
            )
            if n is not None:
                add(metric, n)
        if self.process_memory:
            out.extend(self._processes(nvml, h, index, now))
        return out

    def _processes(self, nvml: Any, h: Any, index: int, now: datetime) -> list[Sample]:
        procs: dict[int, float] = {}
        seen_any = False
        for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(nvml, getter, None)
            if fn is None:
                continue
            got = self._opt(nvml, getter, fn, h)
            if got is None:
                continue
            seen_any = True
            for p in got:
                used = getattr(p, "usedGpuMemory", None)
                # None (or NVML's "not available" sentinel, above 2**63) when the driver hides it.
                if used is None or used >= 2**63:
                    used = 0
                procs[int(p.pid)] = max(procs.get(int(p.pid), 0.0), float(used))
        if not seen_any:
            return []
        out = [
            Sample("gpu_process_memory_bytes", mem, now, {"gpu": str(index), "pid": str(pid)})
            for pid, mem in sorted(procs.items())
        ]
        out.append(Sample("gpu_processes", float(len(procs)), now, {"gpu": str(index)}))
        return out

    def _opt(self, nvml: Any, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or ``None`` when this GPU cannot answer (unsupported, no permission, ...)."""
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            if _is_not_supported(nvml, exc):
                self._log.debug("GPU field %s not supported: %s", what, exc)
            else:  # unexpected (no permission, GPU lost): worth one warning, not one per tick
                log_once(self._log, f"{self.name}:{what}", logging.WARNING, "GPU field %s failed: %s", what, exc)
            return None


def _is_not_supported(nvml: Any, exc: BaseException) -> bool:
    code = getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3)
    return getattr(exc, "value", None) == code

"""Fill the device model from NVML (``nvidia-ml-py``, imported as ``pynvml``) on this machine.

Why every query is optional: consumer cards, MIG slices and virtual GPUs each lack different
fields (``NVMLError_NotSupported`` means "n/a", not a failure); one missing field must not hide the
rest. Other per-field errors (no permission, a GPU fallen off the bus) also leave the field None,
with a note on the device saying which and why, so a person can tell "n/a" from "could not read".

Why no driver is not an error: most machines running cortex-perf have no NVIDIA GPU. ``nvmlInit``
then raises (``NVMLError_LibraryNotFound`` without the library, ``DriverNotLoaded`` with it but no
kernel module) and the inventory is empty with a status line saying so.

The NVML module is injectable (``nvml=``): tests pass an object with pynvml's functions, constants
and exception classes, answering recorded values. (``tasks.sources.gpu`` has its own, smaller NVML
reader for the lake's samples; sources is another domain, so the two do not share code.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pynvml

from tasks.gpu.model import Device, GpuInventory, GpuProcess, MigInstance, decode_throttle_reasons
from tasks.lake.schema import now_utc

__all__ = ["NVML_UNAVAILABLE", "read_nvml"]

#: NVML's "value not available" for 64-bit counters such as a process's used memory.
NVML_UNAVAILABLE = 2**63


def _text(v: object) -> str:
    """NVML returns ``bytes`` in older bindings and ``str`` in newer ones."""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class _Reader:
    """One pass over NVML's devices; collects per-device notes for fields that failed."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.notes: list[str] = []

    def opt(self, what: str, fn: Callable[..., Any] | None, *args: Any) -> Any:
        """``fn(*args)``, or None when this device cannot answer (noted unless merely unsupported)."""
        if fn is None:  # an older binding without this function
            return None
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            if getattr(exc, "value", None) != self.nvml.NVML_ERROR_NOT_SUPPORTED:
                self.notes.append(f"{what}: {exc}")
            return None

    def fn(self, name: str) -> Callable[..., Any] | None:
        return getattr(self.nvml, name, None)

    def device(self, index: int) -> Device:
        nv = self.nvml
        self.notes = []
        h = nv.nvmlDeviceGetHandleByIndex(index)
        uuid = self.opt("uuid", nv.nvmlDeviceGetUUID, h)
        name = self.opt("name", nv.nvmlDeviceGetName, h)
        mem = self.opt("memory", nv.nvmlDeviceGetMemoryInfo, h)
        mig = self.opt("mig mode", self.fn("nvmlDeviceGetMigMode"), h)
        mig_enabled = None if mig is None else bool(mig[0] == getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1))
        util = self.opt("utilization", nv.nvmlDeviceGetUtilizationRates, h)
        if util is None and mig_enabled:
            self.notes.append("utilization: NVML reports none for MIG devices (DCGM's profiling metrics do)")
        temp = self.opt("temperature", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        slowdown = self.opt(
            "slowdown temperature",
            self.fn("nvmlDeviceGetTemperatureThreshold"),
            h,
            getattr(nv, "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", 1),
        )
        power = self.opt("power", nv.nvmlDeviceGetPowerUsage, h)
        limit = self.opt("power limit", nv.nvmlDeviceGetEnforcedPowerLimit, h)
        sm = self.opt("sm clock", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
        memclk = self.opt("memory clock", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM)
        max_sm = self.opt("max sm clock", self.fn("nvmlDeviceGetMaxClockInfo"), h, nv.NVML_CLOCK_SM)
        reasons_fn = self.fn("nvmlDeviceGetCurrentClocksEventReasons") or self.fn(
            "nvmlDeviceGetCurrentClocksThrottleReasons"
        )
        reasons = self.opt("throttle reasons", reasons_fn, h)
        ecc = {
            (kind, counter): self.opt(
                f"ecc {kind} {counter}",
                self.fn("nvmlDeviceGetTotalEccErrors"),
                h,
                getattr(nv, f"NVML_MEMORY_ERROR_TYPE_{kind.upper()}"),
                getattr(nv, f"NVML_{counter.upper()}_ECC"),
            )
            for kind in ("corrected", "uncorrected")
            for counter in ("volatile", "aggregate")
        }
        retired = self._retired_pages(h)
        remap = self.opt("remapped rows", self.fn("nvmlDeviceGetRemappedRows"), h)
        return Device(
            index=index,
            uuid=_text(uuid) if uuid is not None else None,
            name=_text(name) if name is not None else None,
            memory_total_bytes=int(mem.total) if mem is not None else None,
            memory_used_bytes=int(mem.used) if mem is not None else None,
            memory_free_bytes=int(mem.free) if mem is not None else None,
            utilization_ratio=util.gpu / 100.0 if util is not None else None,
            temperature_c=float(temp) if temp is not None else None,
            temperature_slowdown_c=float(slowdown) if slowdown is not None else None,
            power_w=power / 1000.0 if power is not None else None,  # NVML reports milliwatts
            power_limit_w=limit / 1000.0 if limit is not None else None,
            sm_clock_mhz=float(sm) if sm is not None else None,
            memory_clock_mhz=float(memclk) if memclk is not None else None,
            max_sm_clock_mhz=float(max_sm) if max_sm is not None else None,
            throttle_reasons=decode_throttle_reasons(int(reasons)) if reasons is not None else None,
            ecc_volatile_corrected=_int(ecc["corrected", "volatile"]),
            ecc_volatile_uncorrected=_int(ecc["uncorrected", "volatile"]),
            ecc_aggregate_corrected=_int(ecc["corrected", "aggregate"]),
            ecc_aggregate_uncorrected=_int(ecc["uncorrected", "aggregate"]),
            retired_pages=retired,
            remapped_rows_correctable=int(remap[0]) if remap is not None else None,
            remapped_rows_uncorrectable=int(remap[1]) if remap is not None else None,
            remap_pending=bool(remap[2]) if remap is not None else None,
            remap_failure=bool(remap[3]) if remap is not None else None,
            mig_enabled=mig_enabled,
            mig_instances=self._mig_instances(h) if mig_enabled else (),
            processes=self._processes(h),
            notes=tuple(self.notes),
        )

    def _retired_pages(self, h: Any) -> int | None:
        """Pages retired for either cause (pre-Ampere; Ampere and later remap rows instead: n/a)."""
        fn = self.fn("nvmlDeviceGetRetiredPages")
        total: int | None = None
        for cause in ("MULTIPLE_SINGLE_BIT_ECC_ERRORS", "DOUBLE_BIT_ECC_ERROR"):
            const = getattr(self.nvml, f"NVML_PAGE_RETIREMENT_CAUSE_{cause}", None)
            pages = self.opt(f"retired pages ({cause.lower()})", fn, h, const) if const is not None else None
            if pages is not None:
                total = (total or 0) + len(pages)
        return total

    def _mig_instances(self, h: Any) -> tuple[MigInstance, ...]:
        nv = self.nvml
        count = self.opt("mig device count", self.fn("nvmlDeviceGetMaxMigDeviceCount"), h)
        out: list[MigInstance] = []
        for i in range(int(count or 0)):
            try:  # an empty slot answers NOT_FOUND: not a failure, just no instance there
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, i)
            except nv.NVMLError:
                continue
            uuid = self.opt("mig uuid", nv.nvmlDeviceGetUUID, mh)
            name = self.opt("mig name", nv.nvmlDeviceGetName, mh)
            mem = self.opt("mig memory", nv.nvmlDeviceGetMemoryInfo, mh)
            out.append(
                MigInstance(
                    index=i,
                    uuid=_text(uuid) if uuid is not None else None,
                    name=_text(name) if name is not None else None,
                    gpu_instance_id=_int(self.opt("gpu instance id", self.fn("nvmlDeviceGetGpuInstanceId"), mh)),
                    compute_instance_id=_int(
                        self.opt("compute instance id", self.fn("nvmlDeviceGetComputeInstanceId"), mh)
                    ),
                    memory_total_bytes=int(mem.total) if mem is not None else None,
                    memory_used_bytes=int(mem.used) if mem is not None else None,
                )
            )
        return tuple(out)

    def _processes(self, h: Any) -> tuple[GpuProcess, ...] | None:
        procs: dict[int, GpuProcess] = {}
        seen = False
        for kind, getter in (
            ("compute", "nvmlDeviceGetComputeRunningProcesses"),
            ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
        ):
            got = self.opt(f"{kind} processes", self.fn(getter), h)
            if got is None:
                continue
            seen = True
            for p in got:
                used = getattr(p, "usedGpuMemory", None)
                if used is not None and used >= NVML_UNAVAILABLE:  # the driver hides it (e.g. in a container)
                    used = None
                pid = int(p.pid)
                if pid not in procs:  # a process with both contexts is listed once, as compute
                    procs[pid] = GpuProcess(pid, int(used) if used is not None else None, kind)  # type: ignore[arg-type]
        return tuple(sorted(procs.values(), key=lambda p: p.pid)) if seen else None


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def read_nvml(nvml: Any = pynvml, *, now: datetime | None = None) -> GpuInventory:
    """Every GPU NVML sees on this machine; without a driver an empty inventory saying so."""
    now = now or now_utc()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return GpuInventory("none", f"no NVIDIA driver found (NVML: {exc})", now)
    try:
        driver = None
        with contextlib.suppress(nvml.NVMLError):
            driver = _text(nvml.nvmlSystemGetDriverVersion())
        count = int(nvml.nvmlDeviceGetCount())
        reader = _Reader(nvml)
        devices = tuple(reader.device(i) for i in range(count))
    except nvml.NVMLError as exc:
        return GpuInventory("none", f"NVML answered but could not list GPUs ({exc})", now, driver_version=None)
    finally:
        with contextlib.suppress(nvml.NVMLError):  # a failed shutdown changes nothing we return
            nvml.nvmlShutdown()
    drv = f", driver {driver}" if driver else ""
    status = f"NVML: {count} GPU(s){drv}" if count else f"NVML: no GPU visible{drv}"
    return GpuInventory("nvml", status, now, devices, driver_version=driver)

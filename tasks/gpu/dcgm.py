"""Fill the device model from a DCGM exporter's ``/metrics`` (fleets where NVML is not local).

dcgm-exporter publishes one gauge per field (``DCGM_FI_DEV_GPU_UTIL``, ``DCGM_FI_DEV_FB_USED``, ...)
with labels ``gpu`` (index), ``UUID``, ``modelName``, ``Hostname`` (and ``GPU_I_ID``/
``GPU_I_PROFILE`` on MIG instances, ``pod``/``namespace`` where Kubernetes mapping is on). Units
are DCGM's: memory in MiB, power in W, clocks in MHz, utilisation in %.

Why the sentinel filter: DCGM encodes "blank / not found / not supported / no permission" as
values at the top of each type's range (int64 from 2^63 − 16, int32 from 0x7ffffff0, float64 from
2^47) and some exporter versions print them as if they were readings; a GPU at 9.2e18 W is a field
the device does not have, so it becomes None ("n/a"), never a number.

The exposition text is parsed with ``prometheus_client``'s parser (a dependency already);
``tasks.sources.prometheus`` does the same for the lake, but sources is another domain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tasks.gpu.model import Device, GpuInventory, MigInstance, decode_throttle_reasons
from tasks.lake.schema import now_utc
from tasks.redact import redact_url

__all__ = ["DcgmError", "is_sentinel", "parse_dcgm", "read_dcgm"]

MIB = 1024 * 1024
#: Largest /metrics body read (a 8-GPU node with every field is ~200 KiB; a fleet's federated page more).
MAX_BODY_BYTES = 32 * 1024 * 1024

_INT64_BLANK = 2**63 - 16
_INT32_BLANK = 0x7FFFFFF0
_FP64_BLANK = 2.0**47


class DcgmError(OSError):
    """The exporter could not be read (down, not a DCGM page, too large): one line, URL redacted."""


def is_sentinel(v: float) -> bool:
    """True for DCGM's blank/not-found/not-supported/not-permissioned encodings (and NaN/±Inf)."""
    if not math.isfinite(v):
        return True
    return v >= _INT64_BLANK or _INT32_BLANK <= v <= 0x7FFFFFFF or _FP64_BLANK <= v <= _FP64_BLANK + 16


@dataclass
class _Acc:
    host: str | None
    index: int
    uuid: str | None = None
    name: str | None = None
    fields: dict[str, float] = field(default_factory=dict)
    mig: dict[str, dict[str, float | str]] = field(default_factory=dict)


#: DCGM field → where it goes. Everything else on the page is ignored.
_WANTED = frozenset(
    {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_FB_RESERVED",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_SLOWDOWN_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_MAX_SM_CLOCK",
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "DCGM_FI_DEV_RETIRED_SBE",
        "DCGM_FI_DEV_RETIRED_DBE",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    }
)


def parse_dcgm(text: str, *, now: datetime | None = None, source_name: str = "DCGM") -> GpuInventory:
    """The devices on a dcgm-exporter page. Raises ``DcgmError`` when the text is not exposition format."""
    now = now or now_utc()
    accs: dict[tuple[str | None, int], _Acc] = {}
    filtered = 0
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise DcgmError(f"{source_name}: not Prometheus exposition text ({' '.join(str(exc).split())[:200]})") from None
    for fam in families:
        for s in fam.samples:
            # the parser appends ``_total`` to a counter's samples (DCGM's ECC/retired counters)
            name = s.name[: -len("_total")] if s.name.endswith("_total") and s.name not in _WANTED else s.name
            if not name.startswith("DCGM_FI_"):
                continue
            labels: Mapping[str, str] = s.labels
            try:
                index = int(labels.get("gpu", ""))
            except ValueError:
                continue  # not a per-GPU series
            host = labels.get("Hostname") or None
            acc = accs.setdefault((host, index), _Acc(host, index))
            acc.uuid = acc.uuid or labels.get("UUID") or None
            acc.name = acc.name or labels.get("modelName") or None
            if name not in _WANTED:
                continue  # a field we do not read: it still lists the GPU it names
            if is_sentinel(float(s.value)):
                filtered += 1
                continue
            gi = labels.get("GPU_I_ID")
            if gi:
                inst = acc.mig.setdefault(gi, {"profile": labels.get("GPU_I_PROFILE", "")})
                inst[name] = float(s.value)
            else:
                acc.fields[name] = float(s.value)
    devices = tuple(_device(a) for a in sorted(accs.values(), key=lambda a: (a.host or "", a.index)))
    hosts = len({d.host for d in devices})
    status = f"{source_name}: {len(devices)} GPU(s) on {hosts} host(s)"
    if filtered:
        status += f", {filtered} not-supported reading(s) dropped"
    return GpuInventory("dcgm", status, now, devices)


def _device(a: _Acc) -> Device:
    f = a.fields
    used, free, reserved = f.get("DCGM_FI_DEV_FB_USED"), f.get("DCGM_FI_DEV_FB_FREE"), f.get("DCGM_FI_DEV_FB_RESERVED")
    total = None if used is None or free is None else used + free + (reserved or 0.0)
    notes: list[str] = []
    mig = tuple(
        MigInstance(
            index=i,
            name=str(v.get("profile")) or None,
            gpu_instance_id=int(gi) if gi.isdigit() else None,
            memory_used_bytes=_mib(v.get("DCGM_FI_DEV_FB_USED")),
            memory_total_bytes=_mib(_sum(v.get("DCGM_FI_DEV_FB_USED"), v.get("DCGM_FI_DEV_FB_FREE"))),
            activity_ratio=_float(v.get("DCGM_FI_PROF_GR_ENGINE_ACTIVE")),
        )
        for i, (gi, v) in enumerate(sorted(a.mig.items(), key=lambda kv: kv[0]))
    )
    util = f.get("DCGM_FI_DEV_GPU_UTIL")
    if mig and util is None:
        notes.append("utilization: none for MIG-enabled GPUs (see each instance's engine activity)")
    limit = f.get("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", f.get("DCGM_FI_DEV_POWER_MGMT_LIMIT"))
    reasons = f.get("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")
    retired = _sum(f.get("DCGM_FI_DEV_RETIRED_SBE"), f.get("DCGM_FI_DEV_RETIRED_DBE"))
    return Device(
        index=a.index,
        uuid=a.uuid,
        name=a.name,
        host=a.host,
        memory_total_bytes=_mib(total),
        memory_used_bytes=_mib(used),
        memory_free_bytes=_mib(free),
        utilization_ratio=util / 100.0 if util is not None else None,
        temperature_c=f.get("DCGM_FI_DEV_GPU_TEMP"),
        temperature_slowdown_c=f.get("DCGM_FI_DEV_SLOWDOWN_TEMP"),
        power_w=f.get("DCGM_FI_DEV_POWER_USAGE"),
        power_limit_w=limit,
        sm_clock_mhz=f.get("DCGM_FI_DEV_SM_CLOCK"),
        memory_clock_mhz=f.get("DCGM_FI_DEV_MEM_CLOCK"),
        max_sm_clock_mhz=f.get("DCGM_FI_DEV_MAX_SM_CLOCK"),
        throttle_reasons=decode_throttle_reasons(int(reasons)) if reasons is not None else None,
        ecc_volatile_corrected=_i(f.get("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL")),
        ecc_volatile_uncorrected=_i(f.get("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL")),
        ecc_aggregate_corrected=_i(f.get("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL")),
        ecc_aggregate_uncorrected=_i(f.get("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL")),
        retired_pages=_i(retired),
        remapped_rows_correctable=_i(f.get("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS")),
        remapped_rows_uncorrectable=_i(f.get("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS")),
        remap_pending=_b(f.get("DCGM_FI_DEV_ROW_REMAP_PENDING")),
        remap_failure=_b(f.get("DCGM_FI_DEV_ROW_REMAP_FAILURE")),
        mig_enabled=True if mig else None,
        mig_instances=mig,
        processes=None,  # DCGM's exporter lists pods (labels), not processes
        notes=tuple(notes),
    )


def _sum(a: float | str | None, b: float | str | None) -> float | None:
    if a is None and b is None:
        return None
    return float(a or 0.0) + float(b or 0.0)


def _float(v: float | str | None) -> float | None:
    return None if v is None else float(v)


def _mib(v: float | str | None) -> int | None:
    return None if v is None else round(float(v) * MIB)


def _i(v: float | None) -> int | None:
    return None if v is None else int(v)


def _b(v: float | None) -> bool | None:
    return None if v is None else bool(v)


def read_dcgm(
    url: str, *, timeout_s: float = 5.0, client: httpx.Client | None = None, now: datetime | None = None
) -> GpuInventory:
    """Scrape ``url`` once and parse it. Raises ``DcgmError`` (URL's password masked) when it fails."""
    safe = redact_url(url)
    try:
        if client is not None:
            body, code = _fetch(client, url, timeout_s)
        else:
            with httpx.Client() as c:
                body, code = _fetch(c, url, timeout_s)
    except httpx.HTTPError as exc:
        why = f"{type(exc).__name__}: {redact_url(str(exc))}"
        raise DcgmError(f"DCGM exporter {safe} is not reachable: {why}") from None
    if code != 200:
        raise DcgmError(f"DCGM exporter {safe} answered HTTP {code}")
    if body is None:
        raise DcgmError(f"DCGM exporter {safe}: page over {MAX_BODY_BYTES:,} bytes")
    return parse_dcgm(body.decode("utf-8", errors="replace"), now=now, source_name=f"DCGM {safe}")


def _fetch(client: httpx.Client, url: str, timeout_s: float) -> tuple[bytes | None, int]:
    """The body (None when over ``MAX_BODY_BYTES``: read no further) and the status code."""
    with client.stream("GET", url, timeout=timeout_s) as resp:
        if resp.status_code != 200:
            return b"", resp.status_code
        buf = bytearray()
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > MAX_BODY_BYTES:
                return None, resp.status_code
        return bytes(buf), resp.status_code

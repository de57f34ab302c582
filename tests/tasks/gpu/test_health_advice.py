"""Health findings and recommendations on worked examples (numbers checked by hand)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks.gpu.advice import (
    ReservationUse,
    UsagePoint,
    advise,
    consolidation,
    idle_holding_usage,
    over_requested,
    summarize_idle,
)
from tasks.gpu.health import findings, health_word
from tasks.gpu.model import Device, GpuInventory, GpuProcess

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
GIB = 2**30


def inv(*devices: Device) -> GpuInventory:
    return GpuInventory("nvml", "test", NOW, devices)


def dev(i: int = 0, **kw: object) -> Device:
    base: dict[str, object] = {"memory_total_bytes": 80 * GIB, "memory_used_bytes": 0, "utilization_ratio": 0.5,
                               "temperature_c": 50.0, "temperature_slowdown_c": 87.0, "power_w": 300.0,
                               "power_limit_w": 700.0}  # fmt: skip
    base.update(kw)
    return Device(index=i, **base)  # type: ignore[arg-type]


def kinds(found: list) -> list[str]:
    return [f.kind for f in found]


def test_a_healthy_gpu_has_no_findings() -> None:
    assert findings(inv(dev())) == []
    assert health_word([]) == "ok"


def test_thermal_throttle_beats_near_thermal_and_power_cap_beats_near_power() -> None:
    d = dev(temperature_c=86.0, throttle_reasons=("sw_thermal", "sw_power_cap"), power_w=699.0)
    found = findings(inv(d))
    assert kinds(found) == ["thermal-throttle", "power-throttle"]  # critical first
    assert found[0].message == "gpu0 clocks held down for heat (sw_thermal) at 86 °C"
    assert health_word(found) == "critical: power-throttle, thermal-throttle"


def test_near_limits_use_the_drivers_slowdown_point_or_85() -> None:
    assert kinds(findings(inv(dev(temperature_c=82.0)))) == ["near-thermal-limit"]  # 87 − 5
    assert kinds(findings(inv(dev(temperature_c=81.9)))) == []
    assert kinds(findings(inv(dev(temperature_c=80.0, temperature_slowdown_c=None)))) == ["near-thermal-limit"]
    found = findings(inv(dev(power_w=665.0)))  # 95 % of 700 W
    assert kinds(found) == ["near-power-limit"] and found[0].message == "gpu0 draws 665 W, 95% of its 700 W limit"
    assert kinds(findings(inv(dev(power_w=664.0)))) == []


def test_ecc_and_row_remaps() -> None:
    found = findings(
        inv(dev(ecc_volatile_uncorrected=2, ecc_volatile_corrected=5, remap_pending=True, retired_pages=1))
    )
    assert kinds(found) == ["ecc-uncorrected", "row-remap-pending", "ecc-corrected", "retired-pages"]
    assert [f.severity for f in found] == ["critical", "warning", "info", "info"]
    assert kinds(findings(inv(dev(remap_failure=True, remap_pending=True)))) == ["row-remap-failed"]


def test_idle_gpu_holding_memory_names_the_processes() -> None:
    d = dev(utilization_ratio=0.0, memory_used_bytes=22 * GIB,
            processes=(GpuProcess(11, 20 * GIB), GpuProcess(12, 2 * GIB), GpuProcess(13, None)))  # fmt: skip
    (f,) = findings(inv(d))
    assert f.kind == "idle-holding-memory"
    assert f.message == "gpu0 idle (utilisation 0%) while holding 22.0 GiB; held by pid 11 (20.0 GiB), 12 (2.0 GiB)"
    assert f.numbers["pids"] == "11,12"
    # a bare context (< 1 GiB) is not "holding"; unknown utilisation (MIG) is never "idle"
    assert findings(inv(dev(utilization_ratio=0.0, memory_used_bytes=GIB // 2))) == []
    assert findings(inv(dev(utilization_ratio=None, memory_used_bytes=22 * GIB))) == []


def test_memory_pressure_at_95_percent() -> None:
    (f,) = findings(inv(dev(memory_used_bytes=76 * GIB)))
    assert f.kind == "memory-pressure" and f.message.startswith("gpu0 memory 95% used (76.0 GiB of 80.0 GiB)")
    assert findings(inv(dev(memory_used_bytes=75 * GIB))) == []


def test_idle_holding_over_time_weights_each_reading_by_its_gap() -> None:
    # readings at 0, 60, 120, 180 s, then a 1 h hole (counts 300 s), then one at 3780 s (weighs the median 60 s)
    pts = [UsagePoint(0, 0.0, 20 * GIB), UsagePoint(60, 0.0, 24 * GIB), UsagePoint(120, 0.3, 24 * GIB),
           UsagePoint(180, 0.0, 0.5 * GIB), UsagePoint(3780, 0.0, 10 * GIB)]  # fmt: skip
    h = idle_holding_usage("gpu0", pts)
    assert h.samples == 5 and h.idle_holding_samples == 3  # the 0.5 GiB one is not holding
    assert h.seconds == 60 + 60 + 60 + 300 + 60
    assert h.idle_holding_seconds == 60 + 60 + 60
    assert h.mean_held_bytes == pytest.approx((20 + 24 + 10) / 3 * GIB)
    assert h.mean_utilization == pytest.approx(0.3 * 60 / 540)
    s = summarize_idle([h, idle_holding_usage("gpu1", [UsagePoint(0, 0.9, 40 * GIB)])])
    assert s["samples"] == 6 and s["idle_holding_samples"] == 3
    assert s["idle_holding_sample_share"] == pytest.approx(0.5)
    assert s["gpu_hours"] == pytest.approx(600 / 3600)
    assert s["mean_held_gib"] == pytest.approx(18.0)


def test_advise_over_time_recommends_for_the_mostly_idle_gpu_only() -> None:
    idle = [UsagePoint(60 * i, 0.0 if i % 10 else 0.4, 22 * GIB) for i in range(60)]  # 90 % idle
    busy = [UsagePoint(60 * i, 0.6, 30 * GIB) for i in range(60)]
    found = advise(inv(dev(0), dev(1)), usage={"gpu0": idle, "gpu1": busy})
    idle_adv = [a for a in found if a.kind == "idle-holding-memory"]
    assert [a.target for a in idle_adv] == ["gpu0"]
    assert idle_adv[0].message == (
        "gpu0 sat idle 90% of 1.0 h while holding 22.0 GiB on average (mean utilisation 4.0%)"
    )
    (fleet,) = [a for a in found if a.kind == "fleet-idle-holding"]
    assert fleet.numbers["idle_holding_gpu_hours"] == pytest.approx(0.9)


def test_over_requested_is_the_queues_seam() -> None:
    (a,) = over_requested([ReservationUse("t1", 40 * GIB, 8 * GIB), ReservationUse("t2", 10 * GIB, 6 * GIB),
                           ReservationUse("t3", GIB, 0), ReservationUse("t4", 0, 0)])  # fmt: skip
    assert a.target == "t1" and a.numbers["suggested_bytes"] == 10 * GIB  # 8 GiB + 25 %
    assert a.message == "task t1 reserved 40.0 GiB per GPU and used at most 8.0 GiB (20%)"
    assert [x.kind for x in advise(inv(), reservations=[ReservationUse("t1", 40 * GIB, 8 * GIB)])] == ["over-requested"]


def test_consolidation_packs_light_work_per_host() -> None:
    devices = (
        dev(0, host="h1", utilization_ratio=0.1, memory_used_bytes=20 * GIB),
        dev(1, host="h1", utilization_ratio=0.2, memory_used_bytes=20 * GIB),
        dev(2, host="h1", utilization_ratio=0.3, memory_used_bytes=20 * GIB),
        dev(3, host="h1", utilization_ratio=0.9, memory_used_bytes=10 * GIB),  # too busy to share
        dev(4, host="h1", utilization_ratio=0.0, memory_used_bytes=0),  # already free
        dev(0, host="h2", utilization_ratio=0.5, memory_used_bytes=50 * GIB),
        dev(1, host="h2", utilization_ratio=0.5, memory_used_bytes=50 * GIB),  # 100 GiB > 72: no move
        dev(0, host="h3", utilization_ratio=0.1, memory_used_bytes=5 * GIB, mig_enabled=True),
    )
    (a,) = consolidation(inv(*devices))
    # 72 GiB per GPU (90 % of 80): 20+20+20 = 60 GiB and 0.6 utilisation fit on one; the busy one keeps its own
    assert a.target == "h1" and a.numbers == {"gpus_in_use": 4, "gpus_needed": 2, "gpus_freed": 2}
    # with a history, the mean utilisation decides: gpu2 of h1 at 0.7 on average no longer fits with the others
    (b,) = consolidation(inv(*devices), {"h1/gpu2": 0.7})
    assert b.numbers["gpus_freed"] == 1


def test_advise_without_history_turns_health_into_actions() -> None:
    found = advise(inv(dev(0, temperature_c=84.0), dev(1, utilization_ratio=0.0, memory_used_bytes=22 * GIB)))
    assert [(a.kind, a.target) for a in found] == [
        ("idle-holding-memory", "gpu1"),
        ("near-thermal-limit", "gpu0"),
        ("consolidation", "this host"),  # 0.5 utilisation + 22 GiB idle fit on one GPU
    ]
    assert all(a.action for a in found)

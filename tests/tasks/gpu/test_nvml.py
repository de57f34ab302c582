"""The NVML reader: the real pynvml on this machine (no driver), and the mapping of recorded answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pynvml
import pytest
from nvmlrecorded import A100_MIG, H100, NOT_SUPPORTED, RecordedNVML

from tasks.gpu.model import GpuProcess, decode_throttle_reasons
from tasks.gpu.nvml import read_nvml

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _driver_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver (benchmarks/gpu_nvml_check.py)")
def test_real_pynvml_without_a_driver_is_an_empty_inventory_with_a_status_line() -> None:
    inv = read_nvml(now=NOW)  # the real module: nvmlInit raises NVMLError_LibraryNotFound here
    assert inv.source == "none" and inv.devices == ()
    assert inv.status.startswith("no NVIDIA driver found (NVML: ")
    assert "Not Found" in inv.status or "not loaded" in inv.status.lower()


def test_driver_not_loaded_is_not_an_error() -> None:
    fake = RecordedNVML([H100], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    inv = read_nvml(fake, now=NOW)
    assert inv.devices == () and inv.status == "no NVIDIA driver found (NVML: Driver Not Loaded)"
    assert fake.shutdowns == 0  # nothing to shut down after a failed init


def test_h100_readings_mapped_with_units() -> None:
    fake = RecordedNVML([H100])
    inv = read_nvml(fake, now=NOW)
    assert (inv.source, inv.driver_version, inv.status) == ("nvml", "550.54.15", "NVML: 1 GPU(s), driver 550.54.15")
    assert fake.inits == fake.shutdowns == 1
    (d,) = inv.devices
    assert d.index == 0 and d.uuid == "GPU-5f2c1e0a-7d1b-4c8e-9a0f-3b6e2d1c4a55"
    assert d.name == "NVIDIA H100 80GB HBM3"  # bytes decoded
    assert (d.memory_total_bytes, d.memory_used_bytes, d.memory_free_bytes) == (85520809984, 2285895680, 83234914304)
    assert d.utilization_ratio == pytest.approx(0.37)
    assert d.temperature_c == 41 and d.temperature_slowdown_c == 87
    assert d.power_w == pytest.approx(213.467) and d.power_limit_w == 700.0  # mW → W
    assert (d.sm_clock_mhz, d.memory_clock_mhz, d.max_sm_clock_mhz) == (1980, 2619, 1980)
    assert d.throttle_reasons == ()
    assert (d.ecc_volatile_corrected, d.ecc_volatile_uncorrected) == (0, 0)
    assert (d.ecc_aggregate_corrected, d.ecc_aggregate_uncorrected) == (3, 0)
    assert d.retired_pages is None  # NotSupported on Hopper: n/a, not 0 and not a failure
    assert (d.remapped_rows_correctable, d.remapped_rows_uncorrectable, d.remap_pending, d.remap_failure) == (
        0, 0, False, False)  # fmt: skip
    assert d.mig_enabled is False and d.mig_instances == ()
    assert d.processes == (GpuProcess(4242, 1610612736, "compute"),)
    assert d.notes == ()  # NotSupported is never a note
    assert d.key == d.uuid and d.label == "gpu0"


def test_mig_device_utilisation_says_why_and_instances_listed() -> None:
    inv = read_nvml(RecordedNVML([H100, A100_MIG]), now=NOW)
    d = inv.devices[1]
    assert d.index == 1 and d.mig_enabled is True
    assert d.utilization_ratio is None
    assert any(n.startswith("utilization: NVML reports none for MIG devices") for n in d.notes)
    assert [(m.index, m.gpu_instance_id, m.name) for m in d.mig_instances] == [
        (0, 1, "NVIDIA A100-SXM4-40GB MIG 3g.20gb"),
        (2, 5, "NVIDIA A100-SXM4-40GB MIG 2g.10gb"),
    ]  # the empty slot (NOT_FOUND) skipped, slots past the recorded ones too
    assert d.mig_instances[0].memory_used_bytes == 10737418240
    # a refused field is None *with* a note (unlike NotSupported)
    assert d.power_w is None and d.power_limit_w == 400.0
    assert any(n.startswith("power: ") and "Permission" in n for n in d.notes)
    assert d.throttle_reasons == ("sw_power_cap", "sw_thermal", "hw_thermal")
    assert (d.ecc_volatile_corrected, d.ecc_volatile_uncorrected, d.ecc_aggregate_uncorrected) == (12, 1, 1)
    assert d.retired_pages == 3
    assert (d.remapped_rows_correctable, d.remapped_rows_uncorrectable, d.remap_pending) == (2, 1, True)
    # hidden per-process memory (2^64 − 1) is unknown, not 18 EB
    assert d.processes == (GpuProcess(777, None, "compute"),)


def test_an_older_binding_without_a_function_leaves_the_field_empty() -> None:
    class Older(RecordedNVML):
        def __getattribute__(self, name: str) -> object:
            if name in ("nvmlDeviceGetRemappedRows", "nvmlDeviceGetMaxClockInfo"):
                raise AttributeError(name)
            return super().__getattribute__(name)

    (d,) = read_nvml(Older([H100]), now=NOW).devices
    assert d.remapped_rows_correctable is None and d.max_sm_clock_mhz is None
    assert d.temperature_c == 41


def test_every_field_unsupported_still_lists_the_device() -> None:
    from nvmlrecorded import Err, Rec

    bare = Rec({"nvmlDeviceGetUUID": Err(NOT_SUPPORTED)})
    (d,) = read_nvml(RecordedNVML([bare]), now=NOW).devices
    assert d.index == 0 and d.uuid is None and d.memory_total_bytes is None and d.processes is None
    assert d.key == "local:0" and d.notes == ()


def test_no_gpu_behind_a_loaded_driver() -> None:
    inv = read_nvml(RecordedNVML([]), now=NOW)
    assert inv.source == "nvml" and inv.status == "NVML: no GPU visible, driver 550.54.15"


def test_throttle_bits_decoded_including_unknown_ones() -> None:
    assert decode_throttle_reasons(0) == ()
    assert decode_throttle_reasons(0x1 | 0x80) == ("gpu_idle", "hw_power_brake")
    assert decode_throttle_reasons(0x400 | 0x8) == ("hw_slowdown", "bit_0x400")

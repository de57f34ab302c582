"""The lake reader: the collector's own GPU samples (GpuSource over recorded NVML) read back as devices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nvmlrecorded import A100_MIG, H100, RecordedNVML

from tasks.gpu.history import read_history, usage_from_lake
from tasks.lake import Lake
from tasks.lake.schema import Sample
from tasks.sources import GpuSource

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_newest_samples_of_the_collector_become_devices(lake: Lake) -> None:
    src = GpuSource(nvml=RecordedNVML([H100, A100_MIG]))
    lake.write_samples(src.collect(T0))
    lake.write_samples(src.collect(T0 + timedelta(minutes=1)))
    inv = read_history(lake, at=T0 + timedelta(minutes=2))
    assert inv.source == "lake" and inv.status == "lake: 2 GPU(s) from samples, newest 2026-12-07 10:01:00 UTC"
    h, a = inv.devices
    assert (h.index, h.uuid, h.name, h.host) == (0, H100.answers["nvmlDeviceGetUUID"], "NVIDIA H100 80GB HBM3", None)
    assert h.memory_total_bytes == 85520809984 and h.memory_used_bytes == 2285895680
    assert h.utilization_ratio == pytest.approx(0.37)
    assert h.power_w == pytest.approx(213.467) and h.power_limit_w == 700
    assert h.sm_clock_mhz == pytest.approx(1980) and h.memory_clock_mhz == pytest.approx(2619)
    assert h.ecc_volatile_uncorrected == 0
    assert [(p.pid, p.used_memory_bytes) for p in h.processes or ()] == [(4242, 1610612736)]
    assert h.throttle_reasons is None and h.mig_enabled is None  # the samples do not carry them
    assert a.utilization_ratio is None and a.ecc_volatile_uncorrected == 1 and a.power_w is None


def test_samples_older_than_the_lookback_are_not_a_device(lake: Lake) -> None:
    lake.write_samples(GpuSource(nvml=RecordedNVML([H100])).collect(T0))
    inv = read_history(lake, at=T0 + timedelta(hours=3), lookback=timedelta(hours=1))
    assert inv.devices == () and inv.status == "lake: no gpu_* samples in the 1 h to 2026-12-07 13:00 UTC"


def test_scraped_samples_keep_their_host(lake: Lake) -> None:
    labels = {"gpu": "3", "instance": "node-7:9400", "uuid": "GPU-x"}
    lake.write_samples(
        [Sample("gpu_utilization_ratio", 0.5, T0, labels), Sample("gpu_temperature_celsius", 60, T0, labels)]
    )
    (d,) = read_history(lake, at=T0 + timedelta(minutes=1)).devices
    assert (d.host, d.index, d.label, d.temperature_c) == ("node-7:9400", 3, "node-7:9400/gpu3", 60)


def test_usage_series_joins_utilisation_and_memory_by_time(lake: Lake) -> None:
    samples = []
    for i in range(5):
        t = T0 + timedelta(minutes=i)
        samples += [Sample("gpu_utilization_ratio", 0.0 if i < 3 else 0.5, t, {"gpu": "0"}),
                    Sample("gpu_memory_used_bytes", 20 * 2**30, t, {"gpu": "0"})]  # fmt: skip
    samples.append(Sample("gpu_utilization_ratio", 0.0, T0 + timedelta(minutes=9), {"gpu": "0"}))  # no memory
    lake.write_samples(samples)
    usage = usage_from_lake(lake, T0, T0 + timedelta(hours=1))
    assert list(usage) == ["gpu0"]
    pts = usage["gpu0"]
    assert [p.utilization_ratio for p in pts] == [0.0, 0.0, 0.0, 0.5, 0.5]
    assert pts[0].t == T0.timestamp() and pts[0].memory_used_bytes == 20 * 2**30

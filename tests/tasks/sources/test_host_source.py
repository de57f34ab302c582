"""HostSource against the real machine: plausible values, valid names, robust to a bad path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import psutil

from tasks.config.settings import HostSourceSettings
from tasks.sources.host import HostSource

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def test_host_metrics_plausible(check_samples, pick, tmp_path: Path) -> None:
    src = HostSource(host_label="box1", disk_paths=["/", str(tmp_path)], cpu_interval_s=0.05)
    samples = check_samples(src.collect(NOW))
    assert all(s.ts == NOW and s.labels["host"] == "box1" for s in samples)

    (cpu,) = pick(samples, "host_cpu_utilization_ratio")
    assert 0.0 <= cpu.value <= 1.0
    cores = pick(samples, "host_cpu_core_utilization_ratio")
    assert sorted(int(s.labels["cpu"]) for s in cores) == list(range(psutil.cpu_count()))
    assert all(0.0 <= s.value <= 1.0 for s in cores)

    for m in ("host_load1", "host_load5", "host_load15"):
        (load,) = pick(samples, m)
        assert 0.0 <= load.value < 10_000

    total = pick(samples, "host_memory_total_bytes")[0].value
    avail = pick(samples, "host_memory_available_bytes")[0].value
    used = pick(samples, "host_memory_used_bytes")[0].value
    assert total == psutil.virtual_memory().total
    assert 0 < avail <= total and used == total - avail
    assert 0.0 < pick(samples, "host_memory_utilization_ratio")[0].value < 1.0
    assert pick(samples, "host_swap_total_bytes")

    for mount in ("/", str(tmp_path)):
        size = pick(samples, "host_filesystem_size_bytes", mountpoint=mount)[0].value
        free = pick(samples, "host_filesystem_free_bytes", mountpoint=mount)[0].value
        assert 0 < free <= size
        assert 0.0 <= pick(samples, "host_filesystem_utilization_ratio", mountpoint=mount)[0].value <= 1.0

    rx = {s.labels["interface"]: s.value for s in pick(samples, "host_network_receive_bytes_total")}
    assert set(rx) == set(psutil.net_io_counters(pernic=True))
    assert all(v >= 0 for v in rx.values())
    assert all(s.metric.endswith("_total") for s in samples if "network" in s.metric)
    if psutil.disk_io_counters() is not None:
        assert pick(samples, "host_disk_read_bytes_total")[0].value >= 0


def test_counters_never_go_backwards_and_back_to_back_readings_measure_cpu(pick) -> None:
    src = HostSource(disk_paths=[], cpu_interval_s=0.05)
    first = src.collect(NOW)
    second = src.collect(NOW)  # immediately: must still give a CPU figure (waits out the window)
    for s in pick(second, "host_network_receive_bytes_total"):
        before = pick(first, s.metric, interface=s.labels["interface"])
        assert before and s.value >= before[0].value
    assert pick(second, "host_cpu_utilization_ratio")
    assert not pick(second, "host_filesystem_size_bytes")  # no disk paths configured


def test_missing_disk_path_is_skipped_with_a_warning(caplog, pick, tmp_path: Path) -> None:
    missing = str(tmp_path / "does-not-exist")
    src = HostSource(disk_paths=[missing, "/"], cpu_interval_s=0.0)
    with caplog.at_level(logging.WARNING, logger="cortex_perf.sources.host"):
        samples = src.collect(NOW)
    assert not pick(samples, "host_filesystem_size_bytes", mountpoint=missing)
    assert pick(samples, "host_filesystem_size_bytes", mountpoint="/")
    assert any(missing in r.getMessage() for r in caplog.records)


def test_from_settings_uses_hostname_and_per_cpu_flag(pick) -> None:
    src = HostSource.from_settings(HostSourceSettings(per_cpu=False, disk_paths=["/"], cpu_interval_s=0.0))
    samples = src.collect(NOW)
    assert src.host and samples[0].labels["host"] == src.host
    assert not pick(samples, "host_cpu_core_utilization_ratio")

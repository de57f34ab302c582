"""Host metrics from psutil: CPU, load, memory, swap, filesystems, disk and network I/O.

Names follow Prometheus conventions (base units in the name, ``_total`` for counters, ``_ratio``
for 0..1 fractions) and carry the label ``host``. Counters are the kernel's raw cumulative values:
rates are the lake's job (``lake.rate`` handles resets), so a restart of the collector loses nothing.

Why CPU utilisation is measured over a short window inside ``collect``: a collection usually
runs in a fresh process, where psutil's "since last call" figure would be meaningless; the window
(``cpu_interval_s``) is short and later calls on the same object measure since the previous
reading, sleeping only when that reading is younger than the window.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from datetime import datetime
from types import ModuleType
from typing import Any

import psutil

from tasks.config.settings import HostSourceSettings
from tasks.lake.schema import Sample, now_utc
from tasks.sources.base import Source, source_logger

__all__ = ["HostSource"]


def _busy_and_total(t: Any) -> tuple[float, float]:
    """Busy and total CPU seconds of one ``cpu_times`` tuple, as psutil's ``cpu_percent`` counts them.

    ``guest`` time is already inside ``user`` on Linux, so it is removed from the total; idle and
    iowait are the not-busy part.
    """
    d = t._asdict()
    total = sum(d.values()) - d.get("guest", 0.0) - d.get("guest_nice", 0.0)
    idle = d.get("idle", 0.0) + d.get("iowait", 0.0)
    return total - idle, total


def _ratio(prev: Any, cur: Any) -> float | None:
    b0, t0 = _busy_and_total(prev)
    b1, t1 = _busy_and_total(cur)
    dt = t1 - t0
    if dt <= 0:
        return None
    return min(1.0, max(0.0, (b1 - b0) / dt))


class HostSource(Source):
    """CPU, memory, swap, disks and network of the machine this runs on.

    ``psutil_module`` is injectable for symmetry with the other sources (tests use the real one).
    """

    def __init__(
        self,
        *,
        name: str = "host",
        host_label: str | None = None,
        per_cpu: bool = True,
        disk_paths: Sequence[str] = ("/",),
        cpu_interval_s: float = 0.1,
        psutil_module: ModuleType | None = None,
    ) -> None:
        self.name = name
        self.host = host_label or socket.gethostname()
        self.per_cpu = per_cpu
        self.disk_paths = list(disk_paths)
        self.cpu_interval_s = cpu_interval_s
        self._ps: Any = psutil_module or psutil
        self._log = source_logger(name)
        self._last_cpu: list[Any] | None = None
        self._last_cpu_at = 0.0

    @classmethod
    def from_settings(cls, cfg: HostSourceSettings) -> HostSource:
        return cls(
            host_label=cfg.host_label,
            per_cpu=cfg.per_cpu,
            disk_paths=cfg.disk_paths,
            cpu_interval_s=cfg.cpu_interval_s,
        )

    def collect(self, now: datetime | None = None) -> list[Sample]:
        now = now or now_utc()
        out: list[Sample] = []
        base = {"host": self.host}

        def add(metric: str, value: float, **labels: str) -> None:
            out.append(Sample(metric, float(value), now, {**base, **labels}))

        self._cpu(add)
        try:
            l1, l5, l15 = os.getloadavg()
            add("host_load1", l1)
            add("host_load5", l5)
            add("host_load15", l15)
        except (OSError, AttributeError):  # not available on this OS
            pass
        add("host_uptime_seconds", max(0.0, time.time() - self._ps.boot_time()))

        vm = self._ps.virtual_memory()
        add("host_memory_total_bytes", vm.total)
        add("host_memory_available_bytes", vm.available)
        add("host_memory_used_bytes", vm.total - vm.available)
        if vm.total > 0:
            add("host_memory_utilization_ratio", (vm.total - vm.available) / vm.total)

        sw = self._ps.swap_memory()
        add("host_swap_total_bytes", sw.total)
        add("host_swap_used_bytes", sw.used)
        add("host_swap_utilization_ratio", sw.used / sw.total if sw.total > 0 else 0.0)
        add("host_swap_in_bytes_total", sw.sin)
        add("host_swap_out_bytes_total", sw.sout)

        for path in self.disk_paths:
            try:
                du = self._ps.disk_usage(path)
            except OSError as exc:  # a missing mount is worth a warning, not a lost tick
                self._log.warning("disk usage of %s unavailable: %s", path, exc)
                continue
            add("host_filesystem_size_bytes", du.total, mountpoint=path)
            add("host_filesystem_used_bytes", du.used, mountpoint=path)
            add("host_filesystem_free_bytes", du.free, mountpoint=path)
            if du.total > 0:
                add("host_filesystem_utilization_ratio", du.used / du.total, mountpoint=path)

        io = self._ps.disk_io_counters(perdisk=False)
        if io is not None:  # None in some containers
            add("host_disk_read_bytes_total", io.read_bytes)
            add("host_disk_written_bytes_total", io.write_bytes)
            add("host_disk_reads_completed_total", io.read_count)
            add("host_disk_writes_completed_total", io.write_count)
            add("host_disk_read_time_seconds_total", io.read_time / 1000.0)
            add("host_disk_write_time_seconds_total", io.write_time / 1000.0)

        for nic, c in sorted(self._ps.net_io_counters(pernic=True).items()):
            add("host_network_receive_bytes_total", c.bytes_recv, interface=nic)
            add("host_network_transmit_bytes_total", c.bytes_sent, interface=nic)
            add("host_network_receive_packets_total", c.packets_recv, interface=nic)
            add("host_network_transmit_packets_total", c.packets_sent, interface=nic)
            add("host_network_receive_errors_total", c.errin, interface=nic)
            add("host_network_transmit_errors_total", c.errout, interface=nic)
            add("host_network_receive_drop_total", c.dropin, interface=nic)
            add("host_network_transmit_drop_total", c.dropout, interface=nic)
        return out

    def _cpu(self, add: Any) -> None:
        prev, prev_at = self._last_cpu, self._last_cpu_at
        if prev is None:
            prev, prev_at = self._ps.cpu_times(percpu=True), time.monotonic()
        # The kernel counts CPU time in ticks: a window shorter than the interval says nothing.
        wait = self.cpu_interval_s - (time.monotonic() - prev_at)
        if wait > 0:
            time.sleep(wait)
        cur = self._ps.cpu_times(percpu=True)
        self._last_cpu, self._last_cpu_at = cur, time.monotonic()
        add("host_cpu_logical_count", len(cur))
        if len(prev) != len(cur):  # CPU hot-plug between calls: no honest figure this tick
            return
        busy0 = sum(_busy_and_total(t)[0] for t in prev)
        busy1 = sum(_busy_and_total(t)[0] for t in cur)
        tot0 = sum(_busy_and_total(t)[1] for t in prev)
        tot1 = sum(_busy_and_total(t)[1] for t in cur)
        if tot1 - tot0 > 0:
            add("host_cpu_utilization_ratio", min(1.0, max(0.0, (busy1 - busy0) / (tot1 - tot0))))
        if self.per_cpu:
            for i, (p, c) in enumerate(zip(prev, cur, strict=True)):
                r = _ratio(p, c)
                if r is not None:
                    add("host_cpu_core_utilization_ratio", r, cpu=str(i))

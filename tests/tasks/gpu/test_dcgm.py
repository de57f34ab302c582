"""The DCGM reader: a recorded dcgm-exporter page served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from dcgmpage import PAGE, DcgmHandler
from localhttp import LocalServer

from tasks.gpu.dcgm import MAX_BODY_BYTES, DcgmError, is_sentinel, parse_dcgm, read_dcgm

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class _Handler(DcgmHandler):
    pass


@pytest.fixture
def exporter() -> Iterator[LocalServer]:
    srv = LocalServer(_Handler)
    try:
        yield srv
    finally:
        srv.close()


def test_page_from_a_real_server_maps_both_hosts(exporter: LocalServer) -> None:
    inv = read_dcgm(exporter.url + "/metrics", timeout_s=5, now=NOW)
    assert inv.source == "dcgm"
    assert inv.status == f"DCGM {exporter.url}/metrics: 2 GPU(s) on 2 host(s), 3 not-supported reading(s) dropped"
    a, b = inv.devices
    assert (a.host, a.index, a.uuid, a.name) == ("node-a", 0, "GPU-aaaa", "NVIDIA H100 80GB HBM3")
    assert a.label == "node-a/gpu0"
    assert a.memory_used_bytes == 2180 * 1024**2 and a.memory_free_bytes == 79377 * 1024**2
    assert a.memory_total_bytes == (2180 + 79377 + 2) * 1024**2  # used + free + reserved
    assert a.utilization_ratio == pytest.approx(0.37)
    assert (a.temperature_c, a.power_w, a.power_limit_w) == (41, pytest.approx(213.467), 700)
    assert (a.sm_clock_mhz, a.memory_clock_mhz) == (1980, 2619)
    assert a.throttle_reasons == () and a.ecc_volatile_uncorrected == 0
    assert a.retired_pages is None  # the int32 blank sentinel: n/a, not 2,147,483,632 pages
    assert a.remap_failure is False and a.remapped_rows_uncorrectable == 0
    assert a.processes is None and a.mig_enabled is None

    assert (b.host, b.index) == ("node-b", 1)
    assert b.utilization_ratio is None  # int64 "not supported" sentinel
    assert b.power_w is None  # fp64 blank sentinel
    assert b.power_limit_w == 400
    assert b.throttle_reasons == ("sw_thermal", "hw_thermal")
    assert b.ecc_volatile_uncorrected == 1
    assert b.mig_enabled is True
    assert [(m.gpu_instance_id, m.name, m.memory_used_bytes, m.activity_ratio) for m in b.mig_instances] == [
        (1, "3g.20gb", 10240 * 1024**2, 0.42),
        (5, "2g.10gb", 0, 0.0),
    ]
    assert b.mig_instances[0].memory_total_bytes == (10240 + 9728) * 1024**2
    assert any("MIG" in n for n in b.notes)


@pytest.mark.parametrize(
    ("value", "sentinel"),
    [
        (9223372036854775792.0, True),  # 2^63 − 16: int64 blank
        (9223372036854775807.0, True),
        (2147483632.0, True),  # int32 blank
        (2147483635.0, True),  # int32 not permissioned
        (140737488355328.0, True),  # fp64 blank
        (140737488355331.0, True),  # fp64 not permissioned
        (float("nan"), True),
        (float("inf"), True),
        (2147483631.0, False),
        (700.0, False),
        (0.0, False),
        (9.0e18, False),
    ],
)
def test_sentinels(value: float, sentinel: bool) -> None:
    assert is_sentinel(value) is sentinel


def test_down_exporter_is_one_line_error_with_the_password_masked(exporter: LocalServer) -> None:
    port = exporter.port
    exporter.close()
    with pytest.raises(DcgmError) as ei:
        read_dcgm(f"http://ops:hunter2@127.0.0.1:{port}/metrics", timeout_s=2)
    msg = str(ei.value)
    assert "is not reachable" in msg and "hunter2" not in msg and "\n" not in msg
    assert isinstance(ei.value, OSError)


def test_http_error_and_garbage_and_oversize(exporter: LocalServer) -> None:
    _Handler.code = 503
    try:
        with pytest.raises(DcgmError, match="answered HTTP 503"):
            read_dcgm(exporter.url + "/metrics")
    finally:
        _Handler.code = 200
    with pytest.raises(DcgmError, match="not Prometheus exposition text"):
        parse_dcgm("DCGM_FI_DEV_GPU_UTIL{gpu=0 37\n")
    _Handler.body = b"# " + b"x" * (MAX_BODY_BYTES + 10)
    try:
        with pytest.raises(DcgmError, match="page over"):
            read_dcgm(exporter.url + "/metrics")
    finally:
        _Handler.body = PAGE.encode()


def test_series_without_a_gpu_index_and_unknown_fields_ignored() -> None:
    inv = parse_dcgm('DCGM_FI_DEV_GPU_TEMP{Hostname="x"} 40\nDCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{gpu="0"} 5\n', now=NOW)
    (d,) = inv.devices  # the NVLink series still names GPU 0; the index-less one is dropped
    assert d.index == 0 and d.temperature_c is None and d.host is None
    assert parse_dcgm("", now=NOW).status == "DCGM: 0 GPU(s) on 0 host(s)"

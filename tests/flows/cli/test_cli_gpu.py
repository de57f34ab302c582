"""``cortex-perf gpu list|stats|advise``: no GPU here (the real NVML), a recorded DCGM exporter on a
real local HTTP server, and the lake's samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dcgmpage import DcgmHandler
from localhttp import LocalServer
from typer.testing import CliRunner

from flows.cli import app
from tasks.lake import Lake
from tasks.lake.schema import Sample

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: no cell folded into its neighbours' lines


@pytest.fixture
def exporter() -> Iterator[LocalServer]:
    srv = LocalServer(DcgmHandler)
    try:
        yield srv
    finally:
        srv.close()


def _lake_args(tmp_path: Path) -> list[str]:
    return ["--set", f"lake.root={tmp_path / 'lake'}"]


def _dcgm(url: str) -> list[str]:
    return ["--set", "gpu.inventory.source=dcgm", "--set", f"gpu.inventory.dcgm_url={url}/metrics"]


def test_no_gpu_here_is_a_status_line_and_exit_0(tmp_path: Path) -> None:
    r = runner.invoke(app, [*_lake_args(tmp_path), "--set", "gpu.inventory.source=nvml", "gpu", "list"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("no NVIDIA driver found (NVML: ") and r.stdout.count("\n") == 1
    r = runner.invoke(app, [*_lake_args(tmp_path), "gpu", "list", "--json"])  # auto: NVML, then the (empty) lake
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["source"] == "none" and out["devices"] == []
    assert out["status"].startswith("no NVIDIA driver found (NVML: ") and "lake: no gpu_* samples" in out["status"]


def test_list_from_a_dcgm_exporter(exporter: LocalServer) -> None:
    r = runner.invoke(app, [*_dcgm(exporter.url), "gpu", "list", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out) == {"source", "status", "at", "driver_version", "devices"} and out["source"] == "dcgm"
    a, b = out["devices"]
    assert (a["host"], a["index"], a["key"], a["work"]) == ("node-a", 0, "GPU-aaaa", {"running": [], "queued": []})
    assert a["health"] == [] and a["memory_used_bytes"] == 2180 * 2**20
    assert b["utilization_ratio"] is None
    assert [f["kind"] for f in b["health"]] == ["thermal-throttle", "ecc-uncorrected"]

    r = runner.invoke(app, [*_dcgm(exporter.url), "gpu", "list"])
    assert r.exit_code == 0, r.output
    assert "2 GPU(s) on 2 host(s)" in r.stdout
    assert "node-a/gpu0" in r.stdout and "node-b/gpu1" in r.stdout
    assert "n/a (MIG)" in r.stdout and "critical" in r.stdout and "213/700 W" in r.stdout


def test_stats_shows_details_findings_and_notes(exporter: LocalServer) -> None:
    r = runner.invoke(app, [*_dcgm(exporter.url), "gpu", "stats"])
    assert r.exit_code == 0, r.output
    assert "sw_thermal, hw_thermal" in r.stdout and "3g.20gb 10.0 GiB" in r.stdout
    assert "critical: node-b/gpu1 clocks held down for heat" in r.stdout
    assert "utilization: none for MIG-enabled GPUs" in r.stdout
    r = runner.invoke(app, [*_dcgm(exporter.url), "gpu", "stats", "--json"])
    devs = json.loads(r.stdout)["devices"]
    assert devs[1]["mig_instances"][0]["activity_ratio"] == 0.42 and devs[1]["throttle_reasons"] == [
        "sw_thermal",
        "hw_thermal",
    ]


def test_a_dcgm_exporter_that_is_down_is_one_line_exit_2(exporter: LocalServer) -> None:
    port = exporter.port
    exporter.close()
    r = runner.invoke(app, [*_dcgm(f"http://ops:hunter2@127.0.0.1:{port}"), "gpu", "list"])
    assert r.exit_code == 2
    assert r.output.startswith("error: DCGM exporter http://ops:") and "is not reachable" in r.output
    assert "hunter2" not in r.output and r.output.count("\n") == 1


def test_dcgm_source_without_a_url_and_an_unknown_source_are_errors() -> None:
    r = runner.invoke(app, ["--set", "gpu.inventory.source=dcgm", "gpu", "list"])
    assert r.exit_code == 2 and "gpu.inventory.dcgm_url: not set" in r.output
    r = runner.invoke(app, ["--set", "gpu.inventory.source=magic", "gpu", "list"])
    assert r.exit_code == 2 and "gpu.inventory.source" in r.output


def test_advise_reads_the_lakes_history(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    samples = []
    for i in range(60):  # the last hour: gpu0 idle 55 of 60 minutes holding 22 GiB, gpu1 busy
        t = now - timedelta(minutes=60 - i)
        samples += [
            Sample("gpu_utilization_ratio", 0.0 if i % 12 else 0.5, t, {"gpu": "0"}),
            Sample("gpu_memory_used_bytes", 22 * 2**30, t, {"gpu": "0"}),
            Sample("gpu_memory_total_bytes", 80 * 2**30, t, {"gpu": "0"}),
            Sample("gpu_utilization_ratio", 0.7, t, {"gpu": "1"}),
            Sample("gpu_memory_used_bytes", 60 * 2**30, t, {"gpu": "1"}),
            Sample("gpu_memory_total_bytes", 80 * 2**30, t, {"gpu": "1"}),
        ]
    lake.write_samples(samples)
    args = [*_lake_args(tmp_path), "--set", "gpu.inventory.source=lake", "gpu", "advise"]
    r = runner.invoke(app, [*args, "--json", "--window", "2h"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["source"] == "lake"
    idle = [a for a in out["advice"] if a["kind"] == "idle-holding-memory"]
    assert [a["target"] for a in idle] == ["gpu0"]
    assert idle[0]["numbers"]["idle_share"] == pytest.approx(55 / 60, abs=0.02)
    assert idle[0]["numbers"]["mean_held_gib"] == 22.0
    r = runner.invoke(app, [*args, "--window", "2h"])
    assert r.exit_code == 0 and "gpu0 sat idle 92% of 1.0 h while holding 22.0 GiB" in r.stdout
    r = runner.invoke(app, [*args, "--window", "forever"])
    assert r.exit_code == 2 and "forever" in r.output


def test_help_names_every_command() -> None:
    r = runner.invoke(app, ["gpu", "--help"])
    assert r.exit_code == 0
    for cmd in ("list", "stats", "advise"):
        assert cmd in r.stdout

"""One GPU tick over GPUs the lake knows on this host: the queue's work placed and launched with its
devices, gpu.allocated events, the queue and findings gauges, the work per device."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.config import Settings, load_settings
from tasks.gpu.queue import GpuQueue
from tasks.gpu.request import GpuRequest
from tasks.gpu.scheduler import this_host
from tasks.gpu.service import device_work, gpu_tick, inventory, placeable
from tasks.lake import Lake, Sample
from tasks.state import State

GIB = 2**30


def setup(tmp_path: Path) -> tuple[Settings, Lake, State]:
    s = load_settings(None, [f"lake.root={tmp_path / 'lake'}", f"state.path={tmp_path / 'state.duckdb'}",
                             f"data_dir={tmp_path / 'data'}", "gpu.inventory.source=lake"])  # fmt: skip
    lake = Lake.from_settings(s)
    now = datetime.now(UTC) - timedelta(minutes=1)
    samples = []
    for gpu in ("0", "1"):
        labels = {"gpu": gpu, "uuid": f"GPU-{gpu}", "name": "NVIDIA H100", "host": this_host()}
        samples += [Sample("gpu_memory_total_bytes", 80.0 * GIB, now, labels),
                    Sample("gpu_memory_used_bytes", 1.0 * GIB, now, labels),
                    Sample("gpu_utilization_ratio", 0.0, now, labels)]  # fmt: skip
    lake.write_samples(samples)
    return s, lake, State.from_settings(s)


def test_a_tick_places_a_queued_command_on_its_devices(tmp_path: Path) -> None:
    s, lake, state = setup(tmp_path)
    out = tmp_path / "env.txt"
    code = f"import os; open({str(out)!r}, 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', ''))"
    q = GpuQueue(state)
    task = q.submit(GpuRequest(kind="command", gpus=1, command=(sys.executable, "-c", code), memory_bytes=GIB))
    tick = gpu_tick(s, lake, state, datetime.now(UTC))
    assert len(tick.inventory.devices) == 2 and tick.inventory.source == "lake"
    assert tick.placement is not None
    (d,) = tick.placement.decisions
    assert d.placed and d.task_id == task.id and d.placement is not None
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.read_text() in ("GPU-0", "GPU-1")  # launched with its device
    ev = lake.events(name="gpu.allocated")
    assert ev.height == 1 and task.id in ev["payload"][0]
    queue_gauge = lake.latest("cortex_perf_gpu_queue_tasks")
    assert set(queue_gauge["labels"].to_list()) == {'{"status":"queued"}', '{"status":"running"}'}
    assert "### Queue" in tick.markdown() and task.id in tick.markdown()


def test_dry_run_places_nothing_and_work_is_per_device(tmp_path: Path) -> None:
    s, lake, state = setup(tmp_path)
    q = GpuQueue(state)
    task = q.submit(GpuRequest(kind="command", gpus=2, command=("sleep", "1")))
    tick = gpu_tick(s, lake, state, datetime.now(UTC), dry_run=True)
    assert tick.placement is not None and tick.placement.decisions[0].placed
    assert q.get(task.id).status == "queued"  # type: ignore[union-attr]
    assert lake.events(name="gpu.allocated").height == 0
    devices = placeable(inventory(s, lake).devices)
    assert all(d.host == this_host() for d in devices)
    work = device_work(s, state, devices)
    assert all(w.running == () for w in work.values()) and len(work) == 2


def test_queued_work_that_fits_nowhere_gets_a_rebalancing_plan(tmp_path: Path) -> None:
    """Two half-GPU preemptible tasks on GPUs 0 and 1 leave one whole GPU: a 2-GPU task waits. The
    tick plans moving one half onto the other's GPU (dry-run by default: nothing stopped)."""
    from tasks.state import ClaimOwner

    s, lake, state = setup(tmp_path)
    now = datetime.now(UTC) - timedelta(minutes=1)
    labels = {"gpu": "2", "uuid": "GPU-2", "name": "NVIDIA H100", "host": this_host()}
    lake.write_samples([Sample("gpu_memory_total_bytes", 80.0 * GIB, now, labels)])
    q = GpuQueue(state)
    holders = []
    for dev in ("GPU-0", "GPU-1"):
        t = q.submit(GpuRequest(kind="command", gpus=1, fraction=0.5, preemptible=True, command=("sleep", "60")))
        proc = subprocess.Popen(["sleep", "60"])  # the task's process: alive, so its reservation holds
        holders.append(proc)
        assert q.start(t.id, this_host(), [dev], ClaimOwner.of_process(proc.pid))
        q.launched(t.id, holder=ClaimOwner.of_process(proc.pid), pid=proc.pid, flow_run_id=None)
    big = q.submit(GpuRequest(kind="command", gpus=2, command=("sleep", "1")))
    try:
        tick = gpu_tick(s, lake, state, datetime.now(UTC))
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()
    assert tick.placement is not None and not tick.placement.decisions[0].placed
    assert tick.rebalance is not None and tick.rebalance_status == "dry-run"
    (move,) = tick.rebalance.moves
    assert {move.from_devices, move.to_devices} == {("GPU-0",), ("GPU-1",)}
    assert any(f.for_task == big.id for f in tick.rebalance.freed)
    assert q.get(big.id).status == "queued"  # type: ignore[union-attr]
    assert "### Rebalancing (dry-run)" in tick.markdown()
    off = load_settings(None, [f"lake.root={tmp_path / 'lake'}", f"state.path={tmp_path / 'state.duckdb'}",
                               "gpu.inventory.source=lake", "gpu.rebalance.mode=off"])  # fmt: skip
    assert gpu_tick(off, lake, state, datetime.now(UTC)).rebalance is None

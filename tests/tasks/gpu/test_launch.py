"""A placed task really starts with its devices in its environment, and its end is recorded."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tasks.config import Settings
from tasks.gpu.cluster import Cluster, NodeSpec
from tasks.gpu.queue import GpuQueue
from tasks.gpu.request import GpuRequest
from tasks.gpu.scheduler import place_queued
from tasks.state import State


def wait_status(q: GpuQueue, task_id: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = q.get(task_id)
        assert row is not None
        if row.status not in ("queued", "running"):
            return row.status
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still {row.status}")


def test_launched_process_sees_its_devices(tmp_path: Path) -> None:
    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    q = GpuQueue(st)
    out = tmp_path / "env.json"
    code = (
        "import json, os, sys; json.dump({k: os.environ.get(k) for k in "
        "('CUDA_VISIBLE_DEVICES', 'NVIDIA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER', 'CORTEX_GPU_TASK')}, "
        f"open({str(out)!r}, 'w'))"
    )
    task = q.submit(GpuRequest("command", 2, command=(sys.executable, "-c", code)))
    cluster = Cluster.from_nodes([NodeSpec("host", [1000, 300, 1000], gpu_ids=["GPU-aaa", "GPU-bbb", "GPU-ccc"])])
    res = place_queued(s, st, cluster, strategy="best_fit")
    (d,) = res.decisions
    assert d.placed and d.pid and d.placement is not None and d.placement.device_ids == ("GPU-aaa", "GPU-ccc")
    assert wait_status(q, task.id) == "done"
    env = json.loads(out.read_text())
    assert env == {
        "CUDA_VISIBLE_DEVICES": "GPU-aaa,GPU-ccc",
        "NVIDIA_VISIBLE_DEVICES": "GPU-aaa,GPU-ccc",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CORTEX_GPU_TASK": task.id,
    }
    row = q.get(task.id)
    assert row is not None and row.exit_code == 0 and row.devices == ["GPU-aaa", "GPU-ccc"] and q.reservations() == []


def test_failing_command_is_failed_and_released(tmp_path: Path) -> None:
    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    q = GpuQueue(st)
    task = q.submit(GpuRequest("command", 1, command=(sys.executable, "-c", "raise SystemExit(3)")))
    place_queued(s, st, Cluster.from_nodes([NodeSpec("h", [1000])]))
    assert wait_status(q, task.id) == "failed"
    row = q.get(task.id)
    assert row is not None and row.exit_code == 3 and q.reservations() == []

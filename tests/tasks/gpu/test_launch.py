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


def test_a_deployment_run_gets_its_devices_and_its_end_releases_them(tmp_path: Path, prefect_server: str) -> None:
    """Against a real Prefect server: the run is created with the devices in its ``env`` job
    variable (what process, Docker and Kubernetes pools pass on), the reservation is held while the
    run is not over, released when Prefect says it completed — and a deleted run is lost."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Running

    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    q = GpuQueue(st)

    def cluster() -> Cluster:  # a fresh placement model per pass, as the flow builds from its inventory
        return Cluster.from_nodes([NodeSpec("node-1", [1000, 1000], gpu_ids=["GPU-aaa", "GPU-bbb"])])

    with temporary_settings({PREFECT_API_URL: prefect_server}):

        def make() -> object:
            return get_client(sync_client=True)

        with get_client(sync_client=True) as c:
            flow_id = c.create_flow_from_name("gpu-train")
            c.create_deployment(flow_id=flow_id, name="nightly")
        train = q.submit(GpuRequest("deployment", 1, deployment="gpu-train/nightly", parameters={"epochs": 3}))
        gone = q.submit(GpuRequest("deployment", 1, deployment="gpu-train/nightly"))
        res = place_queued(s, st, cluster(), strategy="best_fit", prefect_client=make)
        runs = {d.task_id: d for d in res.decisions}
        assert all(d.placed and d.flow_run_id for d in runs.values())
        with get_client(sync_client=True) as c:
            run = c.read_flow_run(runs[train.id].flow_run_id)
            env = run.job_variables["env"]
            assert (
                env["CUDA_VISIBLE_DEVICES"]
                == env["NVIDIA_VISIBLE_DEVICES"]
                == ",".join(runs[train.id].placement.device_ids)
            )
            assert env["CORTEX_GPU_TASK"] == train.id and run.parameters == {"epochs": 3}
            assert f"cortex-gpu-task:{train.id}" in run.tags
            c.set_flow_run_state(run.id, Running(), force=True)
        # still running in Prefect: the next pass keeps both GPUs reserved
        again = place_queued(s, st, cluster(), strategy="best_fit", prefect_client=make)
        assert again.ended == [] and {r.id for r in q.reservations()} == {train.id, gone.id}
        with get_client(sync_client=True) as c:
            c.set_flow_run_state(run.id, Completed(), force=True)
            c.delete_flow_run(runs[gone.id].flow_run_id)
        after = place_queued(s, st, cluster(), strategy="best_fit", prefect_client=make)
        assert after.ended == [train.id] and after.lost == [gone.id] and q.reservations() == []
        row = q.get(train.id)
        assert row is not None and row.status == "done" and "completed" in (row.reason or "")

        def unreachable() -> object:
            raise OSError("connection refused")

        q.submit(GpuRequest("deployment", 1, deployment="gpu-train/nightly"))
        placed = place_queued(s, st, cluster(), strategy="best_fit", prefect_client=make)
        assert any(d.placed for d in placed.decisions), [d.to_json()["reason"] for d in placed.decisions]
        kept = place_queued(s, st, cluster(), strategy="best_fit", prefect_client=unreachable)
        assert kept.ended == [] and len(q.reservations()) == 1  # the API is down: nothing freed

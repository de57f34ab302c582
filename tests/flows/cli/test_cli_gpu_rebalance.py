"""``cortex-perf gpu rebalance|optimize`` on a real state DB, a declared fleet and real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.gpu import gpu_app
from tasks.config import Settings
from tasks.gpu.cluster import Cluster, NodeSpec
from tasks.gpu.queue import GpuQueue
from tasks.gpu.request import GpuRequest
from tasks.gpu.scheduler import place_queued
from tasks.lake import Lake
from tasks.state import ClaimOwner, State

if not any(g.name == "gpu" for g in app.registered_groups):  # mounted by the inventory's change
    app.add_typer(gpu_app, name="gpu")

runner = CliRunner()
SLEEP = (sys.executable, "-c", "import time; time.sleep(60)")


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[list[str], Path, GpuQueue]:
    devices = [{"host": h, "index": i, "uuid": f"GPU-{h}{i}"} for h in ("a", "b") for i in range(4)]
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(devices))
    env = ["--set", f"state.path={tmp_path / 'state.duckdb'}", "--set", f"lake.root={tmp_path / 'lake'}"]
    return env, path, GpuQueue(State(str(tmp_path / "state.duckdb")))


def _fragment(q: GpuQueue, *, preemptible: bool = True) -> tuple[str, str]:
    """a:GPU-a0 holds a 1-GPU task, b:GPU-b0,b1 a fixed 2-GPU one (held by this process); a 4-GPU task waits."""
    me = ClaimOwner.me()
    small = q.submit(GpuRequest("command", 1, command=("true",), preemptible=preemptible))
    assert q.start(small.id, "a", ["GPU-a0"], me)
    fixed = q.submit(GpuRequest("command", 2, command=("true",)))
    assert q.start(fixed.id, "b", ["GPU-b0", "GPU-b1"], me)
    big = q.submit(GpuRequest("command", 4, command=("true",)))
    return small.id, big.id


def test_rebalance_is_a_dry_run_by_default(fleet: tuple[list[str], Path, GpuQueue]) -> None:
    env, devices, q = fleet
    small, big = _fragment(q)
    code, out = run(*env, "gpu", "rebalance", "--devices", str(devices), "--strategy", "best_fit")
    assert code == 0, out
    assert "rebalancing plan (best_fit)" in out and small in out and "frees-gpus" in out
    assert f"frees a:GPU-a0,GPU-a1,GPU-a2,GPU-a3 for task {big}" in out and "dry run: nothing changed" in out
    assert q.get(small) is not None and q.get(small).status == "running"  # type: ignore[union-attr]
    code, out = run(*env, "gpu", "rebalance", "--devices", str(devices), "--strategy", "best_fit", "--json")
    plan = json.loads(out)
    assert plan["status"] == "dry-run" and plan["largest_block_before"] == 3 and plan["largest_block_after"] == 4
    assert [(m["task"], m["from"]["node"], m["to"]) for m in plan["moves"]] == [
        (small, "a", {"node": "b", "devices": ["GPU-b2"]})
    ]


def test_a_non_preemptible_task_blocks_the_plan_and_it_says_why(fleet: tuple[list[str], Path, GpuQueue]) -> None:
    env, devices, q = fleet
    small, _big = _fragment(q, preemptible=False)
    code, out = run(*env, "gpu", "rebalance", "--devices", str(devices), "--apply", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["status"] == "nothing to do" and plan["moves"] == []
    assert f"holds running task {small} (not preemptible)" in plan["notes"][0]
    assert q.get(small).status == "running"  # type: ignore[union-attr]


@pytest.mark.slow
def test_apply_stops_and_requeues_a_real_task(fleet: tuple[list[str], Path, GpuQueue], tmp_path: Path) -> None:
    env, devices, q = fleet
    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    sleeper = q.submit(GpuRequest("command", 1, command=SLEEP, preemptible=True))
    a = NodeSpec("a", [1000] * 4, gpu_ids=[f"GPU-a{i}" for i in range(4)])
    (d,) = place_queued(s, st, Cluster.from_nodes([a]), strategy="first_fit").decisions
    assert d.placed and d.pid
    fixed = q.submit(GpuRequest("command", 2, command=("true",)))
    assert q.start(fixed.id, "b", ["GPU-b0", "GPU-b1"], ClaimOwner.me())
    big = q.submit(GpuRequest("command", 4, command=("true",)))
    try:
        code, out = run(*env, "gpu", "rebalance", "--devices", str(devices), "--strategy", "best_fit", "--apply")
        assert code == 0, out
        assert "applied: action gpu-rebalance-" in out
        row = q.get(sleeper.id)
        assert row is not None and row.status == "queued" and row.spec["pin"] == {"node": "b", "devices": ["GPU-b2"]}
        assert q.get(big.id).spec["pin"]["node"] == "a"  # type: ignore[union-attr]
        events = Lake(str(tmp_path / "lake")).events(name="gpu.rebalanced")
        assert len(events) == 1 and json.loads(events["payload"][0])["moves"][0]["task"] == sleeper.id
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(d.pid, signal.SIGKILL)


def test_optimize_plans_consolidation(fleet: tuple[list[str], Path, GpuQueue]) -> None:
    env, devices, q = fleet
    me = ClaimOwner.me()
    ids = []
    for dev, frac, pre in (("GPU-a0", 0.25, True), ("GPU-a1", 0.5, False)):
        t = q.submit(GpuRequest("command", 1, command=("true",), fraction=frac, preemptible=pre))
        assert q.start(t.id, "a", [dev], me)
        ids.append(t.id)
    code, out = run(*env, "gpu", "optimize", "--devices", str(devices), "--strategy", "best_fit", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert [(m["task"], m["to"]["devices"], m["why"]) for m in plan["moves"]] == [(ids[0], ["GPU-a1"], "consolidate")]
    assert plan["freed"] == [{"node": "a", "devices": ["GPU-a0"], "for_task": None}]
    assert (plan["free_gpus_before"], plan["free_gpus_after"]) == (6, 7)
    code, out = run(*env, "gpu", "optimize", "--devices", str(devices))
    assert code == 0 and "consolidate" in out and "free whole GPUs 6 → 7" in " ".join(out.split())


def test_hot_devices_and_bad_input(fleet: tuple[list[str], Path, GpuQueue]) -> None:
    env, devices, q = fleet
    t = q.submit(GpuRequest("command", 1, command=("true",), preemptible=True))
    assert q.start(t.id, "a", ["GPU-a0"], ClaimOwner.me())
    code, out = run(*env, "gpu", "rebalance", "--devices", str(devices), "--hot", "a:GPU-a0", "--json")
    plan = json.loads(out)
    assert code == 0 and [(m["task"], m["why"]) for m in plan["moves"]] == [(t.id, "hot")]
    assert plan["moves"][0]["to"]["devices"] != ["GPU-a0"]
    code, out = run(*env, "gpu", "rebalance", "--devices", str(devices), "--strategy", "nope", "--apply")
    assert code == 2 and "strategy: unknown 'nope'" in out
    assert q.get(t.id).status == "running"  # type: ignore[union-attr]
    # no devices anywhere (no driver here, no --devices): a note, exit 0
    code, out = run(*env, "gpu", "rebalance")
    assert code == 0 and "no GPU devices known" in out
    for cmd in ("rebalance", "optimize"):
        code, out = run("gpu", cmd, "--help")
        assert code == 0 and "--json" in out

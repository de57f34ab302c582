"""``cortex-perf gpu submit|cancel|status|queue|strategy|place`` on a real state DB."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.gpu import gpu_app

if not any(g.name == "gpu" for g in app.registered_groups):  # mounted by the inventory's change
    app.add_typer(gpu_app, name="gpu")

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> list[str]:
    devices = [{"host": "h", "index": i, "uuid": f"GPU-{i}", "memory_total_bytes": 16 << 30, "memory_used_bytes": 0}
               for i in range(2)]  # fmt: skip
    (tmp_path / "devices.json").write_text(json.dumps(devices))
    return ["--set", f"state.path={tmp_path / 'state.duckdb'}", "--set", 'gpu.queue.quotas={"capped": 1}']


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def test_submit_queue_status_cancel(env: list[str], tmp_path: Path) -> None:
    code, out = run(*env, "gpu", "submit", "--command", "sleep 1", "--gpus", "1", "--memory", "4GiB", "--json")
    assert code == 0, out
    task = json.loads(out)
    assert (
        task["status"] == "queued" and task["memory_bytes"] == 4 << 30 and task["spec"] == {"command": ["sleep", "1"]}
    )
    code, out = run(*env, "gpu", "queue", "--json")
    assert code == 0 and [t["id"] for t in json.loads(out)] == [task["id"]]
    code, out = run(*env, "gpu", "status", task["id"])
    assert code == 0 and f"GPU task {task['id']}" in out
    code, out = run(*env, "gpu", "cancel", task["id"])
    assert code == 0 and "cancelled" in out
    code, out = run(*env, "gpu", "status", task["id"], "--json")
    assert json.loads(out)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "3", "--devices", "{dev}"], "gpus: 3 is more than any node has (the largest has 2)"),
        (["--gpus", "1", "--memory", "-4GiB"], "memory: '-4GiB' is negative"),
        (["--gpus", "2", "--gpu-fraction", "0.5"], "gpu-fraction: 0.5 with gpus=2"),
        (["--gpus", "1", "--gpu-fraction", "1.5"], "gpu-fraction: 1.5 is not in (0, 1]"),
        (["--gpus", "2", "--owner", "capped"], "over owner capped's quota of 1 GPUs"),
    ],
)
def test_bad_input_queues_nothing(env: list[str], tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.replace("{dev}", str(tmp_path / "devices.json")) for a in args]
    code, out = run(*env, "gpu", "submit", "--command", "true", *args)
    assert code == 2 and message in " ".join(out.split()), out
    assert len(out.strip().splitlines()) == 1
    code, out = run(*env, "gpu", "queue", "--json")
    assert json.loads(out) == []


def test_strategy_show_set_and_unknown(env: list[str]) -> None:
    assert "strategy: fragmentation_aware" in run(*env, "gpu", "strategy")[1]
    code, out = run(*env, "gpu", "strategy", "spread", "--dry-run")
    assert code == 0 and "would change" in out
    assert "strategy: fragmentation_aware" in run(*env, "gpu", "strategy")[1]
    assert run(*env, "gpu", "strategy", "best_fit")[0] == 0
    assert "strategy: best_fit" in run(*env, "gpu", "strategy")[1]
    code, out = run(*env, "gpu", "strategy", "tightest")
    assert code == 2 and "strategy: unknown 'tightest'" in out


def test_place_dry_run_then_for_real(env: list[str], tmp_path: Path) -> None:
    dev = str(tmp_path / "devices.json")
    run(*env, "gpu", "submit", "--command", f"{sys.executable} -c pass", "--gpus", "2")
    code, out = run(*env, "gpu", "place", "--devices", dev, "--dry-run", "--json")
    assert code == 0, out
    res = json.loads(out)
    assert res["dry_run"] and res["decisions"][0]["placement"]["devices"] == ["GPU-0", "GPU-1"]
    assert json.loads(run(*env, "gpu", "queue", "--json")[1])[0]["status"] == "queued"
    code, out = run(*env, "gpu", "place", "--devices", dev, "--json")
    res = json.loads(out)
    assert res["decisions"][0]["placed"] and res["decisions"][0]["pid"]
    code, out = run(*env, "gpu", "place", "--json")  # no devices here: a clear, empty pass
    assert code == 0 and json.loads(out)["devices"] == 0

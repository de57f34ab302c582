"""End to end against a real Prefect server: deploy from prefect.yaml, run through a process worker.

What it proves: `prefect deploy` accepts our prefect.yaml, the pull step finds the checkout through
PROJECT_DIR on the worker, a `process` worker runs the collect flow, and the run's parameter
overrides reach the flow (its samples land in the lake the overrides name, not the one the worker's
environment names).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasks.lake import Lake

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (Prefect shuts down cleanly on it), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def prefect_env(tmp_path: Path) -> dict[str, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CORTEX_PERF_"))}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "false",
            # No schedules fire here: only the run the test creates should execute.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_CLI_PROMPT": "false",
            "PROJECT_DIR": str(REPO_ROOT),
            # Safety net and precedence check: the run's overrides must beat this.
            "CORTEX_PERF_LAKE__ROOT": str(tmp_path / "env-lake"),
        }
    )
    return env


@pytest.fixture
def prefect_server(prefect_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", prefect_env["PREFECT_SERVER_API_PORT"]],
        env=prefect_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = prefect_env["PREFECT_API_URL"]
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited early:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy in 120 s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield api
    finally:
        _stop(proc)
        log.close()


def _prefect(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([PREFECT, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"prefect {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def test_deploy_and_run_collect_through_a_process_worker(
    prefect_server: str, prefect_env: dict[str, str], tmp_path: Path
) -> None:
    env = prefect_env
    _prefect(env, "work-pool", "create", "cortex-perf", "--type", "process")
    # Deployed without PROJECT_DIR, the placeholder stays in the deployment and is resolved on the
    # worker at run time (with PROJECT_DIR set, `prefect deploy` would bake that path in instead).
    deploy_env = {k: v for k, v in env.items() if k != "PROJECT_DIR"}
    out = _prefect(deploy_env, "--no-prompt", "deploy", "--name", "collect")
    assert "collect/collect" in out.stdout + out.stderr

    # The deployment carries prefect.yaml's schedule and concurrency settings.
    dep = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=10).json()
    collect_dep = next(d for d in dep if d["name"] == "collect")
    assert collect_dep["schedules"][0]["schedule"]["interval"] == 60.0
    assert collect_dep["global_concurrency_limit"]["limit"] == 1
    assert collect_dep["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert collect_dep["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ $PROJECT_DIR }}"
    )

    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "cortex-perf", "--limit", "1"],
        env=env,
        cwd=tmp_path,  # the pull step, not the worker's cwd, must find the code
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lake_root = tmp_path / "lake"
    try:
        params = {
            "overrides": [
                f"lake.root={lake_root}",
                "sources.gpu.enabled=false",
                "sources.prefect.enabled=false",
            ]
        }
        run = _prefect(
            env,
            "deployment",
            "run",
            "collect/collect",
            "--params",
            json.dumps(params),
            "--watch",
            "--watch-interval",
            "1",
            "--watch-timeout",
            "150",
            timeout=170,
        )
        assert "Completed" in run.stdout + run.stderr, run.stdout + run.stderr
    finally:
        _stop(worker)
        worker_log.close()

    lake = Lake(str(lake_root))
    stats = lake.stats()["tables"]
    assert stats["samples"]["rows"] > 0, (tmp_path / "worker.log").read_text()[-3000:]
    cpu = lake.latest("host_cpu_utilization_ratio")
    assert cpu.height >= 1
    collected = lake.events(name="metrics.collected")
    assert collected.height == 1
    payload = json.loads(collected["payload"][0])
    assert payload["accepted"] == stats["samples"]["rows"]
    # the worker's CORTEX_PERF_LAKE__ROOT lost to the run's --set style override
    assert not (tmp_path / "env-lake").exists()

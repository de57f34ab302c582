"""End to end against a real Prefect server: deploy from prefect.yaml, run through a process worker.

What it proves: `prefect deploy` accepts our prefect.yaml, the pull step finds the checkout through
PROJECT_DIR on the worker, a `process` worker runs the collect flow, and the run's parameter
overrides reach the flow (its samples land in the lake the overrides name, not the one the worker's
environment names).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from prefectserver import PREFECT, clean_env, stop_process

from tasks.lake import Lake

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def prefect_env(prefect_server: str, tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI and the worker, talking to the session's ``prefect_server``."""
    env = clean_env()
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": prefect_server,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_CLI_PROMPT": "false",
            "PROJECT_DIR": str(REPO_ROOT),
            # Safety net and precedence check: the run's overrides must beat this.
            "CORTEX_PERF_LAKE__ROOT": str(tmp_path / "env-lake"),
        }
    )
    return env


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
        stop_process(worker)
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


#: The project's own ``cortex-perf`` command (the venv of the interpreter running the tests).
CORTEX_PERF = str(Path(PREFECT).parent / "cortex-perf")


def test_serve_after_deploy_refuses_and_the_deployed_runs_still_work(
    prefect_server: str, prefect_env: dict[str, str], tmp_path: Path
) -> None:
    """`prefect deploy --all` then `cortex-perf serve` used to rewrite the same-named deployments
    without their pull step, and every worker run then crashed ("Downloading flow code from storage
    at None"). Serve must refuse, naming the conflict, and leave the deployments working."""
    env = prefect_env
    _prefect(env, "work-pool", "create", "cortex-perf", "--type", "process", "--overwrite")
    deploy_env = {k: v for k, v in env.items() if k != "PROJECT_DIR"}
    out = _prefect(deploy_env, "--no-prompt", "deploy", "--all", timeout=300)
    assert "collect/collect" in out.stdout + out.stderr and "alerts/alerts" in out.stdout + out.stderr

    serve_log = tmp_path / "serve.log"
    with serve_log.open("wb") as log:
        serve = subprocess.Popen(
            [CORTEX_PERF, "serve"], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None  # it is serving: the bug (stopped below, after it rewrote the deployments)
        finally:
            stop_process(serve)
    said = " ".join(serve_log.read_text().split())
    assert code == 2, f"serve did not refuse (exit {code}):\n{said[-3000:]}"
    assert "collect/collect" in said and "prefect deploy" in said and "cortex-perf" in said, said

    deps = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=10).json()
    collect_dep = next(d for d in deps if d["name"] == "collect")
    assert collect_dep["pull_steps"], "the deployment lost its pull step"
    assert collect_dep["work_pool_name"] == "cortex-perf"

    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "cortex-perf", "--limit", "1"],
        env=env, cwd=tmp_path, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lake_root = tmp_path / "lake"
    try:
        params = {"overrides": [f"lake.root={lake_root}", "sources.gpu.enabled=false", "sources.prefect.enabled=false"]}
        run = _prefect(
            env, "deployment", "run", "collect/collect", "--params", json.dumps(params),
            "--watch", "--watch-interval", "1", "--watch-timeout", "150", timeout=170,
        )  # fmt: skip
        assert "Completed" in run.stdout + run.stderr, run.stdout + run.stderr
    finally:
        stop_process(worker)
        worker_log.close()
    assert Lake(str(lake_root)).stats()["tables"]["samples"]["rows"] > 0, (tmp_path / "worker.log").read_text()[-3000:]


def test_a_cache_miss_event_runs_the_cache_deployment(
    prefect_server: str, prefect_env: dict[str, str], tmp_path: Path, redis_url: str
) -> None:
    """The cache deployment's trigger (prefect.yaml) becomes an automation on the server; the
    ``cache.miss`` event our cache tick emits (tasks.events, the real path) starts a cache run with
    ``warm: always`` on a worker."""
    import sys
    import time

    env = prefect_env
    _prefect(env, "work-pool", "create", "cortex-perf", "--type", "process", "--overwrite")
    deploy_env = {k: v for k, v in env.items() if k != "PROJECT_DIR"}
    _prefect(deploy_env, "--no-prompt", "deploy", "--name", "cache")
    autos = httpx.post(f"{prefect_server}/automations/filter", json={}, timeout=10).json()
    mine = [a for a in autos if "cortex.cache.miss" in json.dumps(a["trigger"])]
    assert mine, autos
    dep = next(d for d in httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=10).json()
               if d["name"] == "cache")  # fmt: skip

    worker_env = {**env, "CORTEX_PERF_CACHE__ENABLED": "true", "CORTEX_PERF_CACHE__URL": redis_url,
                  "CORTEX_PERF_CACHE__NAME": "e2e", "CORTEX_PERF_DATA_DIR": str(tmp_path / "data"),
                  "CORTEX_PERF_STATE__PATH": str(tmp_path / "state.duckdb")}  # fmt: skip
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "cortex-perf", "--limit", "1"],
        env=worker_env, cwd=tmp_path, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        emit = (
            "import sys; from tasks.lake import Lake; from tasks.events import emit; "
            "emit(Lake(sys.argv[1]), 'cache.miss', 'cache.e2e', {'rate': 50.0}, to_prefect=True)"
        )
        subprocess.run([sys.executable, "-c", emit, str(tmp_path / "events-lake")], env=env, cwd=REPO_ROOT,
                       check=True, timeout=60)  # fmt: skip
        deadline, runs = time.monotonic() + 150, []
        while time.monotonic() < deadline:
            query = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}
            runs = httpx.post(f"{prefect_server}/flow_runs/filter", json=query, timeout=10).json()
            if any(r["state_type"] == "COMPLETED" for r in runs):
                break
            time.sleep(1)
    finally:
        stop_process(worker)
        worker_log.close()
    done = [r for r in runs if r["state_type"] == "COMPLETED"]
    assert done, f"no completed cache run: {runs}\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
    assert done[0]["parameters"]["warm"] == "always"

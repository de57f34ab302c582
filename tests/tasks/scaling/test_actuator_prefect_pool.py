"""The ``prefect_pool`` actuator against a real ``prefect server start`` (slow: starts a server).

Setup and checks go through the REST API directly (httpx), independently of the Prefect client the
actuator uses. What could break: the wrong object patched (pool vs queue), a limit not persisted,
a missing pool/queue passing as applied, an unlimited pool read as a count, the default API URL
(``PREFECT_API_URL``) not honoured."""

from __future__ import annotations

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

from tasks.scaling.actuators import ActuatorError, Decision, Ledger, PrefectPoolActuator, build_actuator

PREFECT = str(Path(sys.executable).parent / "prefect")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server on 127.0.0.1 for this module; its API URL."""
    home = tmp_path_factory.mktemp("prefect-actuator")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CORTEX_PERF_"))}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        }
    )
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        api = f"http://127.0.0.1:{port}/api"
        try:
            deadline = time.monotonic() + 150
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"prefect server exited early:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"prefect server not healthy in 150 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield api
        finally:
            proc.send_signal(signal.SIGTERM)  # Prefect shuts down cleanly on SIGTERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _create_pool(api: str, name: str, limit: int | None = None, queue: str | None = None) -> None:
    r = httpx.post(f"{api}/work_pools/", json={"name": name, "type": "process", "concurrency_limit": limit}, timeout=10)
    assert r.status_code == 201, r.text
    if queue:
        r = httpx.post(f"{api}/work_pools/{name}/queues", json={"name": queue, "concurrency_limit": 1}, timeout=10)
        assert r.status_code == 201, r.text


def _pool_limit(api: str, name: str) -> int | None:
    return httpx.get(f"{api}/work_pools/{name}", timeout=10).json()["concurrency_limit"]


def _queue_limit(api: str, pool: str, queue: str) -> int | None:
    return httpx.get(f"{api}/work_pools/{pool}/queues/{queue}", timeout=10).json()["concurrency_limit"]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(str(tmp_path / "state.duckdb"))


def _d(id: str, to: int, target: str) -> Decision:
    return Decision(id=id, target=target, to=to)


def test_sets_a_work_pools_concurrency_limit(prefect_api: str, ledger: Ledger) -> None:
    _create_pool(prefect_api, "batch", limit=2)
    act = build_actuator({"kind": "prefect_pool", "api_url": prefect_api}, ledger=ledger)
    assert isinstance(act, PrefectPoolActuator)
    assert act.current("batch") == 2
    res = act.apply(_d("p1", 5, "batch"), dry_run=False)
    assert (res.status, res.observed) == ("applied", 5), res.error
    assert _pool_limit(prefect_api, "batch") == 5
    # idempotent: a change made since by someone else is not overwritten by re-applying p1
    httpx.patch(f"{prefect_api}/work_pools/batch", json={"concurrency_limit": 3}, timeout=10)
    assert act.apply(_d("p1", 5, "batch"), dry_run=False).status == "skipped"
    assert _pool_limit(prefect_api, "batch") == 3 and act.current("batch") == 3
    # scaling to zero is a limit too (no runs start), not "unlimited"
    assert act.apply(_d("p0", 0, "batch"), dry_run=False).observed == 0
    assert _pool_limit(prefect_api, "batch") == 0


def test_sets_a_work_queues_limit_in_a_named_pool(prefect_api: str, ledger: Ledger) -> None:
    _create_pool(prefect_api, "gpu-pool", limit=10, queue="fast")
    act = build_actuator(
        {"kind": "prefect_pool", "api_url": prefect_api, "pool": "gpu-pool", "queue": "fast", "name": "gpu-fast"},
        ledger=ledger,
    )
    assert act.current("gpu") == 1
    res = act.apply(_d("q1", 4, "gpu"), dry_run=False)
    assert res.status == "applied" and res.detail["work_queue"] == "fast", res.error
    assert _queue_limit(prefect_api, "gpu-pool", "fast") == 4
    assert _pool_limit(prefect_api, "gpu-pool") == 10  # the pool itself untouched


def test_missing_pool_or_queue_is_a_recorded_failure(prefect_api: str, ledger: Ledger) -> None:
    act = build_actuator({"kind": "prefect_pool", "api_url": prefect_api}, ledger=ledger)
    res = act.apply(_d("m1", 2, "no-such-pool"), dry_run=False)
    assert res.status == "failed" and res.error == "prefect_pool: work pool 'no-such-pool' not found"
    queue = build_actuator(
        {"kind": "prefect_pool", "api_url": prefect_api, "pool": "batch", "queue": "nope"}, ledger=ledger
    )
    with pytest.raises(ActuatorError, match="work queue 'nope' in pool 'batch' not found"):
        queue.current("x")


def test_an_unlimited_pool_needs_unlimited_as(prefect_api: str, ledger: Ledger) -> None:
    _create_pool(prefect_api, "open")
    with pytest.raises(ActuatorError, match="has no concurrency limit"):
        build_actuator({"kind": "prefect_pool", "api_url": prefect_api}, ledger=ledger).current("open")
    act = build_actuator({"kind": "prefect_pool", "api_url": prefect_api, "unlimited_as": 50}, ledger=ledger)
    assert act.current("open") == 50


def test_the_default_api_url_comes_from_prefect_settings(prefect_api: str, ledger: Ledger) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _create_pool(prefect_api, "env-pool", limit=7)
    act = build_actuator({"kind": "prefect_pool"}, ledger=ledger)
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        assert act.current("env-pool") == 7
        assert act.apply(_d("e1", 8, "env-pool"), dry_run=False).status == "applied"
    assert _pool_limit(prefect_api, "env-pool") == 8
    # with no API URL at all, Prefect would start a throwaway server: the actuator refuses instead
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        t0 = time.monotonic()
        res = act.apply(_d("e2", 9, "env-pool"), dry_run=False)
        assert time.monotonic() - t0 < 5
    assert res.status == "failed" and "no Prefect API configured" in (res.error or "")
    assert _pool_limit(prefect_api, "env-pool") == 8


def test_unreachable_api_is_an_error(ledger: Ledger) -> None:
    act = build_actuator({"kind": "prefect_pool", "api_url": "http://127.0.0.1:9/api", "timeout_s": 2}, ledger=ledger)
    with pytest.raises(ActuatorError, match="Prefect API read failed"):
        act.current("batch")
    assert act.apply(_d("u1", 2, "batch"), dry_run=False).status == "failed"

"""The ``prefect_pool`` actuator against a real ``prefect server start`` (slow: starts a server).

Setup and checks go through the REST API directly (httpx), independently of the Prefect client the
actuator uses. What could break: the wrong object patched (pool vs queue), a limit not persisted,
a missing pool/queue passing as applied, an unlimited pool read as a count, the default API URL
(``PREFECT_API_URL``) not honoured. The server is the session's ``prefect_server`` (tests/conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tasks.actuators import ActionLedger, ActuatorError, ScaleAction, build_actuator
from tasks.actuators.prefect_pool import PrefectPoolActuator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


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
def ledger(tmp_path: Path) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"))


def _d(id: str, to: int, target: str) -> ScaleAction:
    return ScaleAction(id=id, target=target, to=to)


def test_sets_a_work_pools_concurrency_limit(prefect_server: str, ledger: ActionLedger) -> None:
    _create_pool(prefect_server, "batch", limit=2)
    act = build_actuator({"kind": "prefect_pool", "api_url": prefect_server}, ledger=ledger)
    assert isinstance(act, PrefectPoolActuator)
    assert act.current("batch") == 2
    res = act.apply(_d("p1", 5, "batch"), dry_run=False)
    assert (res.status, res.observed) == ("applied", 5), res.error
    assert _pool_limit(prefect_server, "batch") == 5
    # idempotent: a change made since by someone else is not overwritten by re-applying p1
    httpx.patch(f"{prefect_server}/work_pools/batch", json={"concurrency_limit": 3}, timeout=10)
    assert act.apply(_d("p1", 5, "batch"), dry_run=False).status == "skipped"
    assert _pool_limit(prefect_server, "batch") == 3 and act.current("batch") == 3
    # scaling to zero is a limit too (no runs start), not "unlimited"
    assert act.apply(_d("p0", 0, "batch"), dry_run=False).observed == 0
    assert _pool_limit(prefect_server, "batch") == 0


def test_sets_a_work_queues_limit_in_a_named_pool(prefect_server: str, ledger: ActionLedger) -> None:
    _create_pool(prefect_server, "gpu-pool", limit=10, queue="fast")
    act = build_actuator(
        {"kind": "prefect_pool", "api_url": prefect_server, "pool": "gpu-pool", "queue": "fast", "name": "gpu-fast"},
        ledger=ledger,
    )
    assert act.current("gpu") == 1
    res = act.apply(_d("q1", 4, "gpu"), dry_run=False)
    assert res.status == "applied" and res.detail["work_queue"] == "fast", res.error
    assert _queue_limit(prefect_server, "gpu-pool", "fast") == 4
    assert _pool_limit(prefect_server, "gpu-pool") == 10  # the pool itself untouched


def test_missing_pool_or_queue_is_a_recorded_failure(prefect_server: str, ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "prefect_pool", "api_url": prefect_server}, ledger=ledger)
    res = act.apply(_d("m1", 2, "no-such-pool"), dry_run=False)
    assert res.status == "failed" and res.error == "prefect_pool: work pool 'no-such-pool' not found"
    queue = build_actuator(
        {"kind": "prefect_pool", "api_url": prefect_server, "pool": "batch", "queue": "nope"}, ledger=ledger
    )
    with pytest.raises(ActuatorError, match="work queue 'nope' in pool 'batch' not found"):
        queue.current("x")


def test_an_unlimited_pool_needs_unlimited_as(prefect_server: str, ledger: ActionLedger) -> None:
    _create_pool(prefect_server, "open")
    with pytest.raises(ActuatorError, match="has no concurrency limit"):
        build_actuator({"kind": "prefect_pool", "api_url": prefect_server}, ledger=ledger).current("open")
    act = build_actuator({"kind": "prefect_pool", "api_url": prefect_server, "unlimited_as": 50}, ledger=ledger)
    assert act.current("open") == 50


def test_the_default_api_url_comes_from_prefect_settings(prefect_server: str, ledger: ActionLedger) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _create_pool(prefect_server, "env-pool", limit=7)
    act = build_actuator({"kind": "prefect_pool"}, ledger=ledger)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        assert act.current("env-pool") == 7
        assert act.apply(_d("e1", 8, "env-pool"), dry_run=False).status == "applied"
    assert _pool_limit(prefect_server, "env-pool") == 8
    # with no API URL at all, Prefect would start a throwaway server: the actuator refuses instead
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        t0 = time.monotonic()
        res = act.apply(_d("e2", 9, "env-pool"), dry_run=False)
        assert time.monotonic() - t0 < 5
    assert res.status == "failed" and "no Prefect API configured" in (res.error or "")
    assert _pool_limit(prefect_server, "env-pool") == 8


def test_unreachable_api_is_an_error(ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "prefect_pool", "api_url": "http://127.0.0.1:9/api", "timeout_s": 2}, ledger=ledger)
    with pytest.raises(ActuatorError, match="Prefect API read failed"):
        act.current("batch")
    assert act.apply(_d("u1", 2, "batch"), dry_run=False).status == "failed"

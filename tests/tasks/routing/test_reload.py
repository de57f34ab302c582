"""Hot reload: a changed config takes effect without dropping requests in flight; a bad config keeps
the old pools; a champion promoted in the registry is picked up by the running service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from router_outcomes import CROSSED, synthetic_outcomes
from routerhttp import Backend, Service

from tasks.config import load_settings
from tasks.registry import ModelRegistry
from tasks.routing.overrides import apply_settings_action, load_overrides, settings_action
from tasks.routing.proxy import build_app
from tasks.routing.reload import Reloader, config_fingerprint, registry_champion
from tasks.routing.router import Router
from tasks.routing.training import fit, outcome_rows
from tasks.state import State


def _write(path: Path, targets: dict[str, str], **router: Any) -> None:
    cfg = {
        "router": {
            "pools": [{"name": "api", "targets": [{"name": n, "url": u} for n, u in targets.items()]}],
            "service": {"reload_s": 0.05},
            **router,
        }
    }
    path.write_text(yaml.safe_dump(cfg))


def _wait(cond: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("a"), Backend("b")
    yield a, b
    a.close()
    b.close()


def test_a_changed_config_takes_effect_without_dropping_requests_in_flight(
    tmp_path: Path, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    cfg = tmp_path / "cortex-perf.yaml"
    _write(cfg, {"a": a.url})
    settings = load_settings(cfg)
    router = Router(settings.router)
    reloader = Reloader(router, config_path=cfg)
    service = Service(build_app(router, settings, None, background=[reloader]))
    answers: list[int] = []
    try:
        slow = threading.Thread(
            target=lambda: answers.append(httpx.get(service.url + "/slow?ms=700", timeout=10).status_code)
        )
        slow.start()
        _wait(lambda: a.hits == ["/slow"], "the slow request to reach a")
        _write(cfg, {"b": b.url})  # a leaves the pool while its request is in flight
        _wait(lambda: reloader.reloads == 1, "the reload")
        assert httpx.get(service.url + "/echo", timeout=10).json()["backend"] == "b"
        slow.join()
        assert answers == [200]  # the request in flight finished on the target that left
        status = httpx.get(service.url + "/_router/status").json()
        assert [t["name"] for t in status["pools"][0]["targets"]] == ["b"]
        assert status["service"]["reloader"]["reloads"] == 1
    finally:
        service.stop()


def test_a_bad_config_keeps_the_old_pools_and_says_why(tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    a, _ = backends
    cfg = tmp_path / "cortex-perf.yaml"
    _write(cfg, {"a": a.url})
    router = Router(load_settings(cfg).router)
    reloader = Reloader(router, config_path=cfg)
    _write(cfg, {"a": "ftp://nowhere"})
    assert reloader.check() == (None, None)
    assert reloader.last_error and "url" in reloader.last_error and "keeping the pools" in reloader.last_error
    assert [t.target.url for t in router.pools["api"].targets.values()] == [a.url]
    # unchanged since: not reported again; fixed: applied
    reloader.last_error = None
    assert reloader.check() == (None, None) and reloader.last_error is None
    _write(cfg, {"a": a.url, "c": a.url + "/c"})
    new, _ = reloader.check()
    assert new is not None
    reloader.apply(new, None)
    assert list(router.pools["api"].targets) == ["a", "c"]


def test_config_fingerprint_changes_with_the_content(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    assert config_fingerprint(f) is None
    f.write_text("a: 1\n")
    first = config_fingerprint(f)
    f.write_text("a: 2\n")
    assert config_fingerprint(f) not in (None, first)


def _promote(registry: ModelRegistry, settings: Any, seed: int) -> str:
    """Train a real route model on synthetic outcomes and promote it through the shared registry,
    as the router flow does."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    rows = outcome_rows(synthetic_outcomes(400, start, CROSSED, seed=seed), settings)
    mv = registry.register("router", fit(rows, seed=seed), train_start=start, train_end=start, score=1.0)
    registry.promote("router", mv.version, reason="test")
    return mv.version


def test_a_promoted_model_is_picked_up_without_restart(tmp_path: Path, backends: tuple[Backend, Backend]) -> None:
    a, _ = backends
    cfg = tmp_path / "cortex-perf.yaml"
    _write(cfg, {"a": a.url}, strategy="learned")
    settings = load_settings(cfg)
    registry = ModelRegistry(State(str(tmp_path / "state.duckdb")), tmp_path / "models")
    assert registry_champion(registry, "router") is None  # none promoted yet
    router = Router(settings.router)
    reloader = Reloader(router, champion=lambda: registry_champion(registry, "router"))
    service = Service(build_app(router, settings, None, background=[reloader]))
    try:
        v1 = _promote(registry, settings, seed=1)
        _wait(lambda: reloader.model_version == v1, v1)
        status = httpx.get(service.url + "/_router/status").json()
        assert status["model"] == {"name": "router", "version": v1}
        assert type(router.model).__name__ == "RouteModel"
        v2 = _promote(registry, settings, seed=2)
        _wait(lambda: reloader.model_version == v2, v2)
        assert router.model_version == v2 and v2 != v1
        assert httpx.get(service.url + "/echo").status_code == 200
    finally:
        service.stop()


def test_a_champion_that_fails_to_load_is_reported_once(tmp_path: Path) -> None:
    router = Router(load_settings(None).router)

    def broken(path: Path) -> Any:
        raise ValueError(f"cannot read {path}")

    reloader = Reloader(router, champion=lambda: ("v3", tmp_path / "v3"), load_model=broken)
    assert reloader.check() == (None, None)
    assert reloader.last_error and "v3 not loaded" in reloader.last_error
    reloader.last_error = None
    assert reloader.check() == (None, None) and reloader.last_error is None  # not retried every tick
    assert router.model is None


def test_a_routing_action_is_laid_over_the_config_on_the_next_check(tmp_path: Path) -> None:
    cfg = tmp_path / "cortex-perf.yaml"
    _write(cfg, {"a": "http://127.0.0.1:9001", "b": "http://127.0.0.1:9002"})
    state = State(str(tmp_path / "state.duckdb"))
    base = load_settings(cfg).router
    router = Router(base)
    reloader = Reloader(router, config_path=cfg, base=base, overrides=lambda: load_overrides(state), applied=[])
    assert reloader.check() == (None, None)  # nothing stored, nothing changed
    action = settings_action(base, "api/a", {"capacity": 7}, reason="test")
    assert apply_settings_action(action, state=state, lake=None, dry_run=False).ok
    new, _ = reloader.check()
    assert new is not None
    reloader.apply(new, None)
    assert router.pools["api"].targets["a"].target.capacity == 7
    # the config changes later: the override still lies over the new file
    _write(cfg, {"a": "http://127.0.0.1:9001", "b": "http://127.0.0.1:9002", "c": "http://127.0.0.1:9003"})
    new, _ = reloader.check()
    assert new is not None
    reloader.apply(new, None)
    assert list(router.pools["api"].targets) == ["a", "b", "c"]
    assert router.pools["api"].targets["a"].target.capacity == 7

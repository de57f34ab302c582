"""Routing weights and resilience settings as recorded actions, laid over the config by the service."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.config.routing import RouterSettings
from tasks.lake import Lake
from tasks.routing.overrides import (
    OverrideError,
    apply_settings_action,
    clear_overrides,
    effective_settings,
    load_overrides,
    settings_action,
)
from tasks.routing.router import Router
from tasks.state import State

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def base(**over: Any) -> RouterSettings:
    data: dict[str, Any] = {
        "pools": [
            {
                "name": "api",
                "targets": [
                    {"name": "a", "url": "http://127.0.0.1:9001"},
                    {"name": "b", "url": "http://127.0.0.1:9002", "weight": 2},
                ],
            }
        ]
    }
    data.update(over)
    return RouterSettings.model_validate(data)


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(str(tmp_path / "state.duckdb"))


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_a_weight_change_is_one_recorded_action_and_reaches_the_router(state: State, lake: Lake) -> None:
    cfg = base()
    action = settings_action(cfg, "api/a", {"weight": 5}, reason="a has spare capacity", now=NOW)
    assert action.area == "routing" and action.kind == "settings" and action.from_ == {"weight": 1.0}
    dry = apply_settings_action(action, state=state, lake=lake, dry_run=True)
    assert dry.status == "dry-run" and load_overrides(state) == []
    res = apply_settings_action(action, state=state, lake=lake, dry_run=False)
    assert res.status == "applied" and res.observed == {"weight": 5}
    again = apply_settings_action(action, state=state, lake=lake, dry_run=False)
    assert again.status == "skipped"  # the same decision applies once
    events = lake.events(name="action.applied")
    assert events.height == 1 and "routing.api/a" in events.get_column("resource")[0]
    eff, stale = effective_settings(cfg, load_overrides(state))
    assert stale == [] and eff.pools[0].targets[0].weight == 5 and cfg.pools[0].targets[0].weight == 1
    r = Router(cfg)
    r.reload(eff)
    assert r.pools["api"].targets["a"].target.weight == 5


def test_breaker_and_pool_strategy_changes_apply_router_wide(state: State) -> None:
    cfg = base()
    for scope, changes in (
        ("router", {"breaker.failure_rate_threshold": 30.0, "ejection.consecutive_5xx": 3}),
        ("api", {"strategy": "round_robin"}),
    ):
        apply_settings_action(settings_action(cfg, scope, changes, now=NOW), state=state, lake=None, dry_run=False)
    eff, _ = effective_settings(cfg, load_overrides(state))
    assert eff.breaker.failure_rate_threshold == 30.0 and eff.ejection.consecutive_5xx == 3
    assert eff.pools[0].strategy == "round_robin"
    r = Router(eff)
    assert r.pools["api"].strategy.name == "round_robin"
    assert clear_overrides(state, "api") == 1
    eff2, _ = effective_settings(cfg, load_overrides(state))
    assert eff2.pools[0].strategy is None and eff2.breaker.failure_rate_threshold == 30.0
    assert clear_overrides(state) == 2 and load_overrides(state) == []


@pytest.mark.parametrize(
    ("scope", "changes", "message"),
    [
        ("api/a", {"weight": -1}, r"router\.pools\.0\.targets\.0\.weight: Input should be greater than 0"),
        ("api/zz", {"weight": 2}, "unknown target 'zz' in pool 'api'"),
        ("nope", {"strategy": "p2c"}, r"unknown pool 'nope' \(pools: api\)"),
        ("api", {"weight": 2}, r"weight: cannot be set on a pool \(settable: strategy\)"),
        ("router", {"breaker.bogus": 1}, "breaker.bogus: cannot be set on a router"),
        ("router", {"strategy": "fastest"}, r"router\.strategy: Input should be"),
        ("a/b/c", {"weight": 1}, "is not `router`, `POOL` or `POOL/TARGET`"),
        ("router", {}, "nothing to change"),
    ],
)
def test_bad_changes_are_refused_naming_the_field_and_store_nothing(
    state: State, scope: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(OverrideError, match=message):
        settings_action(base(), scope, changes, now=NOW)
    assert load_overrides(state) == []


def test_an_override_for_a_target_no_longer_configured_is_stale_not_fatal(state: State) -> None:
    cfg = base()
    apply_settings_action(
        settings_action(cfg, "api/b", {"capacity": 7}, now=NOW), state=state, lake=None, dry_run=False
    )
    shrunk = RouterSettings.model_validate(
        {"pools": [{"name": "api", "targets": [{"name": "a", "url": "http://127.0.0.1:9001"}]}]}
    )
    eff, stale = effective_settings(shrunk, load_overrides(state))
    assert [o.scope for o in stale] == ["api/b"] and len(eff.pools[0].targets) == 1

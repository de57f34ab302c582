"""The router flow under Prefect's test harness: outcomes in a real lake → a model trained,
backtested, promoted as an action with ``model.promoted``; the artifact a person reads; a run with
too few outcomes or no pools saying why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from router_outcomes import CROSSED, POOL_OVERRIDE, synthetic_outcomes

from tasks.actuators import ActionLedger
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.registry import ModelRegistry
from tasks.routing.learned import RouteModel
from tasks.routing.promotion import load_champion
from tasks.state import State

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _root(overrides: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}="))


def test_router_flow_trains_backtests_and_promotes(lake_overrides: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.router import ARTIFACT_KEY, router

    lake = Lake(_root(lake_overrides, "lake.root"))
    lake.write_rows(S.ROUTER_OUTCOMES, synthetic_outcomes(1000, datetime.now(UTC) - timedelta(hours=2), CROSSED))
    overrides = [*lake_overrides, POOL_OVERRIDE, "router.learned.min_outcomes=200"]
    state = router(overrides=overrides, return_state=True)
    summary = state.result()
    assert summary["status"] == "promoted" and summary["promoted"] is True, summary["reason"]
    assert summary["version"] == "v1" and summary["outcomes"] == 1000
    assert summary["backtest"]["model_cost"] < 0.5 * summary["backtest"]["live_cost"]

    state_path = _root(lake_overrides, "state.path")
    registry = ModelRegistry(State(state_path), f"{_root(lake_overrides, 'data_dir')}/models")
    version, model = load_champion(registry, "router")
    assert version == "v1" and isinstance(model, RouteModel)
    (action,) = ActionLedger(state_path).history("router")
    assert action.actuator == "router.model" and action.status == "applied"
    events = lake.events(since=datetime.now(UTC) - timedelta(hours=1))
    assert {"model.promoted", "action.applied"} <= set(events["name"].to_list())

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    (mine,) = [a for a in arts if a.flow_run_id == state.state_details.flow_run_id]
    assert "promoted" in str(mine.data) and "cost per query" in str(mine.data)

    # the next run on the same outcomes cannot beat the champion it just made: rejected, champion kept
    again = router(overrides=overrides)
    assert again["status"] == "rejected" and again["version"] == "v2"
    assert registry.champion("router").version == "v1"


def test_router_flow_with_too_few_outcomes_says_why(lake_overrides: list[str]) -> None:
    from flows.router import router

    summary = router(overrides=[*lake_overrides, POOL_OVERRIDE])
    assert summary["skipped"] is True and summary["status"] == "skipped"
    assert "0 outcome(s)" in summary["reason"] and "min_outcomes=200" in summary["reason"]


def test_router_flow_without_pools_says_why(lake_overrides: list[str]) -> None:
    from flows.router import router

    summary = router(overrides=lake_overrides)
    assert summary["skipped"] is True and summary["reason"] == "router.pools is empty"

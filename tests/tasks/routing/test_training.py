"""The router's learning loop on a real lake and state DB: retrain, backtest against the live
strategy on held-out outcomes, promote only a winner (as a recorded action), reject a worse one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from router_outcomes import CROSSED, FLAT, POOL_OVERRIDE, synthetic_outcomes

from tasks.actuators import ActionLedger
from tasks.config import load_settings
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.registry import ModelRegistry
from tasks.routing.learned import RouteModel
from tasks.routing.promotion import load_champion
from tasks.routing.training import backtest, decide, fit, load_outcomes, outcome_rows, retrain_router, split
from tasks.state import State

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path):
    settings = load_settings(
        None,
        [
            f"lake.root={tmp_path / 'lake'}",
            f"state.path={tmp_path / 'state.duckdb'}",
            f"data_dir={tmp_path / 'data'}",
            POOL_OVERRIDE,
            "router.learned.min_outcomes=100",
            "router.learned.history=6h",
        ],
    )
    lake = Lake(settings.lake.root)
    registry = ModelRegistry(State(settings.state.path), tmp_path / "data" / "models")
    return settings, lake, registry, ActionLedger(settings.state.path)


def _write(lake: Lake, latency, n: int, start: datetime, seed: int = 1) -> None:
    lake.write_rows(S.ROUTER_OUTCOMES, synthetic_outcomes(n, start, latency, seed=seed))


def test_too_few_outcomes_skip_and_say_why(env) -> None:
    settings, lake, registry, ledger = env
    _write(lake, CROSSED, 40, NOW - timedelta(hours=1))
    report = retrain_router(settings, lake, registry, ledger, NOW)
    assert report.status == "skipped" and "40 outcome(s)" in report.reason and "min_outcomes=100" in report.reason
    assert registry.history("router") == []


def test_a_winner_is_promoted_as_an_action_and_a_worse_challenger_rejected(env) -> None:
    settings, lake, registry, ledger = env
    _write(lake, CROSSED, 1200, NOW - timedelta(hours=2))
    first = retrain_router(settings, lake, registry, ledger, NOW)
    bt = first.backtest
    assert first.status == "promoted", first.reason
    # a uniform live policy pays (10 + 50) / 2 = 30 ms; picking each kind's fast target pays ~10 ms
    assert bt is not None and bt.live_cost == pytest.approx(30, rel=0.1) and bt.model_cost < 12
    assert bt.model_mae_log < bt.ewma_mae_log
    assert registry.champion("router").version == first.version == "v1"
    assert first.action is not None and first.action["status"] == "applied"
    (row,) = ledger.history("router")
    assert (row.actuator, row.decision_id) == ("router.model", "router-model-router-v1")
    real_now = datetime.now(UTC)  # events are stamped by the real clock
    events = lake.events(since=real_now - timedelta(hours=1))
    assert "action.applied" in events["name"].to_list()
    version, model = load_champion(registry, "router")
    assert version == "v1" and isinstance(model, RouteModel)

    # the newest history no longer tells the targets apart: a challenger fitted on it can at best
    # match the champion, which is not a win — rejected, and the champion stays
    _write(lake, FLAT, 1200, NOW + timedelta(minutes=1), seed=2)
    later = NOW + timedelta(hours=1)
    second = retrain_router(settings, lake, registry, ledger, later)
    assert second.status == "rejected" and second.version == "v2", second.reason
    assert registry.get("router", "v2").status == "rejected" and "the champion's" in second.reason
    assert registry.champion("router").version == "v1"


def test_a_worse_model_loses_its_backtest(env) -> None:
    settings, lake, _, _ = env
    _write(lake, CROSSED, 1000, NOW - timedelta(hours=1))
    rows = outcome_rows(load_outcomes(lake, NOW - timedelta(hours=2), NOW), settings)
    train, held = split(rows)
    assert len(train) == 800 and held.ts[0] >= train.ts[-1]  # time-ordered
    good = fit(train)
    # a model that learned the world backwards: every kind fast where it is slow
    backwards = train.take(slice(None))
    backwards.latency_ms = np.where(backwards.latency_ms < 30, 50.0, 10.0)
    bad = fit(backwards)
    learned, ewma = settings.router.learned, settings.router.ewma_default_ms
    good_bt, bad_bt = (
        backtest(good, held, learned, default_ewma_ms=ewma),
        backtest(bad, held, learned, default_ewma_ms=ewma),
    )
    assert bad_bt.model_cost > good_bt.live_cost > good_bt.model_cost
    assert decide(bad_bt, None)[0] is False
    assert decide(good_bt, None)[0] is True
    assert decide(good_bt, bad_bt)[0] is True and decide(bad_bt, good_bt)[0] is False


def test_dry_run_registers_nothing(env) -> None:
    settings, lake, registry, ledger = env
    _write(lake, CROSSED, 600, NOW - timedelta(hours=1))
    report = retrain_router(settings, lake, registry, ledger, NOW, dry_run=True)
    assert report.status == "dry-run" and report.reason.startswith("would promote")
    assert registry.history("router") == [] and ledger.history("router") == []


def test_registry_round_trip_keeps_predictions(env, tmp_path) -> None:
    settings, lake, registry, _ = env
    _write(lake, CROSSED, 400, NOW - timedelta(hours=1))
    rows = outcome_rows(load_outcomes(lake, NOW - timedelta(hours=2), NOW), settings)
    model = fit(rows)
    mv = registry.register("router", model, train_start=None, train_end=None, score=1.0)
    assert mv.kind == "router_xgboost"
    _, loaded = registry.load_as("router", RouteModel, mv.version)
    x = model.matrix(rows.records, rows.keys)
    for a, b in zip(model.predict_rows(x), loaded.predict_rows(x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)

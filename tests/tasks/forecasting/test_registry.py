"""Model registry: versions on disk, promotion only on better held-out error, rollback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tasks.forecasting.base import Forecaster
from tasks.forecasting.registry import ModelRegistry, RegistryError
from tasks.state import State

T0 = datetime(2026, 11, 27, tzinfo=UTC)


class LastValue(Forecaster):
    """A tiny real forecaster: repeats each series' last value (enough to exercise the registry)."""

    name = "test_last_value"

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def fit(self, train, *, freq, season):
        return self

    def predict(self, history, h):
        last = history.sort("ts").group_by("series").agg(pl.col("ts").last(), pl.col("y").last())
        rows = []
        for series, ts, y in last.iter_rows():
            for step in range(1, h + 1):
                v = y + self.offset
                rows.append((series, ts + timedelta(minutes=5 * step), step, v, v, v, v))
        return pl.DataFrame(rows, schema=["series", "ts", "step", "p10", "p50", "p90", "p99"], orient="row")

    def save(self, directory: Path) -> None:
        (directory / "model.json").write_text(json.dumps({"offset": self.offset}))

    @classmethod
    def load(cls, directory: Path) -> LastValue:
        return cls(json.loads((directory / "model.json").read_text())["offset"])


@pytest.fixture
def registry(tmp_path, monkeypatch) -> ModelRegistry:
    import tasks.forecasting as forecasting

    monkeypatch.setitem(forecasting.MODELS, LastValue.name, LastValue)
    return ModelRegistry(State(str(tmp_path / "state.duckdb")), tmp_path / "models")


def _register(reg: ModelRegistry, offset: float, score: float):
    return reg.register(
        "cpu",
        LastValue(offset),
        train_start=T0,
        train_end=T0 + timedelta(days=1),
        score=score,
        meta={"features": ["lag1"], "scores": {"mase": score}},
    )


def test_register_writes_files_and_metadata(registry, tmp_path):
    v = _register(registry, 1.0, 0.9)
    assert (v.version, v.status, v.kind) == ("v1", "challenger", "test_last_value")
    files = sorted(p.name for p in Path(v.path).iterdir())
    assert files == ["meta.json", "model.json"]
    meta = json.loads((Path(v.path) / "meta.json").read_text())
    assert meta["train_end"] == (T0 + timedelta(days=1)).isoformat()
    assert {"python", "polars"} <= set(meta["libraries"]) and meta["features"] == ["lag1"]
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "models" / "cpu").iterdir())


def test_first_version_is_promoted_then_only_better_ones(registry):
    v1 = _register(registry, 1.0, 0.9)
    d1 = registry.promote_if_better("cpu", v1.version, challenger_score=0.9, champion_score=None)
    assert d1.promoted and registry.champion("cpu").version == "v1"
    v2 = _register(registry, 2.0, 0.95)
    d2 = registry.promote_if_better("cpu", v2.version, challenger_score=0.95, champion_score=0.9)
    assert not d2.promoted and registry.get("cpu", "v2").status == "rejected"
    assert registry.champion("cpu").version == "v1"
    v3 = _register(registry, 3.0, 0.8)
    d3 = registry.promote_if_better("cpu", v3.version, challenger_score=0.8, champion_score=0.9)
    assert d3.promoted and "0.8 < champion's 0.9" in d3.reason
    assert [v.status for v in registry.history("cpu")] == ["champion", "rejected", "retired"]
    mv, model = registry.load("cpu")
    assert mv.version == "v3" and model.offset == 3.0


def test_min_improvement_keeps_ties_from_churning(registry):
    v1 = _register(registry, 1.0, 0.9)
    registry.promote_if_better("cpu", v1.version, challenger_score=0.9, champion_score=None)
    v2 = _register(registry, 2.0, 0.89)
    assert not registry.promote_if_better(
        "cpu", v2.version, challenger_score=0.89, champion_score=0.9, min_improvement=0.05
    ).promoted


def test_rollback_restores_the_previous_champion(registry):
    for offset, score in ((1.0, 0.9), (2.0, 0.8)):
        v = _register(registry, offset, score)
        registry.promote_if_better(
            "cpu",
            v.version,
            challenger_score=score,
            champion_score=registry.champion("cpu").score if registry.champion("cpu") else None,
        )
    assert registry.champion("cpu").version == "v2"
    back = registry.rollback("cpu")
    assert back.version == "v1" and registry.champion("cpu").version == "v1"
    assert registry.get("cpu", "v2").status == "rejected"
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("cpu")


def test_errors_name_the_problem(registry):
    with pytest.raises(RegistryError, match="has no champion yet"):
        registry.load("cpu")
    with pytest.raises(RegistryError, match="has no version 'v9'"):
        registry.get("cpu", "v9")
    with pytest.raises(RegistryError, match="not a valid model name"):
        registry.register("../x", LastValue(), train_start=None, train_end=None, score=None)


def test_the_forecasting_view_lists_forecasters_only(registry, tmp_path):
    """The shared registry also holds the router's model (meta.domain = routing): `forecast history`
    and the forecast-accuracy report list forecasters only; the shared view lists both."""
    from tasks.registry import ModelRegistry as SharedRegistry

    class RouterLike:
        kind = "router_xgboost"

        def save(self, directory: Path) -> None:
            (directory / "model.json").write_text("{}")

    shared = SharedRegistry(registry.state, registry.models_dir)
    shared.register("router", RouterLike(), train_start=T0, train_end=T0, score=1.0, meta={"domain": "routing"})
    registry.register("cpu", LastValue(), train_start=T0, train_end=T0, score=0.5)
    assert [v.name for v in registry.history()] == ["cpu"]
    assert registry.history("router") == []
    assert sorted(v.name for v in shared.history()) == ["cpu", "router"]

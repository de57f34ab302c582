"""Every registered model on synthetic series with known answers, plus the interface's guarantees."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from forecast_helpers import FAST_XGB, HOUR, SEASON, history, seasonal

from tasks.forecasting import MODELS, NotEnoughHistory, get_model
from tasks.forecasting.base import FORECAST_SCHEMA, QUANTILE_COLUMNS, Forecaster
from tasks.forecasting.baselines import holt_winters_filter
from tasks.forecasting.panel import Panel

SEASONAL_MODELS = ("seasonal_naive", "ets", "ets_damped", "theta", "stl_ets", "xgboost")
N = SEASON * 14  # two weeks hourly


def make(name: str) -> Forecaster:
    return get_model(name, **(FAST_XGB if name == "xgboost" else {}))


def fit(name: str, train: pl.DataFrame) -> Forecaster:
    return make(name).fit(train, freq=HOUR, season=SEASON)


def p50(fc: pl.DataFrame, series: str) -> np.ndarray:
    return fc.filter(pl.col("series") == series).sort("step")["p50"].to_numpy()


@pytest.fixture(scope="module")
def pure() -> pl.DataFrame:
    """Two noise-free seasonal series of different magnitude."""
    return history({"small": seasonal(N, level=5, amp=2), "big": seasonal(N, level=500, amp=200)})


def test_registry_lists_every_model_and_rejects_unknown_names() -> None:
    assert set(MODELS) == {"xgboost", "seasonal_naive", "ets", "ets_damped", "theta", "stl_ets", "linear_trend"}
    assert all(MODELS[n].name == n for n in MODELS)
    with pytest.raises(ValueError, match="unknown forecasting model 'nope'"):
        get_model("nope")


@pytest.mark.parametrize("name", SEASONAL_MODELS)
def test_pure_seasonality_is_forecast_almost_exactly(name: str, pure: pl.DataFrame) -> None:
    train = pure.filter(pl.col("ts") < pure["ts"].min() + timedelta(hours=N - 3 * SEASON))
    model = fit(name, train)
    fc = model.predict(pure.filter(pl.col("ts") < pure["ts"].min() + timedelta(hours=N - SEASON)), 12)
    assert fc.schema == FORECAST_SCHEMA and fc.height == 24
    for series, amp in (("small", 2.0), ("big", 200.0)):
        truth = pure.filter(pl.col("series") == series)["y"].to_numpy()[N - SEASON : N - SEASON + 12]
        err = np.abs(p50(fc, series) - truth).max()
        tolerance = 0.12 if name == "xgboost" else 0.02  # trees approximate, the filters reproduce
        assert err < tolerance * amp, f"{name} {series}: max error {err:.3f}"


def test_linear_trend_is_exact_on_a_line() -> None:
    line = 3.0 + 0.25 * np.arange(N)
    frame = history({"line": line})
    model = fit("linear_trend", frame.head(N - 50))
    fc = model.predict(frame.head(N - 20), 12)
    np.testing.assert_allclose(p50(fc, "line"), line[N - 20 : N - 8], rtol=1e-9)
    assert np.allclose(fc["p10"], fc["p50"]) and np.allclose(fc["p99"], fc["p50"])  # no error, no spread


@pytest.mark.parametrize("name", ["seasonal_naive", "ets", "ets_damped", "theta", "stl_ets", "xgboost"])
def test_state_rolls_forward_over_a_level_shift_without_refitting(name: str) -> None:
    """A model that saw the level move in training follows a later shift it was never fitted on."""
    y = seasonal(N, level=50, amp=5, noise=0.3, seed=1)
    y[4 * SEASON :] -= 20.0  # a shift inside the training part teaches the smoothing constants to adapt
    y[N - 3 * SEASON :] += 40.0  # the level jumps after the training part
    frame = history({"a": y})
    model = fit(name, frame.head(N - 4 * SEASON))
    fc = model.predict(frame.head(N - 12), 12)
    assert abs(np.mean(p50(fc, "a")) - np.mean(y[N - 12 :])) < 0.3 * 40.0, name  # moved most of the way


@pytest.mark.parametrize("name", list(MODELS))
def test_constant_series_gets_a_flat_forecast(name: str) -> None:
    frame = history({"flat": np.full(N, 7.5), "wave": seasonal(N)})
    model = fit(name, frame)
    fc = model.predict(frame, 6).filter(pl.col("series") == "flat")
    for col in QUANTILE_COLUMNS:
        np.testing.assert_allclose(fc[col].to_numpy(), 7.5, atol=1e-6 if name != "xgboost" else 0.05)


@pytest.mark.parametrize("name", list(MODELS))
def test_short_history_raises_not_enough_history_naming_the_series(name: str) -> None:
    frame = history({"long": seasonal(N), "tiny": seasonal(SEASON)})
    with pytest.raises(NotEnoughHistory, match=r"series tiny: needs at least \d+ points \(2 seasons"):
        fit(name, frame)


@pytest.mark.parametrize("name", list(MODELS))
def test_nan_or_off_grid_input_is_refused_with_the_fix(name: str) -> None:
    frame = history({"a": seasonal(N)})
    with pytest.raises(ValueError, match="regularize"):
        fit(name, frame.with_columns(pl.when(pl.col("y") > 57).then(float("nan")).otherwise(pl.col("y")).alias("y")))
    with pytest.raises(ValueError, match="regularize"):
        fit(name, frame.filter(pl.col("ts") != frame["ts"][100]))


@pytest.mark.parametrize("name", list(MODELS))
def test_predict_origins_equals_one_predict_per_origin(name: str) -> None:
    """The backtest's fast path gives exactly what the literal protocol gives."""
    y = {"a": seasonal(N, noise=1.0, seed=2), "b": seasonal(N, level=9, amp=3, noise=0.5, seed=3)}
    frame = history(y)
    model = fit(name, frame.head(N - 60).vstack(frame.filter(pl.col("series") == "b").head(N - 60)))
    panel = Panel.from_frame(frame, HOUR)
    origins = [np.array([N - 50, N - 31, N - 12]), np.array([N - 40, N - 12])]
    fast = model.predict_origins(panel, origins, 12)  # type: ignore[attr-defined]
    for i, name_i in enumerate(panel.names):
        for j, o in enumerate(origins[i]):
            cut = history({name_i: y[name_i][:o]})
            slow = model.predict(cut, 12).select(QUANTILE_COLUMNS).to_numpy()
            np.testing.assert_allclose(fast[i][j], slow, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(MODELS))
def test_quantiles_are_monotone_and_save_load_round_trips(name: str, tmp_path: Path) -> None:
    frame = history({"a": seasonal(N, noise=2.0, seed=4), "b": seasonal(N, level=100, amp=30, noise=5.0, seed=5)})
    model = fit(name, frame.head(N - 30).vstack(frame.filter(pl.col("series") == "b").head(N - 30)))
    fc = model.predict(frame, 24)
    q = fc.select(QUANTILE_COLUMNS).to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
    assert fc["step"].to_list() == list(range(1, 25)) * 2
    assert (
        fc.filter(pl.col("step") == 1)["ts"]
        == frame.group_by("series").agg(pl.col("ts").max()).sort("series")["ts"] + HOUR
    ).all()
    model.save(tmp_path / name)
    again = type(model).load(tmp_path / name)
    assert again.predict(frame, 24).equals(fc)


def test_xgboost_is_deterministic_for_a_seed() -> None:
    frame = history({"a": seasonal(N, noise=2.0, seed=6), "b": seasonal(N, level=20, noise=1.0, seed=7)})
    one = fit("xgboost", frame).predict(frame, 12)
    two = fit("xgboost", frame).predict(frame, 12)
    assert one.equals(two)
    other = get_model("xgboost", **{**FAST_XGB, "seed": 1, "subsample": 0.5}).fit(frame, freq=HOUR, season=SEASON)
    assert not other.predict(frame, 12).equals(one)


def test_xgboost_forecasts_unseen_series_and_beyond_its_trained_horizon() -> None:
    frame = history({"a": seasonal(N, noise=0.5, seed=8)})
    model = get_model("xgboost", **FAST_XGB, max_horizon=6).fit(frame, freq=HOUR, season=SEASON)
    fresh = history({"new": seasonal(N, level=1000, amp=200, noise=5, seed=9)})
    fc = model.predict(fresh, 15)  # cold start (scaler from its own history), 3 blocks of 6 steps
    assert fc.height == 15
    truth = seasonal(N + 15, level=1000, amp=200)[N:]
    assert np.abs(fc["p50"].to_numpy() - truth).mean() < 0.15 * 200


def test_stats_models_refuse_series_they_were_not_fitted_on() -> None:
    model = fit("ets", history({"a": seasonal(N)}))
    with pytest.raises(ValueError, match="series b: not in the training frame"):
        model.predict(history({"b": seasonal(N)}), 3)


def test_holt_winters_filter_reproduces_statsmodels() -> None:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = seasonal(N, noise=1.5, seed=10) + 0.02 * np.arange(N)
    for damped in (False, True):
        res = ExponentialSmoothing(
            y,
            trend="add",
            seasonal="add",
            seasonal_periods=SEASON,
            damped_trend=damped,
            initialization_method="heuristic",
        ).fit()
        p = res.params
        phi = p["damping_trend"] if damped else 1.0
        level, trend, season = holt_winters_filter(
            y,
            alpha=p["smoothing_level"],
            beta=p["smoothing_trend"],
            gamma=p["smoothing_seasonal"],
            phi=phi,
            l0=p["initial_level"],
            b0=p["initial_trend"],
            s0=np.asarray(p["initial_seasons"]),
        )
        fitted = np.concatenate(([p["initial_level"] + phi * p["initial_trend"]], level[:-1] + phi * trend[:-1]))
        fitted = fitted + season[: len(y)]
        np.testing.assert_allclose(fitted, res.fittedvalues, atol=1e-9)

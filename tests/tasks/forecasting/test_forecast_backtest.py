"""The backtest protocol: splits never leak the future, forecasts meet the right actuals, metrics by hand."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from forecast_helpers import HOUR, SEASON, history, seasonal
from rich.console import Console
from rich.table import Table

from tasks.forecasting import get_model
from tasks.forecasting.backtest import backtest, backtest_csv, render_backtest_table, split_index
from tasks.forecasting.base import Forecaster
from tasks.forecasting.metrics import coverage_p80, coverage_p90, mase, mase_scale, pinball, smape

N = SEASON * 10


class Spy(Forecaster):
    """Wraps a model; records the latest timestamp it is shown at fit and at every predict."""

    name: ClassVar[str] = "spy"

    def __init__(self, inner: Forecaster) -> None:
        self.inner = inner
        self.fit_max: dict[str, Any] = {}
        self.calls: list[tuple[dict[str, Any], pl.DataFrame]] = []

    def fit(self, train: pl.DataFrame, *, freq: timedelta, season: int) -> Spy:
        self.fit_max = dict(train.group_by("series").agg(pl.col("ts").max()).iter_rows())
        self.inner.fit(train, freq=freq, season=season)
        return self

    def predict(self, history: pl.DataFrame, h: int) -> pl.DataFrame:
        seen = dict(history.group_by("series").agg(pl.col("ts").max()).iter_rows())
        out = self.inner.predict(history, h)
        self.calls.append((seen, out))
        return out

    def save(self, directory: Path) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> Spy:  # pragma: no cover - not used
        raise NotImplementedError


class Oracle(Forecaster):
    """Cheats on purpose: forecasts the true values at the target times (shifted by ``shift`` steps)."""

    name: ClassVar[str] = "oracle"

    def __init__(self, truth: pl.DataFrame, shift: int = 0) -> None:
        self.truth = truth.with_columns((pl.col("ts") - timedelta(hours=shift)).alias("ts"))

    def fit(self, train: pl.DataFrame, *, freq: timedelta, season: int) -> Oracle:
        return self

    def predict(self, history: pl.DataFrame, h: int) -> pl.DataFrame:
        last = history.group_by("series").agg(pl.col("ts").max().alias("last"))
        steps = pl.DataFrame({"step": list(range(1, h + 1))}, schema={"step": pl.Int32})
        targets = last.join(steps, how="cross").with_columns(
            (pl.col("last") + pl.duration(hours=pl.col("step"))).alias("ts")
        )
        out = targets.join(self.truth, on=["series", "ts"], how="left").with_columns(pl.col("y").fill_null(0.0))
        return out.select("series", "ts", "step", *[pl.col("y").alias(c) for c in ("p10", "p50", "p90", "p99")]).sort(
            "series", "step"
        )

    def save(self, directory: Path) -> None:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> Oracle:  # pragma: no cover
        raise NotImplementedError


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return history({"a": seasonal(N, noise=1.0, seed=1), "b": seasonal(N - 20, level=9, amp=3, noise=0.4, seed=2)})


def test_splits_never_show_a_model_the_future(frame: pl.DataFrame) -> None:
    spy = Spy(get_model("seasonal_naive"))
    result = backtest(frame, [spy], horizon=6, season=SEASON)
    lengths = {"a": N, "b": N - 20}
    t0 = frame["ts"].min()
    for s, n in lengths.items():
        assert spy.fit_max[s] == t0 + (split_index(n) - 1) * HOUR  # fit saw exactly the first 80 %
    n_origins = {s: n - 6 + 1 - split_index(n) for s, n in lengths.items()}
    assert len(spy.calls) == max(n_origins.values())  # one predict per origin index
    seen_origins: dict[str, list[Any]] = {"a": [], "b": []}
    for seen, out in spy.calls:
        for s, last in seen.items():
            targets = out.filter(pl.col("series") == s)["ts"]
            assert targets.min() == last + HOUR  # forecasts start right after what it saw ...
            assert (targets > last).all()  # ... and it never saw a target
            seen_origins[s].append(last + HOUR)
    for s, n in lengths.items():  # every test origin once, in order, all inside the test part
        expected = [t0 + o * HOUR for o in range(split_index(n), n - 6 + 1)]
        assert seen_origins[s] == expected
    assert result.per_series["origins"].to_list() == [n_origins["a"], n_origins["b"]]


def test_forecasts_are_scored_against_the_actuals_at_their_target_times(frame: pl.DataFrame) -> None:
    exact = backtest(frame, [Oracle(frame)], horizon=4, season=SEASON)
    assert exact.per_series["mase"].to_list() == [0.0, 0.0]
    shifted = backtest(frame, [Oracle(frame, shift=1)], horizon=4, season=SEASON)
    assert min(shifted.per_series["mase"].to_list()) > 0.1


def test_fast_path_and_literal_protocol_give_the_same_scores(frame: pl.DataFrame) -> None:
    fast = backtest(frame, ["ets_damped"], horizon=6, season=SEASON).per_series
    slow = backtest(frame, [Spy(get_model("ets_damped"))], horizon=6, season=SEASON).per_series
    cols = ["mase", "mase_step1", "smape", "pinball", "coverage_p80", "coverage_p90"]
    np.testing.assert_allclose(fast.select(cols).to_numpy(), slow.select(cols).to_numpy(), rtol=1e-9)


def test_result_shapes_aggregates_and_json(frame: pl.DataFrame) -> None:
    gappy = frame.filter(~pl.col("ts").is_in(frame["ts"].unique().sort()[[5, 6, 7]].implode()))
    result = backtest(
        gappy, ["seasonal_naive", "theta", "xgboost"], horizon=3, params={"xgboost": {"nthread": 1, "n_estimators": 60}}
    )
    assert result.season == SEASON and result.freq == HOUR
    assert result.per_series.height == 6 and set(result.per_series["model"]) == {"seasonal_naive", "theta", "xgboost"}
    d = result.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["series"] == 2 and d["horizon"] == 3 and d["season"] == SEASON
    assert d["grid"]["interpolated"] == 6  # 3 slots in each series, counted
    for name in ("seasonal_naive", "theta", "xgboost"):
        m = d["models"][name]
        assert {"mase", "smape", "coverage_p90", "pinball", "fit_s", "predict_s"} <= set(m)
        rows = result.per_series.filter(pl.col("model") == name)
        assert m["mase"] == pytest.approx(rows["mase"].mean(), abs=1e-6)
        assert m["mase_median"] == pytest.approx(rows["mase"].median(), abs=1e-6)
    assert d["models"]["seasonal_naive"]["mase"] == pytest.approx(1.0, abs=0.35)  # test ≈ training noise


def test_model_too_short_for_its_season_is_reported_not_fatal() -> None:
    short = history({"a": seasonal(SEASON * 3, noise=0.5)})
    d = backtest(short, ["linear_trend", "ets"], horizon=6, season=SEASON * 2).to_dict()
    assert "mase" in d["models"]["linear_trend"] or "error" in d["models"]["linear_trend"]
    assert "needs at least" in d["models"]["ets"]["error"]


def test_metrics_by_hand() -> None:
    train = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 4.0])
    assert mase_scale(train, 3) == pytest.approx((0 + 0 + 1) / 3)
    assert mase_scale(train, 10) == pytest.approx(np.mean(np.abs(np.diff(train))))  # shorter than a season
    assert mase_scale(np.ones(5), 2) == 0.0
    actual = np.array([[1.0, 2.0], [3.0, 0.0]])
    point = np.array([[2.0, 2.0], [3.0, 0.0]])
    assert mase(actual, point, 0.5) == pytest.approx(0.5)
    assert math.isnan(mase(actual, point, 0.0))
    assert smape(actual, point) == pytest.approx(200 * (1 / 3) / 4)
    fc = np.stack([point - 1, point, point + 1, point + 2], axis=-1)
    loss = pinball(actual, fc)
    # errors actual - p50: [-1, 0, 0, 0]; at p10 (point-1): [0, 1, 1, 1] -> 0.1*(0+1+1+1)/4
    assert loss[0] == pytest.approx(0.075)
    assert loss[1] == pytest.approx(0.5 * 1 / 4)
    assert coverage_p80(actual, fc) == 1.0 and coverage_p90(actual, fc) == 1.0


def test_backtest_csv_reads_naive_and_offset_timestamps_and_names_bad_columns(tmp_path: Path) -> None:
    y = seasonal(N, noise=0.5, seed=3)
    ts = [f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00:00" for i in range(N)]
    naive = tmp_path / "naive.csv"
    pl.DataFrame({"when": ts, "cpu": y, "host": ["web-1"] * N}).write_csv(naive)
    d = backtest_csv(naive, "when", "cpu", horizon=6, models=["seasonal_naive", "theta"])
    assert d["series"] == 1 and set(d["models"]) == {"seasonal_naive", "theta"} and d["season"] == SEASON
    offset = tmp_path / "offset.csv"
    pl.DataFrame({"when": [t.replace(" ", "T") + "+02:00" for t in ts], "cpu": y}).write_csv(offset)
    d2 = backtest_csv(offset, "when", "cpu", horizon=6, models=["seasonal_naive"])
    assert d2["models"]["seasonal_naive"]["mase"] == d["models"]["seasonal_naive"]["mase"]
    epoch = tmp_path / "epoch.csv"
    pl.DataFrame({"t": 1_700_000_000 + 3600 * np.arange(N), "cpu": y}).write_csv(epoch)
    assert backtest_csv(epoch, "t", "cpu", horizon=6, models=["seasonal_naive"])["season"] == SEASON
    with pytest.raises(ValueError, match="column 'value' not in naive.csv"):
        backtest_csv(naive, "when", "value")
    with pytest.raises(ValueError, match="column 'host': cannot read the values as timestamps"):
        backtest_csv(naive, "host", "cpu")
    with pytest.raises(ValueError, match="column 'host': no numeric values"):
        backtest_csv(naive, "when", "host")
    table = render_backtest_table(d)
    assert isinstance(table, Table) and table.row_count == 2
    console = Console(record=True, width=140)
    console.print(table)
    assert "seasonal_naive" in console.export_text()


def test_models_are_trained_for_the_backtest_horizon(frame: pl.DataFrame) -> None:
    """A horizon past XGBoost's default 12 steps trains a 15-step direct model, not recursive blocks."""
    fast = {"nthread": 1, "n_estimators": 40}
    result = backtest(frame, ["xgboost", "seasonal_naive"], horizon=15, season=SEASON, params={"xgboost": fast})
    assert result.per_series["mase"].is_finite().all()
    model = get_model("xgboost", **fast, max_horizon=15)
    assert model.max_horizon == 15  # type: ignore[attr-defined]


def test_backtest_table_prints_model_names_and_errors_as_text() -> None:
    """An error message quoting a user's CSV (``[/x]``, ``[red]…[/red]``) is shown as written, not
    parsed as Rich markup (a stray ``[/x]`` raised MarkupError and crashed `forecast backtest`)."""
    result = {
        "series": 1,
        "horizon": 6,
        "season": 24,
        "origins": 3,
        "grid": {"freq_s": 60},
        "models": {"seasonal_naive": {"mase": 0.5}, "arima": {"error": "value '[/x]' or [red]y[/red] is bad"}},
    }
    console = Console(record=True, width=200)
    console.print(render_backtest_table(result))
    text = console.export_text()
    assert "value '[/x]' or [red]y[/red] is bad" in text

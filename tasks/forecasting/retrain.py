"""One retrain of one model lineage: backtest, register a challenger, promote it only if it wins,
and forecast with whichever model is champion afterwards.

The steps, for a group of series (one metric):

1. **Backtest** the configured model and the baselines with the project's protocol
   (``tasks.forecasting.backtest``): every model is fitted on the first 80 % of each series and
   scored on rolling origins over the last 20 %. The configured model's instance comes out of the
   backtest fitted on that 80 % — it *is* the challenger, and its held-out MASE is its score.
2. **Score the champion on the same origins**, frozen (no refit): every version is fitted on the
   first 80 % of its own, older window, so the champion's training data ends before this held-out
   part starts and the comparison is fair and leak-free.
3. **Register and decide** (``ModelRegistry.promote_if_better``); a promotion emits
   ``model.promoted``.
4. **Forecast** ``horizon`` steps from the full history with the champion (its state rolls forward
   over the recent 20 %; its parameters are not refitted, as in the backtest).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.forecasting import get_model
from tasks.forecasting.backtest import backtest, split_index
from tasks.forecasting.base import Forecaster, NotEnoughHistory
from tasks.forecasting.grid import regularize
from tasks.forecasting.panel import OriginForecaster, Panel
from tasks.forecasting.registry import ModelRegistry, PromotionDecision


class _Frozen(Forecaster):
    """A fitted model whose ``fit`` does nothing: lets the backtest score it without refitting."""

    name = "champion"

    def __init__(self, inner: Forecaster, label: str) -> None:
        self.inner = inner
        self.name = label  # type: ignore[misc]

    def fit(self, train: pl.DataFrame, *, freq: timedelta, season: int) -> Forecaster:
        return self

    def predict(self, history: pl.DataFrame, h: int) -> pl.DataFrame:
        return self.inner.predict(history, h)

    def save(self, directory: Path) -> None:  # pragma: no cover - never saved
        self.inner.save(directory)

    @classmethod
    def load(cls, directory: Path) -> Forecaster:  # pragma: no cover - never loaded
        raise NotImplementedError


class _FrozenOrigins(_Frozen):
    def predict_origins(self, panel: Panel, origins: list[np.ndarray], h: int) -> list[np.ndarray]:
        assert isinstance(self.inner, OriginForecaster)
        return self.inner.predict_origins(panel, origins, h)


def frozen(model: Forecaster, label: str) -> Forecaster:
    return _FrozenOrigins(model, label) if isinstance(model, OriginForecaster) else _Frozen(model, label)


@dataclass
class RetrainResult:
    """What one group's retrain did; the flow turns these into artifacts, events and rows."""

    name: str
    series: int
    points: int
    model: str
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # backtest summary per model
    challenger: str | None = None
    champion: str | None = None
    decision: dict[str, Any] | None = None
    forecasts: pl.DataFrame | None = None
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("forecasts")
        d["forecast_rows"] = 0 if self.forecasts is None else self.forecasts.height
        return d


def _score(summary: pl.DataFrame, model: str, key: str = "mase_mean") -> float | None:
    rows = summary.filter(pl.col("model") == model)
    if not rows.height or key not in rows.columns:
        return None
    v = rows.get_column(key)[0]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def retrain_group(
    name: str,
    history: pl.DataFrame,
    registry: ModelRegistry,
    *,
    freq: timedelta,
    horizon: int,
    model: str = "xgboost",
    baselines: list[str] | None = None,
    season: int | None = None,
    min_points: int = 96,
    min_improvement: float = 0.0,
    stride: int | None = None,
    now: datetime | None = None,
) -> RetrainResult:
    """Retrain the lineage ``name`` on ``history`` (series, ts, y); see the module docstring."""
    t0 = time.perf_counter()
    grid, _report = regularize(history, freq)
    lengths = grid.group_by("series").len()
    short = lengths.filter(pl.col("len") < max(min_points, math.ceil(horizon / 0.2) + 2))
    skipped = [f"{s}: {n} points, needs {max(min_points, math.ceil(horizon / 0.2) + 2)}" for s, n in short.iter_rows()]
    grid = grid.filter(~pl.col("series").is_in(short.get_column("series").to_list()))
    result = RetrainResult(
        name=name, series=grid.get_column("series").n_unique(), points=grid.height, model=model, skipped=skipped
    )
    if not grid.height:
        result.error = "no series with enough history"
        result.seconds = time.perf_counter() - t0
        return result

    challenger = get_model(model)
    champion_version = registry.champion(name)
    candidates: list[str | Forecaster] = [challenger, *[b for b in (baselines or []) if b != model]]
    champion_label = None
    if champion_version is not None:
        try:
            _, champion_model = registry.load(name)
            champion_label = f"champion:{champion_version.version}"
            candidates.append(frozen(champion_model, champion_label))
        except Exception as exc:  # an unreadable champion must not block retraining
            result.skipped.append(f"champion {champion_version.version} could not be loaded: {exc}")
    # Stride: score ~200 origins per series at most (protocol unchanged: same origins for all models).
    n_min = int(lengths.get_column("len").to_numpy().min())
    stride = stride or max(1, (n_min - split_index(n_min)) // 200)
    try:
        bt = backtest(grid, candidates, horizon=horizon, season=season, freq=freq, stride=stride)
    except NotEnoughHistory as exc:
        result.error = str(exc)
        result.seconds = time.perf_counter() - t0
        return result
    summary = bt.summary
    result.scores = {r["model"]: r for r in summary.to_dicts()}
    if challenger.name in bt.errors:
        result.error = f"{challenger.name}: {bt.errors[challenger.name]}"
        result.seconds = time.perf_counter() - t0
        return result
    challenger_score = _score(summary, challenger.name)
    champion_score = _score(summary, champion_label) if champion_label else None

    per_series = bt.per_series
    train_ends, train_starts = [], []
    for _key, part in grid.group_by("series", maintain_order=True):
        n = part.height
        ts = part.get_column("ts").sort()
        train_starts.append(ts[0])
        train_ends.append(ts[split_index(n) - 1])
    version = registry.register(
        name,
        challenger,
        train_start=min(train_starts),
        train_end=max(train_ends),
        score=challenger_score,
        meta={
            "series": sorted(grid.get_column("series").unique().to_list()),
            "horizon": horizon,
            "season": bt.season,
            "freq_s": freq.total_seconds(),
            "stride": stride,
            "features": getattr(challenger, "feature_names", None),
            "backtest": result.scores,
            "per_series_mase": per_series.filter(pl.col("model") == challenger.name).select("series", "mase").to_dicts()
            if per_series.height
            else [],
        },
        now=now,
    )
    result.challenger = version.version
    if challenger_score is None:
        result.error = "challenger has no finite held-out score (constant training series?)"
        decision: PromotionDecision | None = None
    else:
        decision = registry.promote_if_better(
            name,
            version.version,
            challenger_score=challenger_score,
            champion_score=champion_score,
            min_improvement=min_improvement,
            now=now,
        )
        result.decision = decision.to_dict()
    champ = registry.champion(name)
    result.champion = champ.version if champ else None
    if champ is not None:
        mv, model_obj = registry.load(name)
        try:
            result.forecasts = model_obj.predict(grid, horizon).with_columns(
                pl.lit(mv.kind).alias("model"), pl.lit(mv.version).alias("version")
            )
        except NotEnoughHistory as exc:
            result.skipped.append(f"forecast: {exc}")
    result.seconds = time.perf_counter() - t0
    return result

"""The main forecaster: one XGBoost quantile model over many series (a *global* model).

Why global: a fleet has hundreds of similar series (CPU of each node, latency of each route), each
too short and noisy to learn much alone; one model learns the shared shapes — daily cycle, spike
decay, reversion after a burst — from all of them, and a new series is forecast from day one.

**Scaling.** Each series is centred on its training median and divided by its in-sample
seasonal-naive MAE (the MASE denominator, lag-1 MAE as fallback). Two reasons: series of any
magnitude share one model, and the quantile loss summed over scaled errors weights every series as
the MASE metric does, so training optimises what the backtest measures.

**Anchoring.** Targets and level-type features are expressed relative to an *anchor*, the mean of
the last ``anchor_window`` scaled values before the origin. Trees cannot extrapolate: a model that
predicts levels fails after a level shift outside the training range, while "change from now"
transfers across levels and series. The anchor itself is also a feature, so level-dependent
behaviour (saturation near 100 % CPU) stays learnable.

**Multi-step: DIRECT, one pooled model.** Each training row is (series, origin, step k) with the
step as a feature and the target y[origin + k - 1]; the features only use y before the origin,
calendar features describe the target time. Chosen over recursive forecasting because (1) the
quantiles are learned for each horizon directly — recursion feeds back point forecasts and its
quantile spread at step 12 would be that of step 1; (2) no error accumulation over the steps;
(3) one model, not one per step, so the row budget is shared and cheap. Cost: rows × steps, which
row subsampling keeps fixed. Beyond ``max_horizon`` steps the model is applied again from the
p50 path (recursive blocks; wider horizons should be trained with a larger ``max_horizon``).

**Features** (names in :attr:`XGBoostForecaster.feature_names`): ``step``; ``lag_1..lag_L``;
``season_lag_1``/``season_lag_2`` (the value one and two seasons before the *target*) and
``season_lag_1_mean5`` (their 5-point neighbourhood mean, less noisy); rolling
``mean/std/max/min`` over the last 12 and 72 points and the last season; the anchor; target ``hour`` and
``weekday`` (no holidays). Missing ones (not enough history) are NaN, which XGBoost routes.

**Training.** ``reg:quantileerror`` with ``quantile_alpha = [0.1, 0.5, 0.9, 0.99]`` in one model,
``hist`` trees. At most ``max_rows`` (series, origin, step) rows sampled uniformly from the
training part (all of them when fewer): enough for the shapes above, and what makes 1,000
series × 30 days retrain in well under a minute. Early stopping on a time-based validation split:
the last ``val_fraction`` of each series' training part (targets there are never trained on;
rows whose origin is before the split and target after it are dropped). Quantiles are sorted per
row, so they never cross. Deterministic for a given ``seed`` (the tests check it).

**One thread by default** (``nthread=1``). Parallelism belongs to the flow, which trains groups of
series in parallel tasks; inside one fit, XGBoost's OpenMP threads spin-wait for each other, and
on a busy 2-core machine (other flows, a Prefect worker) that made a fit 3x *slower* with 2 threads
than with 1 (measured: 101 s vs 34 s for the same 120 k-row fit under load). Pass ``nthread`` for a
dedicated machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import xgboost as xgb
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from tasks.forecasting.base import QUANTILES, Forecaster, NotEnoughHistory
from tasks.forecasting.metrics import mase_scale
from tasks.forecasting.panel import Panel, forecast_frame

PREDICT_CHUNK = 400_000


def series_scaler(y: np.ndarray, season: int) -> tuple[float, float]:
    """(centre, scale) of a series: its median and its seasonal-naive MAE (fallbacks: lag-1 MAE, std, 1).

    A scale of 0 means a constant series: :class:`XGBoostForecaster` forecasts those flat.
    """
    centre = float(np.median(y))
    scale = mase_scale(y, season)
    if not scale > 0:
        scale = float(np.std(y))
    return centre, scale if scale > 1e-12 * max(1.0, abs(centre)) else 0.0


class _Stack:
    """Scaled histories concatenated into one array, with running sums and trailing maxima.

    Every feature is a gather or a difference of cumulative sums at (array, origin) positions, so
    features for millions of rows cost a few vector operations and no per-row Python.
    """

    def __init__(self, arrays: Sequence[np.ndarray], start_ms: np.ndarray, windows: Sequence[int]) -> None:
        self.lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.int64)
        self.z = np.concatenate(arrays) if arrays else np.zeros(0)
        self.cs1 = np.concatenate(([0.0], np.cumsum(self.z)))
        self.cs2 = np.concatenate(([0.0], np.cumsum(self.z * self.z)))
        self.start_ms = np.asarray(start_ms, dtype=np.int64)
        # trailing max over [i - w + 1, i]; may reach into the previous array when i - w + 1 < offset,
        # which `window_max` corrects
        self.maxes = {w: maximum_filter1d(self.z, size=w, origin=(w - 1) // 2, mode="nearest") for w in set(windows)}
        self.mins = {w: minimum_filter1d(self.z, size=w, origin=(w - 1) // 2, mode="nearest") for w in set(windows)}

    def window_mean(self, g: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Mean of z[lo:g] (global indices, lo < g)."""
        return (self.cs1[g] - self.cs1[lo]) / (g - lo)

    def window_std(self, g: np.ndarray, lo: np.ndarray) -> np.ndarray:
        n = g - lo
        mean = (self.cs1[g] - self.cs1[lo]) / n
        return np.sqrt(np.maximum((self.cs2[g] - self.cs2[lo]) / n - mean * mean, 0.0))

    def window_max(self, g: np.ndarray, lo: np.ndarray, w: int) -> np.ndarray:
        out = self.maxes[w][g - 1]
        short = np.flatnonzero(g - lo < w)  # window clipped at the array start: computed directly
        for r in short:
            out[r] = self.z[lo[r] : g[r]].max()
        return out

    def window_min(self, g: np.ndarray, lo: np.ndarray, w: int) -> np.ndarray:
        out = self.mins[w][g - 1]
        for r in np.flatnonzero(g - lo < w):
            out[r] = self.z[lo[r] : g[r]].min()
        return out


class XGBoostForecaster(Forecaster):
    """Global direct multi-horizon quantile XGBoost model (see the module docstring)."""

    name: ClassVar[str] = "xgboost"

    def __init__(
        self,
        *,
        max_horizon: int = 12,
        n_lags: int = 24,
        windows: Sequence[int] = (12, 72),
        anchor_window: int = 3,
        max_rows: int = 120_000,
        val_fraction: float = 0.1,
        n_estimators: int = 400,
        learning_rate: float = 0.1,
        max_depth: int = 6,
        min_child_weight: float = 20.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.9,
        max_bin: int = 64,
        early_stopping_rounds: int = 25,
        seed: int = 0,
        nthread: int | None = None,
    ) -> None:
        self.params: dict[str, Any] = {
            "max_horizon": max_horizon,
            "n_lags": n_lags,
            "windows": [int(w) for w in windows],
            "anchor_window": anchor_window,
            "max_rows": max_rows,
            "val_fraction": val_fraction,
            "n_estimators": n_estimators,
            "learning_rate": learning_rate,
            "max_depth": max_depth,
            "min_child_weight": min_child_weight,
            "subsample": subsample,
            "colsample_bytree": colsample_bytree,
            "max_bin": max_bin,
            "early_stopping_rounds": early_stopping_rounds,
            "seed": seed,
            "nthread": nthread or 1,
        }
        self.freq_ms = 0
        self.season = 1
        self.scalers: dict[str, tuple[float, float]] = {}
        self.booster: xgb.Booster | None = None
        self.best_iteration = 0
        self.train_info: dict[str, Any] = {}

    # -- features ---------------------------------------------------------------------------
    @property
    def max_horizon(self) -> int:
        return int(self.params["max_horizon"])

    def _windows(self) -> list[int]:
        return sorted({*(int(w) for w in self.params["windows"]), max(2, self.season)})

    @property
    def feature_names(self) -> list[str]:
        names = ["step", "anchor"]
        names += [f"lag_{j}" for j in range(1, int(self.params["n_lags"]) + 1)]
        names += ["season_lag_1", "season_lag_2", "season_lag_1_mean5"]
        for w in self._windows():
            names += [f"rolling_mean_{w}", f"rolling_std_{w}", f"rolling_max_{w}", f"rolling_min_{w}"]
        names += ["hour", "weekday"]
        return names

    def min_points(self) -> int:
        return max(2 * self.season, int(self.params["n_lags"]) + self.max_horizon + 2)

    def _features(
        self, stack: _Stack, arr: np.ndarray, origin: np.ndarray, step: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feature matrix (float32) and anchor for rows (array index, origin, step); uses z[:origin] only."""
        n_rows = len(arr)
        m = self.season
        base = stack.offsets[arr]
        g = base + origin  # global index of the first unseen point
        t = origin + step - 1  # target position within its array
        aw = np.minimum(int(self.params["anchor_window"]), origin)
        anchor = stack.window_mean(g, g - aw)
        cols: list[np.ndarray] = [step.astype(np.float64), anchor]
        for j in range(1, int(self.params["n_lags"]) + 1):
            cols.append(np.where(origin >= j, stack.z[np.maximum(g - j, 0)] - anchor, np.nan))
        for mult in (1, 2):
            p = t - mult * m
            ok = (p >= 0) & (p < origin)
            cols.append(np.where(ok, stack.z[base + np.clip(p, 0, None)] - anchor, np.nan))
        p = t - m
        lo = np.clip(p - 2, 0, None)
        hi = np.minimum(p + 3, origin)
        ok = (p >= 0) & (hi > lo)
        safe_hi = np.where(ok, hi, lo + 1)
        cols.append(np.where(ok, stack.window_mean(base + safe_hi, base + lo) - anchor, np.nan))
        for w in self._windows():
            lo_w = g - np.minimum(w, origin)
            cols.append(stack.window_mean(g, lo_w) - anchor)
            cols.append(stack.window_std(g, lo_w))
            cols.append(stack.window_max(g, lo_w, w) - anchor)
            cols.append(stack.window_min(g, lo_w, w) - anchor)
        ts = stack.start_ms[arr] + t * self.freq_ms
        minutes = ts // 60_000
        cols.append(((minutes % 1440) / 60.0).astype(np.float64))
        cols.append((((ts // 86_400_000) + 3) % 7).astype(np.float64))  # 1970-01-01 was a Thursday; Monday = 0
        x = np.empty((n_rows, len(cols)), dtype=np.float32)
        for c, col in enumerate(cols):
            x[:, c] = col
        return x, anchor

    # -- training ---------------------------------------------------------------------------
    def _rows(
        self, lengths: np.ndarray, lo: np.ndarray, hi: np.ndarray, limit: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(array, origin, step) rows with lo[i] <= origin and origin + step - 1 < hi[i]; all, or ``limit`` sampled."""
        big_h = self.max_horizon
        steps = np.arange(1, big_h + 1)
        per_step = np.maximum(hi[:, None] - steps[None, :] + 1 - lo[:, None], 0)  # origins per (series, step)
        total = int(per_step.sum())
        if total == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        if total <= limit:
            arrs, origins, ks = [], [], []
            for i in np.flatnonzero(per_step.sum(axis=1)):
                for k in steps:
                    o = np.arange(lo[i], hi[i] - k + 1)
                    arrs.append(np.full(len(o), i))
                    origins.append(o)
                    ks.append(np.full(len(o), k))
            return np.concatenate(arrs), np.concatenate(origins), np.concatenate(ks)
        flat = per_step.ravel().astype(np.float64)
        cell = rng.choice(len(flat), size=limit, p=flat / flat.sum())
        arr, kidx = np.divmod(cell, big_h)
        origin = lo[arr] + np.floor(rng.random(limit) * per_step[arr, kidx]).astype(np.int64)
        order = np.lexsort((kidx, origin, arr))  # row order does not matter to XGBoost; locality helps the gathers
        return arr[order], origin[order], (kidx + 1)[order]

    def fit(self, train: pl.DataFrame, *, freq: timedelta, season: int) -> XGBoostForecaster:
        panel = Panel.from_frame(train, freq)
        self.freq_ms = panel.freq_ms
        self.season = max(1, int(season))
        need = self.min_points()
        for name, v in zip(panel.names, panel.values, strict=True):
            if len(v) < need:
                raise NotEnoughHistory(
                    f"series {name}: needs at least {need} points (2 seasons of {self.season}), has {len(v)}"
                )
        if not panel.names:
            raise NotEnoughHistory("no series to train on")
        self.scalers = {n: series_scaler(v, self.season) for n, v in zip(panel.names, panel.values, strict=True)}
        keep = [i for i, n in enumerate(panel.names) if self.scalers[n][1] > 0]  # constant series teach nothing
        if not keep:
            self.booster = xgb.train({"objective": "reg:squarederror", "nthread": 1}, xgb.DMatrix(np.zeros((1, 1))), 0)
            self.train_info = {"series": len(panel.names), "train_rows": 0, "val_rows": 0, "best_iteration": 0}
            return self
        names_kept = [panel.names[i] for i in keep]
        scaled = [
            (panel.values[i] - self.scalers[n][0]) / self.scalers[n][1] for i, n in zip(keep, names_kept, strict=True)
        ]
        stack = _Stack(scaled, panel.start_ms[keep], self._windows())
        rng = np.random.default_rng(int(self.params["seed"]))
        lengths = stack.lengths
        o_min = np.minimum(np.maximum(self.season, int(self.params["n_lags"])), lengths // 2)
        val_len = np.maximum(np.round(lengths * float(self.params["val_fraction"])).astype(np.int64), self.max_horizon)
        cut = lengths - val_len
        tr = self._rows(lengths, o_min, cut, int(self.params["max_rows"]), rng)
        va = self._rows(lengths, np.maximum(cut, o_min), lengths, max(1, int(self.params["max_rows"]) // 5), rng)
        if len(tr[0]) == 0:
            raise NotEnoughHistory(f"too little history to train on: longest series has {int(lengths.max())} points")

        def matrix(rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            x, anchor = self._features(stack, *rows)
            y = stack.z[stack.offsets[rows[0]] + rows[1] + rows[2] - 1] - anchor
            return x, y.astype(np.float32)

        x_tr, y_tr = matrix(tr)
        booster_params = {
            "objective": "reg:quantileerror",
            "quantile_alpha": np.array(QUANTILES),
            "tree_method": "hist",
            "max_depth": self.params["max_depth"],
            "learning_rate": self.params["learning_rate"],
            "min_child_weight": self.params["min_child_weight"],
            "subsample": self.params["subsample"],
            "colsample_bytree": self.params["colsample_bytree"],
            "max_bin": self.params["max_bin"],
            "seed": self.params["seed"],
            "nthread": self.params["nthread"],
        }
        names = self.feature_names
        dtrain = xgb.QuantileDMatrix(x_tr, y_tr, feature_names=names, max_bin=int(self.params["max_bin"]))
        evals: list[tuple[xgb.DMatrix, str]] = [(dtrain, "train")]
        early = None
        if len(va[0]):
            x_va, y_va = matrix(va)
            evals = [(xgb.DMatrix(x_va, y_va, feature_names=names), "val")]
            early = int(self.params["early_stopping_rounds"])
        booster = xgb.train(
            booster_params,
            dtrain,
            num_boost_round=int(self.params["n_estimators"]),
            evals=evals,
            early_stopping_rounds=early,
            verbose_eval=False,
        )
        self.best_iteration = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
        self.booster = booster[: self.best_iteration + 1]
        self.train_info = {
            "series": len(panel.names),
            "train_rows": len(tr[0]),
            "val_rows": len(va[0]),
            "best_iteration": self.best_iteration,
            "xgboost": xgb.__version__,
        }
        return self

    # -- prediction -------------------------------------------------------------------------
    def _scaler(self, name: str, values: np.ndarray) -> tuple[float, float]:
        """The fitted scaler; for a series unseen at fit, one from its own history (a cold start)."""
        if name in self.scalers:
            return self.scalers[name]
        if len(values) < self.min_points():
            raise NotEnoughHistory(
                f"series {name}: needs at least {self.min_points()} points "
                f"(2 seasons of {self.season}), has {len(values)}"
            )
        return series_scaler(values, self.season)

    def _predict_rows(self, stack: _Stack, arr: np.ndarray, origin: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Sorted scaled quantiles ``(rows, n_quantiles)`` for (array, origin, step) rows, anchor added back."""
        if self.booster is None:
            raise RuntimeError("xgboost model is not fitted")
        out = np.empty((len(arr), len(QUANTILES)))
        for a in range(0, len(arr), PREDICT_CHUNK):
            sl = slice(a, a + PREDICT_CHUNK)
            x, anchor = self._features(stack, arr[sl], origin[sl], step[sl])
            pred = self.booster.inplace_predict(x).reshape(len(x), -1)
            out[sl] = np.sort(pred, axis=1) + anchor[:, None]
        return out

    def _forecast(
        self, names: list[str], arrays: list[np.ndarray], start_ms: np.ndarray, origins: list[np.ndarray], h: int
    ) -> list[np.ndarray]:
        scalers = [self._scaler(n, a) for n, a in zip(names, arrays, strict=True)]
        for n, a, o in zip(names, arrays, origins, strict=True):
            if len(o) and int(np.min(o)) < 1:
                raise NotEnoughHistory(f"series {n}: forecast origin {int(np.min(o))} has no history, needs >= 1 point")
            if len(o) and int(np.max(o)) > len(a):
                raise ValueError(f"series {n}: origin beyond the history")
        flat = [s == 0.0 for _, s in scalers]
        if any(flat):  # constant series (nothing to learn, division by a zero scale): flat at the last value
            rest = [i for i, f in enumerate(flat) if not f]
            sub = (
                self._forecast(
                    [names[i] for i in rest], [arrays[i] for i in rest], start_ms[rest], [origins[i] for i in rest], h
                )
                if rest
                else []
            )
            out_all: list[np.ndarray] = []
            it = iter(sub)
            for i, f in enumerate(flat):
                if f:
                    last = arrays[i][np.asarray(origins[i], dtype=np.int64) - 1]
                    out_all.append(np.broadcast_to(last[:, None, None], (len(last), h, len(QUANTILES))).copy())
                else:
                    out_all.append(next(it))
            return out_all
        if h > self.max_horizon:
            return [
                self._forecast_blocks(n, a, s, o, h, sc)
                for n, a, s, o, sc in zip(names, arrays, start_ms, origins, scalers, strict=True)
            ]
        scaled = [(a - c) / s for a, (c, s) in zip(arrays, scalers, strict=True)]
        stack = _Stack(scaled, start_ms, self._windows())
        counts = np.array([len(o) for o in origins])
        arr = np.repeat(np.repeat(np.arange(len(arrays)), counts), h)
        origin = np.repeat(np.concatenate(origins).astype(np.int64) if len(origins) else np.zeros(0, np.int64), h)
        step = np.tile(np.arange(1, h + 1), int(counts.sum()))
        q = self._predict_rows(stack, arr, origin, step).reshape(-1, h, len(QUANTILES))
        out, at = [], 0
        for (c, s), cnt in zip(scalers, counts, strict=True):
            out.append(q[at : at + cnt] * s + c)
            at += cnt
        return out

    def _forecast_blocks(
        self, name: str, values: np.ndarray, start: int, origins: np.ndarray, h: int, scaler: tuple[float, float]
    ) -> np.ndarray:
        """h > max_horizon: direct blocks of ``max_horizon`` steps, each from the previous blocks' p50 path."""
        big_h = self.max_horizon
        out = np.empty((len(origins), h, len(QUANTILES)))
        p50 = QUANTILES.index(0.5)
        for r, o in enumerate(origins):
            path = values[: int(o)].copy()
            done = 0
            while done < h:
                k = min(big_h, h - done)
                block = self._forecast([name], [path], np.array([start]), [np.array([len(path)])], k)[0][0]
                out[r, done : done + k] = block
                path = np.concatenate((path, block[:, p50]))
                done += k
        return out

    def predict(self, history: pl.DataFrame, h: int) -> pl.DataFrame:
        panel = Panel.from_frame(history, timedelta(milliseconds=self._freq()))
        q = self.predict_origins(panel, [np.array([len(v)]) for v in panel.values], h)
        arr = np.stack([x[0] for x in q]) if q else np.zeros((0, h, len(QUANTILES)))
        last = np.array([panel.end_ms(i) for i in range(len(panel.names))], dtype=np.int64)
        return forecast_frame(panel.names, last, panel.freq_ms, arr)

    def predict_origins(self, panel: Panel, origins: list[np.ndarray], h: int) -> list[np.ndarray]:
        self._freq()
        return self._forecast(
            panel.names, panel.values, panel.start_ms, [np.asarray(o, dtype=np.int64) for o in origins], h
        )

    def _freq(self) -> int:
        if not self.freq_ms or self.booster is None:
            raise RuntimeError("xgboost model is not fitted")
        return self.freq_ms

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        if self.booster is None:
            raise RuntimeError("xgboost model is not fitted")
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(directory / "model.ubj")
        meta = {
            "model": self.name,
            "params": self.params,
            "freq_ms": self.freq_ms,
            "season": self.season,
            "best_iteration": self.best_iteration,
            "feature_names": self.feature_names,
            "scalers": self.scalers,
            "train_info": self.train_info,
        }
        (directory / "model.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> XGBoostForecaster:
        meta = json.loads((directory / "model.json").read_text())
        if meta["model"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['model']} model, not {cls.name}")
        model = cls(**meta["params"])
        model.freq_ms, model.season = int(meta["freq_ms"]), int(meta["season"])
        model.best_iteration = int(meta["best_iteration"])
        model.scalers = {k: (float(v[0]), float(v[1])) for k, v in meta["scalers"].items()}
        model.train_info = meta["train_info"]
        booster = xgb.Booster()
        booster.load_model(directory / "model.ubj")
        booster.set_param({"nthread": model.params["nthread"]})
        model.booster = booster
        return model

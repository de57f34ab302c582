"""Statistical baselines — seasonal naive, Holt-Winters (additive, damped), Theta, STL + ETS, linear trend.

Every XGBoost result is read against these, so they are implemented to be fair, not to be beaten:
each is fitted per series on the training part with statsmodels, then *frozen*.

How a frozen model forecasts from a later origin: statsmodels estimates the parameters (smoothing
constants, initial states, drift, seasonal profile); the state recursions are then run here, in a
few lines of numpy/Python, over the whole history with those fixed parameters (the Holt-Winters
recursion reproduces statsmodels' ``fittedvalues`` to 1e-13 — a test checks it). Why not
``results.append(..., refit=False)``: it re-creates a results object per call, which at a few
hundred origins per series is seconds per series; one filter pass gives the state at *every*
origin, so the rolling-origin backtest costs one pass per series (:meth:`predict_origins`).

The model keeps its training values so that ``predict(history)`` accepts any history that starts at
or after the training start (the gap is filled from the training values) — the filter always starts
from the fitted initial state at the training start.

Quantiles, uniform across baselines: the point forecast plus empirical quantiles of the model's own
in-sample k-step errors (forecasts from origins inside the training part, by step k). Uniform
because ETS, Theta and STL have different (and for Theta/STL, no closed-form) interval formulas, and
because the same recipe lets coverage compare models rather than interval formulas. In-sample
errors of fitted parameters are a little optimistic; the backtest's coverage figures show by how
much. Beyond the longest step estimated (``max_horizon``) the last step's spread grows with √k.

Short series raise :class:`NotEnoughHistory` (two seasons needed); a constant training series gets a
flat forecast at the last observed value with zero-width intervals, never a statsmodels error.
"""

from __future__ import annotations

import json
import math
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from tasks.forecasting.base import QUANTILES, Forecaster, NotEnoughHistory
from tasks.forecasting.panel import Panel, forecast_frame

#: Fewest in-sample errors a step needs before its quantiles are trusted; fewer → grown from a shorter step.
MIN_RESIDUALS = 8


@dataclass
class SeriesFit:
    """One series' frozen model: where training started, its values, parameters and error quantiles."""

    start_ms: int
    train: np.ndarray
    params: dict[str, Any]
    offsets: np.ndarray  # (max_horizon, n_quantiles): quantile of (actual - point) per step
    constant: bool


def _phi_sums(phi: float, h: int) -> np.ndarray:
    """φ + φ² + … + φ^k for k = 1..h (k itself when φ = 1)."""
    return np.cumsum(phi ** np.arange(1, h + 1))


def holt_winters_filter(
    y: np.ndarray, *, alpha: float, beta: float, gamma: float, phi: float, l0: float, b0: float, s0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Additive Holt-Winters states after each observation (statsmodels' parametrisation).

    Returns ``level[t]``, ``trend[t]`` after absorbing ``y[t]`` and ``season`` with ``season[j + m]``
    the seasonal state s_j (``season[:m]`` the initial ones, ``m = len(s0)``; ``m = 0`` is Holt's
    method without a season). A plain loop: the recursion is sequential, and at a few thousand
    points per series it costs milliseconds.
    """
    n = len(y)
    m = len(s0)
    level = np.empty(n)
    trend = np.empty(n)
    season = np.empty(m + n)
    season[:m] = s0
    lv, tr = float(l0), float(b0)
    yl = y.tolist()
    if m:
        for t in range(n):
            sm = season[t]
            damped = phi * tr
            new_l = alpha * (yl[t] - sm) + (1 - alpha) * (lv + damped)
            tr = beta * (new_l - lv) + (1 - beta) * damped
            season[t + m] = gamma * (yl[t] - lv - damped) + (1 - gamma) * sm
            lv = new_l
            level[t] = lv
            trend[t] = tr
    else:
        for t in range(n):
            damped = phi * tr
            new_l = alpha * yl[t] + (1 - alpha) * (lv + damped)
            tr = beta * (new_l - lv) + (1 - beta) * damped
            lv = new_l
            level[t] = lv
            trend[t] = tr
    return level, trend, season


def _hw_forecast(
    level: np.ndarray, trend: np.ndarray, season: np.ndarray, m: int, phi: float, origins: np.ndarray, h: int
) -> np.ndarray:
    """Forecasts ``(len(origins), h)`` from the states after ``y[o-1]`` for each origin ``o``."""
    t = origins - 1
    k = np.arange(1, h + 1)
    out = level[t, None] + _phi_sums(phi, h)[None, :] * trend[t, None]
    if m:
        idx = t[:, None] + k[None, :] - m * ((k[None, :] - 1) // m + 1) + m
        out = out + season[idx]
    return out


def _quiet_fit(fn: Any) -> Any:
    """Run a statsmodels fit with its convergence chatter silenced (the result is checked instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


class StatsForecaster(Forecaster):
    """Per-series frozen statistical model; subclasses supply the fit and the point forecasts."""

    def __init__(self, *, max_horizon: int = 48, residual_origins: int = 600) -> None:
        self.max_horizon = max_horizon
        self.residual_origins = residual_origins
        self.freq_ms = 0
        self.season = 1
        self.fits: dict[str, SeriesFit] = {}

    # -- what a subclass defines --------------------------------------------------------------
    @abstractmethod
    def fit_series(self, y: np.ndarray, season: int) -> dict[str, Any]:
        """Frozen parameters for one (non-constant) training series."""

    @abstractmethod
    def point_forecasts(self, params: dict[str, Any], y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        """``(len(origins), h)`` point forecasts, each from ``y[:o]`` only (positions from training start)."""

    def min_points(self, season: int) -> int:
        return max(2 * season, 4)

    # -- the Forecaster interface -------------------------------------------------------------
    def fit(self, train: pl.DataFrame, *, freq: timedelta, season: int) -> StatsForecaster:
        panel = Panel.from_frame(train, freq)
        self.freq_ms = panel.freq_ms
        self.season = max(1, int(season))
        need = self.min_points(self.season)
        fits: dict[str, SeriesFit] = {}
        for i, name in enumerate(panel.names):
            y = panel.values[i]
            if len(y) < need:
                raise NotEnoughHistory(
                    f"series {name}: needs at least {need} points (2 seasons of {self.season}), has {len(y)}"
                )
            constant = bool(np.ptp(y) <= 1e-12 * max(1.0, abs(float(y[0]))))
            params = {} if constant else self.fit_series(y, self.season)
            fit = SeriesFit(int(panel.start_ms[i]), y.copy(), params, np.zeros((0, len(QUANTILES))), constant)
            fit.offsets = self._residual_offsets(fit)
            fits[name] = fit
        self.fits = fits
        return self

    def predict(self, history: pl.DataFrame, h: int) -> pl.DataFrame:
        panel = Panel.from_frame(history, timedelta(milliseconds=self._freq_ms()))
        out = self.predict_origins(panel, [np.array([len(v)]) for v in panel.values], h)
        q = np.stack([o[0] for o in out]) if out else np.zeros((0, h, len(QUANTILES)))
        last = np.array([panel.end_ms(i) for i in range(len(panel.names))], dtype=np.int64)
        return forecast_frame(panel.names, last, panel.freq_ms, q)

    def predict_origins(self, panel: Panel, origins: list[np.ndarray], h: int) -> list[np.ndarray]:
        self._freq_ms()
        out = []
        for i, name in enumerate(panel.names):
            fit = self.fits.get(name)
            if fit is None:
                raise ValueError(f"series {name}: not in the training frame of this {self.name} model; retrain")
            y, shift = self._aligned(fit, name, int(panel.start_ms[i]), panel.values[i])
            o = np.asarray(origins[i], dtype=np.int64) + shift
            if o.size and o.min() < 1:
                raise NotEnoughHistory(f"series {name}: forecast origin before the training start")
            out.append(self._quantiles(fit, self._points(fit, y, o, h)))
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        names = list(self.fits)
        meta = {
            "model": self.name,
            "freq_ms": self.freq_ms,
            "season": self.season,
            "max_horizon": self.max_horizon,
            "residual_origins": self.residual_origins,
            "series": [
                {"name": n, "start_ms": f.start_ms, "constant": f.constant, "params": f.params}
                for n, f in self.fits.items()
            ],
        }
        (directory / "model.json").write_text(json.dumps(meta))
        arrays = {f"train_{i}": self.fits[n].train for i, n in enumerate(names)}
        arrays |= {f"offsets_{i}": self.fits[n].offsets for i, n in enumerate(names)}
        np.savez(directory / "arrays.npz", **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: Path) -> StatsForecaster:
        meta = json.loads((directory / "model.json").read_text())
        if meta["model"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['model']} model, not {cls.name}")
        model = cls(max_horizon=meta["max_horizon"], residual_origins=meta["residual_origins"])
        model.freq_ms, model.season = int(meta["freq_ms"]), int(meta["season"])
        with np.load(directory / "arrays.npz") as arrays:
            for i, s in enumerate(meta["series"]):
                model.fits[s["name"]] = SeriesFit(
                    int(s["start_ms"]), arrays[f"train_{i}"], s["params"], arrays[f"offsets_{i}"], bool(s["constant"])
                )
        return model

    # -- shared machinery ---------------------------------------------------------------------
    def _freq_ms(self) -> int:
        if not self.freq_ms:
            raise RuntimeError(f"{self.name} model is not fitted")
        return self.freq_ms

    def _aligned(self, fit: SeriesFit, name: str, start_ms: int, values: np.ndarray) -> tuple[np.ndarray, int]:
        """History on positions counted from the training start, and the shift from history positions."""
        delta = start_ms - fit.start_ms
        if delta % self.freq_ms:
            raise ValueError(f"series {name}: history is off the training grid by {delta % self.freq_ms} ms")
        p0 = delta // self.freq_ms
        if p0 > len(fit.train):
            raise ValueError(
                f"series {name}: history starts {p0 - len(fit.train)} steps after the training data ends; "
                "pass the history since the training end"
            )
        if p0 >= 0:
            return np.concatenate((fit.train[:p0], values)), p0
        return values[-p0:], p0

    def _points(self, fit: SeriesFit, y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        if fit.constant:
            return np.repeat(y[origins - 1, None], h, axis=1)
        return self.point_forecasts(fit.params, y, origins, h)

    def _residual_offsets(self, fit: SeriesFit) -> np.ndarray:
        y = fit.train
        n, big_h = len(y), self.max_horizon
        q = np.array(QUANTILES)
        if fit.constant:
            return np.zeros((big_h, len(q)))
        lo = max(1, min(2 * self.season, n // 2))
        stride = max(1, (n - lo) // self.residual_origins)
        origins = np.arange(lo, n, stride)
        points = self._points(fit, y, origins, big_h)
        targets = origins[:, None] + np.arange(big_h)[None, :]
        actual = np.where(targets < n, y[np.minimum(targets, n - 1)], np.nan)
        errors = actual - points
        counts = np.sum(np.isfinite(errors), axis=0)
        offsets = np.zeros((big_h, len(q)))
        good = counts >= MIN_RESIDUALS
        if good.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                offsets[good] = np.nanquantile(errors[:, good], q, axis=0).T
            last = int(np.flatnonzero(good)[0])
            for k in range(big_h):  # steps without enough errors: grow the last trusted one by √k
                if good[k]:
                    last = k
                else:
                    offsets[k] = offsets[last] * math.sqrt((k + 1) / (last + 1))
        return offsets

    def _quantiles(self, fit: SeriesFit, points: np.ndarray) -> np.ndarray:
        h = points.shape[1]
        offsets = fit.offsets
        if h > len(offsets):
            k = np.arange(len(offsets) + 1, h + 1)
            grow = offsets[-1][None, :] * np.sqrt(k / len(offsets))[:, None]
            offsets = np.concatenate((offsets, grow))
        return np.sort(points[:, :, None] + offsets[None, :h, :], axis=2)


class SeasonalNaive(StatsForecaster):
    """y[t] forecast by the value one season earlier (the last observed cycle, repeated).

    The reference every MASE is scaled by; also the strongest simple baseline at minute-level
    infrastructure data, where ETS with a 288-step season is hard to estimate well.
    """

    name: ClassVar[str] = "seasonal_naive"

    def fit_series(self, y: np.ndarray, season: int) -> dict[str, Any]:
        return {}

    def min_points(self, season: int) -> int:
        return max(season + 1, 2)

    def point_forecasts(self, params: dict[str, Any], y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        m = self.season
        k = np.arange(1, h + 1)
        back = m * ((k - 1) // m + 1)  # m for k <= m, 2m for m < k <= 2m, ...
        idx = origins[:, None] + (k - 1)[None, :] - back[None, :]
        return y[np.maximum(idx, 0)]


class HoltWinters(StatsForecaster):
    """Additive Holt-Winters (level, trend, additive season) — ``ets``; ``ets_damped`` damps the trend.

    Initial states by statsmodels' heuristic (a decomposition of the first cycles), smoothing
    constants by likelihood: estimating 288 initial seasonal states by optimisation is slow and
    over-fits two weeks of data.
    """

    name: ClassVar[str] = "ets"
    damped: ClassVar[bool] = False

    def fit_series(self, y: np.ndarray, season: int) -> dict[str, Any]:
        # lazy: statsmodels costs 3.4 s to import (fresh-process timing, 2026-12-07); only these
        # baselines need it: the XGBoost path and the CLI commands that import the registry never do.
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        seasonal = season >= 2
        res = _quiet_fit(
            lambda: ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=self.damped,
                seasonal="add" if seasonal else None,
                seasonal_periods=season if seasonal else None,
                initialization_method="heuristic" if seasonal else "estimated",
            ).fit()
        )
        p = res.params
        phi = float(p["damping_trend"]) if self.damped else 1.0
        return {
            "alpha": float(p["smoothing_level"]),
            "beta": float(p["smoothing_trend"]),
            "gamma": float(p["smoothing_seasonal"]) if seasonal else 0.0,
            "phi": phi,
            "l0": float(p["initial_level"]),
            "b0": float(p["initial_trend"]),
            "s0": [float(v) for v in np.asarray(p["initial_seasons"])] if seasonal else [],
        }

    def point_forecasts(self, params: dict[str, Any], y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        s0 = np.asarray(params["s0"], dtype=np.float64)
        stop = int(origins.max())
        level, trend, season = holt_winters_filter(
            y[:stop],
            alpha=params["alpha"],
            beta=params["beta"],
            gamma=params["gamma"],
            phi=params["phi"],
            l0=params["l0"],
            b0=params["b0"],
            s0=s0,
        )
        return _hw_forecast(level, trend, season, len(s0), params["phi"], origins, h)


class HoltWintersDamped(HoltWinters):
    """Additive Holt-Winters with a damped trend: safer than ``ets`` when a trend does not last."""

    name: ClassVar[str] = "ets_damped"
    damped: ClassVar[bool] = True


def _phase_profile(values: np.ndarray, positions: np.ndarray, m: int) -> np.ndarray:
    """Mean of ``values`` per phase ``position mod m``, centred to sum to zero."""
    profile = np.bincount(positions % m, weights=values, minlength=m) / np.maximum(
        np.bincount(positions % m, minlength=m), 1
    )
    return profile - profile.mean()


class Theta(StatsForecaster):
    """The Theta method (Assimakopoulos & Nikolopoulos; statsmodels' ``ThetaModel``, θ = 2).

    Additive deseasonalisation by the classical decomposition's seasonal indices (additive, not
    statsmodels' default multiplicative: CPU and request counts touch zero), then simple
    exponential smoothing plus half the linear drift — the combination that won the M3 competition.
    """

    name: ClassVar[str] = "theta"

    def fit_series(self, y: np.ndarray, season: int) -> dict[str, Any]:
        from statsmodels.tsa.forecasting.theta import ThetaModel  # lazy: statsmodels 3.4 s (see ETS)
        from statsmodels.tsa.seasonal import seasonal_decompose

        pos = np.arange(len(y))
        if season >= 2:
            dec = _quiet_fit(lambda: seasonal_decompose(y, period=season, model="additive"))
            profile = _phase_profile(np.asarray(dec.seasonal), pos, season)
        else:
            profile = np.zeros(1)
        x = y - profile[pos % len(profile)]
        res = _quiet_fit(lambda: ThetaModel(x, period=1, deseasonalize=False).fit())
        alpha = float(np.clip(res.params["alpha"], 1e-3, 1.0))
        return {"alpha": alpha, "b0": float(res.params["b0"]), "profile": [float(v) for v in profile]}

    def point_forecasts(self, params: dict[str, Any], y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        profile = np.asarray(params["profile"])
        m = len(profile)
        alpha, b0 = params["alpha"], params["b0"]
        stop = int(origins.max())
        x = y[:stop] - profile[np.arange(stop) % m]
        level, _, _ = holt_winters_filter(x, alpha=alpha, beta=0.0, gamma=0.0, phi=0.0, l0=x[0], b0=0.0, s0=np.zeros(0))
        k = np.arange(1, h + 1)
        drift = 0.5 * b0 * (k[None, :] - 1 + (1 - (1 - alpha) ** origins[:, None]) / alpha)
        return level[origins - 1, None] + drift + profile[(origins[:, None] + k[None, :] - 1) % m]


class STLETS(StatsForecaster):
    """STL decomposition, then a damped-trend ETS on the seasonally adjusted series (R's ``stlf``).

    The seasonal profile is STL's last cycle, kept fixed (as ``STLForecast`` does); the ETS state
    rolls forward over the adjusted history. Non-robust STL: the robust variant is 6x slower and
    the spikes it guards against are exactly what the ETS level smooths over anyway.
    """

    name: ClassVar[str] = "stl_ets"

    def fit_series(self, y: np.ndarray, season: int) -> dict[str, Any]:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing  # lazy: statsmodels 3.4 s (see ETS)
        from statsmodels.tsa.seasonal import STL

        n = len(y)
        pos = np.arange(n)
        if season >= 2:
            seasonal = np.asarray(_quiet_fit(lambda: STL(y, period=season).fit()).seasonal)
            last = pos[n - season :]
            profile = np.empty(season)
            profile[last % season] = seasonal[last]
        else:
            profile = np.zeros(1)
        x = y - profile[pos % len(profile)]
        res = _quiet_fit(
            lambda: ExponentialSmoothing(x, trend="add", damped_trend=True, initialization_method="estimated").fit()
        )
        p = res.params
        return {
            "alpha": float(p["smoothing_level"]),
            "beta": float(p["smoothing_trend"]),
            "phi": float(p["damping_trend"]),
            "l0": float(p["initial_level"]),
            "b0": float(p["initial_trend"]),
            "profile": [float(v) for v in profile],
        }

    def point_forecasts(self, params: dict[str, Any], y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        profile = np.asarray(params["profile"])
        m = len(profile)
        stop = int(origins.max())
        x = y[:stop] - profile[np.arange(stop) % m]
        level, trend, season = holt_winters_filter(
            x,
            alpha=params["alpha"],
            beta=params["beta"],
            gamma=0.0,
            phi=params["phi"],
            l0=params["l0"],
            b0=params["b0"],
            s0=np.zeros(0),
        )
        k = np.arange(1, h + 1)
        adjusted = _hw_forecast(level, trend, season, 0, params["phi"], origins, h)
        return adjusted + profile[(origins[:, None] + k[None, :] - 1) % m]


class LinearTrend(StatsForecaster):
    """Ordinary least squares line through the training part, extrapolated (the seed's "linear").

    Deliberately stateless: the line is fixed at fit, so later history does not move it — that is
    what a linear-trend capacity projection does, and it shows how far a pure trend gets you.
    """

    name: ClassVar[str] = "linear_trend"

    def fit_series(self, y: np.ndarray, season: int) -> dict[str, Any]:
        slope, intercept = np.polyfit(np.arange(len(y), dtype=np.float64), y, 1)
        return {"intercept": float(intercept), "slope": float(slope)}

    def min_points(self, season: int) -> int:
        return max(2 * season, 4)

    def point_forecasts(self, params: dict[str, Any], y: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        t = origins[:, None] + np.arange(h)[None, :]
        return params["intercept"] + params["slope"] * t.astype(np.float64)

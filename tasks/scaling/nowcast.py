"""A fast, causal quantile forecaster of the next few minutes of a request rate ("nowcast").

Why not the project's XGBoost or statsmodels forecasters for this: a 1–3 minute provisioning delay
needs forecasts a few minutes ahead, refreshed every minute, over months of per-minute data. Over
such a short horizon the current level explains almost everything, and what matters is an
*honest upper quantile* of the next minutes. This model is exactly that, and runs over 125 k
minutes in well under a second (numpy + polars rolling quantiles):

* **Variance-stabilised level.** Work on ``z = sqrt(y)`` (request counts are roughly Poisson, so
  their noise grows with the level; in ``sqrt`` space it is about constant — on the training
  weeks of NASA and WorldCup98 the variance of minute-to-minute changes grows as mean^1.0–1.2).
  The level is an exponentially weighted mean of the de-seasonalised ``z``; the smoothing constant
  is **chosen online** per horizon among ``alphas`` (plus two Brown trend models) as the one with
  the smallest mean absolute error over the last day of errors already known: a noisy, low-count
  trace (NASA) picks a 20-minute mean, a smooth high-count one (WorldCup98) follows the last minutes.
* **Daily profile.** The mean ``z`` per minute of the day over the *training* part (smoothed over
  ±15 minutes) is added back for the target minute, so the forecast follows the morning ramp.
* **Empirical error quantiles**, per horizon ``h``: the quantiles of the last ``window`` minutes
  of errors ``z[t+h] - zhat_h[t]`` that are already known at ``t`` (i.e. forecasts made at
  ``t-h`` or earlier). The quantile forecast is ``(zhat + q_err)²``.

Causality: the forecast issued at the end of minute ``t`` uses ``y[0..t]`` and nothing later (the
tests change the future and check the past forecasts do not move). The profile and smoothing
constant come from the training part only; the level and the error window roll forward (state,
not parameters), as the backtest protocol of ``tasks.forecasting`` allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.signal import lfilter

__all__ = ["NOWCAST_QUANTILES", "Nowcaster"]

NOWCAST_QUANTILES: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
DAY_MIN = 1440


@dataclass
class Nowcaster:
    """Seasonal profile × recent level, with empirical error quantiles (see the module docstring)."""

    alpha: float = 0.05  # the smoothing constant used until enough errors are known to choose among ``alphas``
    window: int = 3 * DAY_MIN  # minutes of past errors the quantiles come from
    min_errors: int = 240  # fewer known errors than this: no forecast (the policy falls back)
    quantiles: tuple[float, ...] = NOWCAST_QUANTILES
    alphas: tuple[float, ...] = (0.05, 0.15, 0.4, 0.8)  # candidate smoothing constants, chosen online
    trend_alphas: tuple[float, ...] = (0.1, 0.3)  # candidates with a trend (Brown's double smoothing)
    select_window: int = DAY_MIN  # minutes of known errors the online choice of alpha looks at
    profile: np.ndarray = field(default_factory=lambda: np.zeros(DAY_MIN))

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if any(not 0 < a < 1 for a in self.trend_alphas):
            raise ValueError(f"trend_alphas must be values in (0, 1), got {self.trend_alphas}")
        if not self.alphas or any(not 0 < a <= 1 for a in self.alphas):
            raise ValueError(f"alphas must be values in (0, 1], got {self.alphas}")
        if self.window < 10:
            raise ValueError(f"window must be at least 10 minutes, got {self.window}")
        if any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError(f"quantiles must lie in (0, 1), got {self.quantiles}")

    def fit(self, train: np.ndarray, start_minute_of_day: int = 0) -> Nowcaster:
        """Learn the daily profile of ``sqrt(y)`` from the training minutes (at least one day)."""
        y = np.asarray(train, dtype=float)
        if len(y) < DAY_MIN:
            raise ValueError(f"train needs at least one day ({DAY_MIN} minutes), got {len(y)}")
        z = np.sqrt(np.maximum(y, 0.0))
        tod = (start_minute_of_day + np.arange(len(z))) % DAY_MIN
        sums = np.bincount(tod, weights=z, minlength=DAY_MIN)
        counts = np.bincount(tod, minlength=DAY_MIN)
        prof = sums / np.maximum(counts, 1)
        k = 31
        padded = np.concatenate([prof[-k:], prof, prof[:k]])
        smooth = np.convolve(padded, np.ones(k) / k, mode="same")[k:-k]
        # Only the *shape* is used: level comes from the recent data, so centre the profile.
        self.profile = smooth - smooth.mean()
        return self

    def forecast(self, y: np.ndarray, horizon: int, start_minute_of_day: int = 0) -> dict[float, np.ndarray]:
        """Quantile forecasts issued at the end of every minute: ``{q: array (len(y), horizon)}``.

        Row ``t`` holds the forecasts of minutes ``t+1 .. t+horizon`` made with ``y[0..t]``; it is
        NaN where fewer than ``min_errors`` past errors are known for that horizon.
        """
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 minute, got {horizon}")
        y = np.asarray(y, dtype=float)
        n = len(y)
        z = np.sqrt(np.maximum(y, 0.0))
        tod = (start_minute_of_day + np.arange(n + horizon)) % DAY_MIN
        season = self.profile[tod]
        resid = z - season[:n]
        cands = (self.alpha, *[a for a in self.alphas if a != self.alpha])
        levels = [_ewma(resid, a) for a in cands]
        trends = [np.zeros(n)] * len(cands)
        for a in self.trend_alphas:
            # Brown's double smoothing: level 2·s1 - s2, slope a/(1-a)·(s1 - s2) per minute (follows ramps).
            s1 = _ewma(resid, a)
            s2 = _ewma(s1, a)
            levels.append(2 * s1 - s2)
            trends.append(a / (1 - a) * (s1 - s2))
        out: dict[float, np.ndarray] = {q: np.full((n, horizon), np.nan) for q in self.quantiles}
        rows = np.arange(n)
        for h in range(1, horizon + 1):
            zhats = np.stack([lv + h * tr for lv, tr in zip(levels, trends, strict=True)]) + season[h : n + h]
            # Online choice of alpha: the candidate with the smallest mean |error| over the last
            # select_window errors known at t (forecasts made at t-h or earlier); alpha until then.
            scores = np.full((len(zhats), n), np.inf)
            for i in range(len(zhats)):
                scores[i] = (
                    pl.Series("a", np.abs(self._known(z, zhats[i], h)))
                    .fill_nan(None)
                    .rolling_mean(window_size=self.select_window, min_samples=min(self.select_window, 60))
                    .fill_null(np.inf)
                    .to_numpy()
                )
            zhat = zhats[np.argmin(scores, axis=0), rows]
            s = pl.Series("e", self._known(z, zhat, h)).fill_nan(None)
            for q in self.quantiles:
                qe = s.rolling_quantile(
                    q, interpolation="linear", window_size=self.window, min_samples=self.min_errors
                ).to_numpy()
                out[q][:, h - 1] = np.square(np.maximum(zhat + qe, 0.0))
        return out

    @staticmethod
    def _known(z: np.ndarray, zhat: np.ndarray, h: int) -> np.ndarray:
        """Errors ``z[t'+h] - zhat[t']`` laid out at the time ``t = t'+h`` they become known (NaN before)."""
        n = len(z)
        known = np.full(n, np.nan)
        known[h:] = z[h:] - zhat[: n - h]
        return known


def _ewma(x: np.ndarray, a: float) -> np.ndarray:
    """Exponentially weighted mean with weight ``a`` on the newest value, started at ``x[0]``."""
    out, _ = lfilter([a], [1.0, -(1.0 - a)], x, zi=np.array([(1.0 - a) * x[0]]))
    return np.asarray(out)

"""Forecast error measures of the backtest protocol, on numpy arrays.

Shapes: ``actual`` is ``(n_origins, h)``; ``forecast`` is ``(n_origins, h, n_quantiles)`` in the order
of :data:`tasks.forecasting.base.QUANTILES`; the point forecast is the median (``p50``). Errors are
averaged over every origin and step, so one figure summarises steps 1..h.

Why MASE is the headline: it is scale-free (series of different magnitude can be averaged), it is
defined for series that touch zero (unlike MAPE), and below 1 it means "better than repeating last
season", which is the question a capacity planner asks.
"""

from __future__ import annotations

import numpy as np

from tasks.forecasting.base import QUANTILES

P50 = QUANTILES.index(0.5)
P10 = QUANTILES.index(0.1)
P90 = QUANTILES.index(0.9)


def mase_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast on the training part: MASE's denominator.

    Falls back to the lag-1 naive forecast when the training part is not longer than a season
    (or its seasonal-naive MAE is 0, as for a series repeating one cycle exactly). 0 only for a
    constant training series, where MASE is undefined (NaN, left out of aggregates).
    """
    train = np.asarray(train, dtype=np.float64)
    if len(train) < 2:
        return 0.0
    tiny = 1e-9 * float(np.mean(np.abs(train)))  # rounding noise of an exactly periodic series is not error
    if season >= 1 and len(train) > season:
        scale = float(np.mean(np.abs(train[season:] - train[:-season])))
        if scale > tiny:
            return scale
    scale = float(np.mean(np.abs(np.diff(train))))
    return scale if scale > tiny else 0.0


def mae(actual: np.ndarray, point: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - point)))


def mase(actual: np.ndarray, point: np.ndarray, scale: float) -> float:
    """Mean absolute error over all origins and steps divided by :func:`mase_scale`."""
    err = mae(actual, point)
    if scale > 0:
        return err / scale
    return 0.0 if err == 0 else float("nan")


def smape(actual: np.ndarray, point: np.ndarray) -> float:
    """Symmetric MAPE in percent (0..200); a point where both actual and forecast are 0 counts as 0."""
    num = np.abs(actual - point)
    den = np.abs(actual) + np.abs(point)
    ratio = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return float(200.0 * np.mean(ratio))


def pinball(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Mean pinball (quantile) loss per quantile, in the series' units: ``(n_quantiles,)``."""
    q = np.asarray(QUANTILES)
    diff = actual[..., None] - forecast
    loss = np.maximum(q * diff, (q - 1) * diff)
    return loss.reshape(-1, len(q)).mean(axis=0)


def coverage_p80(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Fraction of actuals inside [p10, p90] (nominal 0.8)."""
    return float(np.mean((actual >= forecast[..., P10]) & (actual <= forecast[..., P90])))


def coverage_p90(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Fraction of actuals at or below p90 (nominal 0.9)."""
    return float(np.mean(actual <= forecast[..., P90]))

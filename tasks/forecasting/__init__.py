"""Forecasting: one interface (``base``), a grid (``grid``), models, and the backtest protocol.

``MODELS`` is the catalogue of forecasters by name — what the backtest, the CLI and the forecast
flow iterate over; ``get_model(name, **params)`` builds one. The *model registry* (fitted versions,
champion/challenger) is a different thing and lives in ``tasks.forecasting.registry``.
"""

from __future__ import annotations

from typing import Any

from tasks.forecasting.base import (
    QUANTILE_COLUMNS,
    QUANTILES,
    Forecaster,
    NotEnoughHistory,
)
from tasks.forecasting.baselines import (
    STLETS,
    HoltWinters,
    HoltWintersDamped,
    LinearTrend,
    SeasonalNaive,
    Theta,
)
from tasks.forecasting.xgb import XGBoostForecaster

MODELS: dict[str, type[Forecaster]] = {
    cls.name: cls
    for cls in (XGBoostForecaster, SeasonalNaive, HoltWinters, HoltWintersDamped, Theta, STLETS, LinearTrend)
}


def get_model(name: str, **params: Any) -> Forecaster:
    """A new, unfitted forecaster by its registered name; ``params`` go to its constructor."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown forecasting model {name!r}; known: {', '.join(MODELS)}") from None
    return cls(**params)


__all__ = [
    "MODELS",
    "QUANTILES",
    "QUANTILE_COLUMNS",
    "Forecaster",
    "NotEnoughHistory",
    "get_model",
]

"""The one interface every forecaster implements, and the frames it speaks.

Frames (long format, one row per observation — mlforecast's ``unique_id, ds, y`` contract with
our names):

* **history / training frame**: ``series`` (str, the series' text key), ``ts`` (Datetime ms UTC,
  on a regular grid — see ``tasks.forecasting.grid``), ``y`` (Float64).
* **forecast frame**: ``series``, ``ts`` (the target time), ``step`` (1..h), and one Float64 column
  per quantile named ``p10 p50 p90 p99`` (``p50`` is the point forecast).

Life cycle, as the backtest protocol requires: ``fit`` learns every parameter, scaler and model
choice from the training part only; ``predict(history, h)`` then forecasts the ``h`` steps after
each series' last timestamp in ``history`` — a model may roll its *state* forward over history it
was not fitted on, but never refits its parameters there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import polars as pl

from tasks.lake.schema import POLARS_TS

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
HISTORY_SCHEMA: dict[str, pl.DataType] = {"series": pl.String(), "ts": POLARS_TS, "y": pl.Float64()}


def quantile_column(q: float) -> str:
    """0.1 → ``p10``, 0.99 → ``p99``, 0.5 → ``p50``."""
    return f"p{round(q * 100):d}"


QUANTILE_COLUMNS: tuple[str, ...] = tuple(quantile_column(q) for q in QUANTILES)
FORECAST_SCHEMA: dict[str, pl.DataType] = {
    "series": pl.String(),
    "ts": POLARS_TS,
    "step": pl.Int32(),
    **{c: pl.Float64() for c in QUANTILE_COLUMNS},
}


class NotEnoughHistory(ValueError):
    """A series is too short for the model; the message says how much is needed and how much there is."""


class Forecaster(ABC):
    """fit on many series, predict h steps ahead with quantiles, save and load."""

    #: Registry and report name, e.g. ``xgboost``, ``seasonal_naive``, ``ets_damped``.
    name: ClassVar[str]

    @abstractmethod
    def fit(self, train: pl.DataFrame, *, freq: timedelta, season: int) -> Forecaster:
        """Learn from ``train`` (history frame). ``season`` is in steps of ``freq``."""

    @abstractmethod
    def predict(self, history: pl.DataFrame, h: int) -> pl.DataFrame:
        """Forecast frame for the ``h`` steps after each series' last timestamp in ``history``."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything needed to ``load`` the fitted model into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Forecaster:
        """The fitted model ``save`` wrote."""

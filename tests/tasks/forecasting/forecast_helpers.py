"""Synthetic series with known answers for the forecasting tests (hourly, season 24: small and fast).

A plain module (imported by the test files, whose folder pytest puts on ``sys.path``), uniquely
named so it cannot shadow another test folder's helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SEASON = 24


def history(series: Mapping[str, np.ndarray], freq: timedelta = HOUR, start: datetime = START) -> pl.DataFrame:
    """A history frame of the given value arrays, each on a regular grid from ``start``."""
    step_ms = int(freq / timedelta(milliseconds=1))
    t0 = int(start.timestamp() * 1000)
    parts = [
        pl.DataFrame(
            {
                "series": [name] * len(y),
                "ts": pl.Series(t0 + np.arange(len(y)) * step_ms, dtype=pl.Int64)
                .cast(pl.Datetime("ms"))
                .dt.replace_time_zone("UTC"),
                "y": np.asarray(y, dtype=np.float64),
            }
        )
        for name, y in series.items()
    ]
    return pl.concat(parts)


def seasonal(n: int, *, level: float = 50.0, amp: float = 10.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (
        level
        + amp * np.sin(2 * np.pi * t / SEASON)
        + 0.5 * amp * np.cos(4 * np.pi * t / SEASON)
        + rng.normal(0, noise, n) * (noise > 0)
    )


#: Fast XGBoost settings for tests: the model's behaviour, not its tuning, is under test.
FAST_XGB = {"n_estimators": 150, "learning_rate": 0.15, "nthread": 1, "seed": 0}

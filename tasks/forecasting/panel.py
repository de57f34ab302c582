"""The numeric form of a history frame that models compute on, and the fast backtest hook.

Why a second form: models index series by position (lags, seasons, filters), which is natural on one
numpy array per series and slow on a long polars frame. :class:`Panel` is that form — series names,
each series' first timestamp and its values on the grid — converted once per ``fit``/``predict``.

:class:`OriginForecaster` is an optional extra every model in this package implements:
``predict_origins`` forecasts from many origins of the same series in one vectorised pass instead of
one ``predict`` per origin. The backtest uses it when a model has it; it must give exactly what
``predict(history[:o], h)`` gives at each origin (a test checks this for every model), so the fast
path is as honest as the slow one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from tasks.forecasting.base import FORECAST_SCHEMA, QUANTILE_COLUMNS


@dataclass
class Panel:
    """Series on one regular grid: ``values[i]`` holds series ``names[i]`` from ``start_ms[i]`` on."""

    names: list[str]
    start_ms: np.ndarray  # int64, first timestamp of each series (ms since epoch, UTC)
    values: list[np.ndarray]  # float64 per series, no NaN
    freq_ms: int

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, freq: timedelta) -> Panel:
        """Validate a history frame (regular grid, no NaN) and split it per series.

        Raises ``ValueError`` naming the series when it is off the grid or has NaN: the fix is
        :func:`tasks.forecasting.grid.regularize`, which every caller in this project runs first.
        """
        freq_ms = int(freq / timedelta(milliseconds=1))
        missing = {"series", "ts", "y"} - set(frame.columns)
        if missing:
            raise ValueError(f"history frame lacks column(s) {sorted(missing)}; has {frame.columns}")
        f = frame.select(
            pl.col("series").cast(pl.String), pl.col("ts").dt.epoch("ms").alias("ms"), pl.col("y").cast(pl.Float64)
        ).sort("series", "ms")
        # names and run lengths from polars: converting the string column row by row would cost
        # a Python object per sample (gigabytes at fleet scale)
        runs = f.select(pl.col("series").rle()).unnest("series")
        names = [str(v) for v in runs["value"].to_list()]
        counts = runs["len"].to_numpy().astype(np.int64)
        ms = f["ms"].to_numpy()
        y = f["y"].to_numpy()
        if len(y) == 0:
            return cls([], np.zeros(0, dtype=np.int64), [], freq_ms)
        ends = np.cumsum(counts)
        starts = ends - counts
        step = np.diff(ms)
        step[ends[:-1] - 1] = freq_ms  # the jumps between series are not spacings
        bad = np.flatnonzero(step != freq_ms)
        if bad.size:
            name = names[int(np.searchsorted(ends, bad[0], side="right"))]
            raise ValueError(
                f"series {name}: not on a regular {freq} grid (gaps or duplicates); "
                "put it on one with tasks.forecasting.grid.regularize first"
            )
        finite = np.isfinite(y)
        if not finite.all():
            name = names[int(np.searchsorted(ends, np.flatnonzero(~finite)[0], side="right"))]
            raise ValueError(f"series {name}: NaN/inf values; regularize() interpolates them")
        values = [y[a:b] for a, b in zip(starts, ends, strict=True)]
        return cls(names, ms[starts].astype(np.int64), values, freq_ms)

    def end_ms(self, i: int) -> int:
        """Timestamp of the last value of series ``i``."""
        return int(self.start_ms[i]) + (len(self.values[i]) - 1) * self.freq_ms

    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)


def forecast_frame(names: list[str], last_ms: np.ndarray, freq_ms: int, quantiles: np.ndarray) -> pl.DataFrame:
    """Forecast frame from an array ``(n_series, h, n_quantiles)`` of forecasts after ``last_ms``."""
    n, h, _ = quantiles.shape
    steps = np.tile(np.arange(1, h + 1, dtype=np.int64), n)
    ts = np.repeat(np.asarray(last_ms, dtype=np.int64), h) + steps * freq_ms
    flat = quantiles.reshape(n * h, -1)
    data: dict[str, pl.Series] = {
        "series": pl.Series(np.repeat(np.array(names, dtype=object), h), dtype=pl.String),
        "ts": pl.Series(ts, dtype=pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
        "step": pl.Series(steps, dtype=pl.Int32),
    }
    for j, col in enumerate(QUANTILE_COLUMNS):
        data[col] = pl.Series(flat[:, j], dtype=pl.Float64)
    return pl.DataFrame(data, schema=FORECAST_SCHEMA)


@runtime_checkable
class OriginForecaster(Protocol):
    """A fitted model that forecasts from many origins at once (see the module docstring)."""

    def predict_origins(self, panel: Panel, origins: list[np.ndarray], h: int) -> list[np.ndarray]:
        """For series ``i`` and each ``o`` in ``origins[i]``: the forecast from ``values[i][:o]``.

        Returns per series an array ``(len(origins[i]), h, n_quantiles)``, quantiles sorted.
        """
        ...

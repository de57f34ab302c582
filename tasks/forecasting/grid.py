"""Put series on a regular time grid and choose their season — the first step of every fit and backtest.

Why a grid: every forecaster here indexes a series by position (lag 1 = one ``freq`` ago, season =
``n`` positions), so positions must mean the same time everywhere. Real metric data is not that
tidy: scrapes are late or doubled, collectors stop for a while. :func:`regularize` fixes that the
same way for every consumer — duplicates in a slot are averaged, missing slots are linearly
interpolated — and *counts* what it did in a :class:`GridReport`, so a backtest on a series that is
30 % interpolated says so instead of looking better than it is.

The grid of a series is anchored at its first timestamp (not at the epoch): NAB's 5-minute files,
for one, sample at ``:04, :09, …``; snapping those to ``:05`` would move every point by a minute for
no reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from tasks.forecasting.base import HISTORY_SCHEMA

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
#: A weekly season is the default only when the data holds at least this many weeks: fewer cycles
#: leave the seasonal models (2 cycles to start) and the lag-2-seasons features too little to learn.
WEEKLY_MIN_CYCLES = 4
#: Scrape/collection intervals people configure; a measured spacing within 5 % of one is that one.
NICE_STEPS_MS: tuple[int, ...] = tuple(
    s * 1000
    for s in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
)


def infer_freq(ts: pl.Series | pl.DataFrame) -> timedelta:
    """The sampling interval: the median positive spacing between consecutive timestamps.

    The median, not the minimum or the mode, because real series have both doubled samples
    (spacing 0, ignored) and gaps (a few huge spacings): neither moves a median. Given a frame with
    a ``series`` column the spacings are taken within each series. The result is rounded to whole
    seconds when it is at least a second, and snapped to a common interval (1 s … 1 day) within 5 %
    of it (jittery scrapes give 299.998 s; near-duplicates 1 s apart are ignored). Raises ``ValueError``
    when there are not two distinct timestamps to measure.
    """
    if isinstance(ts, pl.DataFrame):
        frame = ts.select("series", pl.col("ts").dt.epoch("ms").alias("ms")).sort("series", "ms")
        ms = frame["ms"].to_numpy()
        same = frame["series"].to_numpy()[1:] == frame["series"].to_numpy()[:-1]
        diffs = np.diff(ms)[same]
    else:
        ms = np.sort(ts.dt.epoch("ms").to_numpy())
        diffs = np.diff(ms)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise ValueError("cannot infer the sampling interval: fewer than two distinct timestamps")
    step = float(np.median(diffs))
    close = diffs[diffs >= step / 2]  # near-duplicates (a resent sample a second later) are not spacings
    step = float(np.median(close)) if close.size else step
    for nice in NICE_STEPS_MS:
        if abs(step - nice) <= 0.05 * nice:
            return timedelta(milliseconds=nice)
    if step >= 1000:
        step = round(step / 1000) * 1000
    return timedelta(milliseconds=max(1, round(step)))


@dataclass
class SeriesGrid:
    """What :func:`regularize` did to one series."""

    series: str
    rows_in: int
    points: int
    duplicates: int  # input rows merged into a slot that already had a value
    interpolated: int  # slots without a value (gaps and NaN inputs), filled linearly
    max_gap: int  # longest run of interpolated slots


@dataclass
class GridReport:
    """Totals and per-series counts of a regularisation; ``to_dict`` is JSON-ready."""

    freq_s: float
    series: list[SeriesGrid] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(s.points for s in self.series)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.series)

    @property
    def interpolated(self) -> int:
        return sum(s.interpolated for s in self.series)

    @property
    def interpolated_fraction(self) -> float:
        return self.interpolated / self.points if self.points else 0.0

    def to_dict(self, *, per_series: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "freq_s": self.freq_s,
            "series": len(self.series),
            "points": self.points,
            "duplicates": self.duplicates,
            "interpolated": self.interpolated,
            "interpolated_fraction": round(self.interpolated_fraction, 6),
            "max_gap": max((s.max_gap for s in self.series), default=0),
        }
        if per_series:
            out["per_series"] = [asdict(s) for s in self.series]
        return out


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def regularize(frame: pl.DataFrame, freq: timedelta) -> tuple[pl.DataFrame, GridReport]:
    """Each series of a history frame on a regular ``freq`` grid, and a report of what changed.

    A row goes to the slot nearest its time (slots counted from the series' first timestamp); rows
    sharing a slot are averaged; null/NaN values are dropped first and so count as missing; every
    slot between the first and last observed one that has no value is linearly interpolated between
    its neighbours. Output: a history frame (``series, ts, y``) sorted by series and time, no NaNs.
    """
    missing = {"series", "ts", "y"} - set(frame.columns)
    if missing:
        raise ValueError(f"history frame lacks column(s) {sorted(missing)}; has {frame.columns}")
    freq_ms = int(freq / timedelta(milliseconds=1))
    if freq_ms <= 0:
        raise ValueError(f"freq must be positive, got {freq}")
    clean = frame.select(
        pl.col("series").cast(pl.String),
        pl.col("ts").cast(HISTORY_SCHEMA["ts"]).dt.epoch("ms").alias("ms"),
        pl.col("y").cast(pl.Float64),
    )
    rows_in = dict(clean.group_by("series").len().iter_rows())
    clean = clean.filter(pl.col("y").is_not_null() & pl.col("y").is_not_nan() & pl.col("ms").is_not_null())
    first = clean.group_by("series").agg(pl.col("ms").min().alias("t0"))
    slotted = (
        clean.join(first, on="series")
        .with_columns(((pl.col("ms") - pl.col("t0")) / freq_ms).round().cast(pl.Int64).alias("slot"))
        .group_by("series", "slot")
        .agg(pl.col("y").mean(), pl.len().alias("n"), pl.col("t0").first())
        .sort("series", "slot")
    )
    report = GridReport(freq_s=freq_ms / 1000)
    names: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for (name,), part in slotted.group_by("series", maintain_order=True):
        slots = part["slot"].to_numpy()
        y = part["y"].to_numpy()
        t0 = int(part["t0"][0])
        size = int(slots[-1]) + 1
        full = np.arange(size)
        have = np.zeros(size, dtype=bool)
        have[slots] = True
        filled = np.interp(full, slots, y)
        report.series.append(
            SeriesGrid(
                series=str(name),
                rows_in=int(rows_in.get(name, 0)),
                points=size,
                duplicates=int(part["n"].sum() - len(part)),
                interpolated=int(size - len(slots)),
                max_gap=_longest_run(~have),
            )
        )
        names.append(np.full(size, str(name), dtype=object))
        stamps.append(t0 + full * freq_ms)
        values.append(filled)
    for name in sorted(set(rows_in) - {s.series for s in report.series}):
        report.series.append(SeriesGrid(str(name), int(rows_in[name]), 0, 0, 0, 0))
    if not values:
        return pl.DataFrame(schema=HISTORY_SCHEMA), report
    out = pl.DataFrame(
        {
            "series": pl.Series(np.concatenate(names), dtype=pl.String),
            "ts": pl.Series(np.concatenate(stamps), dtype=pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            "y": pl.Series(np.concatenate(values), dtype=pl.Float64),
        }
    )
    return out, report


def season_lengths(freq: timedelta) -> dict[str, int]:
    """Steps of ``freq`` in a day and in a week (at least 1): ``{"daily": 288, "weekly": 2016}`` at 5 min."""
    return {"daily": max(1, round(DAY / freq)), "weekly": max(1, round(WEEK / freq))}


def default_season(freq: timedelta, n_points: int) -> int:
    """The season to model for series of ``n_points`` (use the *training* length) at ``freq``.

    Weekly when the data holds at least :data:`WEEKLY_MIN_CYCLES` weeks (infrastructure load has a
    weekday/weekend shape that a daily season cannot represent), otherwise daily. A daily season
    below 2 steps (data sampled daily or slower) is no season; then weekly, if it fits, else 1
    (no seasonality). Callers override it with an explicit ``season``.
    """
    lengths = season_lengths(freq)
    weekly, daily = lengths["weekly"], lengths["daily"]
    if weekly >= 2 and n_points >= WEEKLY_MIN_CYCLES * weekly:
        return weekly
    if daily >= 2:
        return daily
    if weekly >= 2 and n_points >= 2 * weekly:
        return weekly
    return 1

"""Request-rate traces for the scaling simulator: load a CSV, put it on a per-minute grid, split it.

Why a module: the benchmark replays four public traces and any CSV a user names, and every one of
them needs the same treatment before a policy sees it — one value per minute, no gaps inside a
segment, and *no invented data*. A log gap (NASA's July log ends on the 28th; the server was down
for Hurricane Erin in August) is not "zero traffic": a policy replayed across it would see a fake
collapse and a fake flash crowd. So a trace is a list of contiguous **segments**, each simulated
separately, and the figures are summed over segments.

Regularising: timestamps are floored to the minute and duplicates summed (a per-minute count
split across log files, as in WorldCup98); coarser data (Azure's 5-minute CPU) is spread onto
minutes by holding each value for its interval (a rate, not a count, so it is repeated, not
divided); a gap longer than ``max_gap_min`` minutes starts a new segment and shorter gaps are
filled by linear interpolation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

__all__ = [
    "BUILTIN_TRACES",
    "Trace",
    "TraceError",
    "builtin_trace",
    "load_csv_trace",
    "regularise",
]

#: The shared data sets, relative to the repository root (``../shared`` is beside each checkout).
DATASETS_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
#: The trace names the benchmark reports, in order.
BUILTIN_TRACES: tuple[str, ...] = ("nasa-jul", "nasa-aug", "worldcup98", "azure-vm-2019")


class TraceError(ValueError):
    """A trace file or column that cannot be used; the message names the file and column."""


@dataclass(frozen=True)
class Trace:
    """A request-rate trace on a 1-minute grid, as contiguous segments (epoch seconds, values per minute)."""

    name: str
    segments: tuple[tuple[int, np.ndarray], ...]  # (start epoch s of the first minute, values)

    @property
    def minutes(self) -> int:
        """Observed minutes over all segments."""
        return sum(len(v) for _, v in self.segments)

    @property
    def peak(self) -> float:
        """The peak minute over all segments (the benchmark sizes a replica from it)."""
        return max(float(v.max()) for _, v in self.segments)

    def head(self, minutes: int) -> Trace:
        """The first ``minutes`` observed minutes (the quick benchmark run)."""
        out: list[tuple[int, np.ndarray]] = []
        left = minutes
        for start, values in self.segments:
            if left <= 0:
                break
            out.append((start, values[:left]))
            left -= len(values[:left])
        return Trace(self.name, tuple(out))


def regularise(
    ts_s: np.ndarray, values: np.ndarray, *, name: str = "trace", max_gap_min: int = 10, min_segment_min: int = 60
) -> Trace:
    """Put (epoch seconds, value) samples on a 1-minute grid, split at gaps longer than ``max_gap_min``.

    Samples coarser than a minute are held over their interval (the value is a rate); segments
    shorter than ``min_segment_min`` minutes are dropped (too short to say anything about scaling).
    """
    if len(ts_s) != len(values):
        raise TraceError(f"{name}: timestamps and values differ in length ({len(ts_s)} vs {len(values)})")
    if len(ts_s) == 0:
        raise TraceError(f"{name}: no samples")
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)):
        raise TraceError(f"{name}: values must be finite numbers (found NaN or inf)")
    if np.any(v < 0):
        raise TraceError(f"{name}: a request rate cannot be negative (min {v.min()})")
    minute = (np.asarray(ts_s, dtype=np.int64) // 60) * 60
    order = np.argsort(minute, kind="stable")
    minute, v = minute[order], v[order]
    uniq, inverse = np.unique(minute, return_inverse=True)
    summed = np.zeros(len(uniq))
    np.add.at(summed, inverse, v)
    # The sampling interval: the most common spacing; samples are held for it (Azure: 5 minutes).
    spacing = int(np.median(np.diff(uniq)) // 60) if len(uniq) > 1 else 1
    spacing = max(1, spacing)
    segments: list[tuple[int, np.ndarray]] = []
    breaks = np.nonzero(np.diff(uniq) > (max(max_gap_min, spacing) * 60))[0]
    bounds = [0, *(breaks + 1).tolist(), len(uniq)]
    for a, b in itertools.pairwise(bounds):
        mins = (uniq[a:b] - uniq[a]) // 60
        grid = np.arange(int(mins[-1]) + spacing)
        if spacing > 1:
            filled = summed[a:b][np.minimum(np.searchsorted(mins, grid, side="right") - 1, b - a - 1)]
        else:
            filled = np.interp(grid, mins, summed[a:b])
        if len(filled) >= min_segment_min:
            segments.append((int(uniq[a]), filled))
    if not segments:
        raise TraceError(f"{name}: no contiguous segment of at least {min_segment_min} minutes")
    return Trace(name, tuple(segments))


def _epoch_seconds(col: pl.Series, name: str, col_name: str) -> np.ndarray:
    if col.dtype.is_numeric():
        return col.cast(pl.Float64).to_numpy()
    try:
        parsed = col.cast(pl.String).str.to_datetime(time_zone="UTC", strict=True)
    except Exception as exc:  # polars raises several error types for unparseable text
        raise TraceError(f"{name}: column {col_name!r} is neither epoch seconds nor a date-time ({exc})") from None
    return (parsed.dt.epoch("ms").cast(pl.Float64) / 1000.0).to_numpy()


def load_csv_trace(
    path: str | Path,
    *,
    time_col: str,
    value_col: str,
    observed_col: str | None = None,
    name: str | None = None,
    max_gap_min: int = 10,
) -> Trace:
    """A trace from a CSV: ``time_col`` (epoch seconds or a date-time), ``value_col`` (requests per minute).

    ``observed_col`` (optional, 0/1) marks rows inside log gaps: they are dropped, so the gap
    splits the trace. The trace's name is ``name`` or the file stem.
    """
    p = Path(path)
    label = name or p.stem
    if not p.is_file():
        raise TraceError(f"{label}: trace file {str(p)!r} does not exist")
    df = pl.read_csv(p, infer_schema_length=10_000)
    for col in (time_col, value_col, *([observed_col] if observed_col else [])):
        if col not in df.columns:
            raise TraceError(f"{label}: column {col!r} not in {p.name} (columns: {', '.join(df.columns)})")
    if observed_col:
        df = df.filter(pl.col(observed_col) == 1)
    if not df[value_col].dtype.is_numeric():
        raise TraceError(f"{label}: column {value_col!r} must be numeric, found {df[value_col].dtype}")
    df = df.drop_nulls([time_col, value_col])
    ts = _epoch_seconds(df[time_col], label, time_col)
    return regularise(ts, df[value_col].cast(pl.Float64).to_numpy(), name=label, max_gap_min=max_gap_min)


def builtin_trace(name: str, datasets_dir: str | Path | None = None) -> Trace:
    """One of :data:`BUILTIN_TRACES` from ``../shared/datasets`` (NASA split into July and August)."""
    root = Path(datasets_dir) if datasets_dir is not None else DATASETS_DIR
    if name in ("nasa-jul", "nasa-aug"):
        f = root / "nasa-http-1995" / "nasa_requests_per_minute.csv"
        full = load_csv_trace(f, time_col="timestamp_utc", value_col="requests", observed_col="observed", name=name)
        # July ends on 1995-07-28 (log end); everything after Aug 1 04:00 UTC is August.
        cut = 807_249_600  # 1995-08-01 04:00 UTC = Aug 1 00:00 local (UTC-4)
        keep = [s for s in full.segments if (s[0] < cut) == (name == "nasa-jul")]
        return Trace(name, tuple(keep))
    if name == "worldcup98":
        f = root / "worldcup98" / "worldcup98_requests_per_minute.csv"
        return load_csv_trace(f, time_col="timestamp_utc", value_col="requests", name=name)
    if name == "azure-vm-2019":
        f = root / "azure-vm-2019" / "azure_vm_cpu_5min.csv"
        return load_csv_trace(f, time_col="timestamp", value_col="cpu_usage", name=name)
    raise TraceError(f"unknown trace {name!r}; known: {', '.join(BUILTIN_TRACES)} (or --trace FILE.csv)")

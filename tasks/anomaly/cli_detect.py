"""``cortex-perf anomaly detect PATH… --time-col C --value-col C --out DIR``: score CSV files.

The CLI parses arguments and prints; this module does the work so it can be tested without a
shell. Every CSV found (a file given, or every ``*.csv`` under a folder given, recursively) is
replayed through a fresh :class:`~tasks.anomaly.detector.Detector` and written to
``DIR/<path relative to the argument's folder>`` with columns ``timestamp,value,anomaly_score``
(NAB's results format), so any labelled data set can be scored with NAB-style tools. The input's
timestamp text is written back unchanged, so results line up with labels keyed by that text.

Two choices follow NAB's own detectors, so the CLI reproduces ``benchmarks/nab_bench.py`` (which
calls :func:`read_series` and :func:`score_rows`, this very path):

* **Order**: rows are scored in file order. Real files have clocks that step back (NAB's
  ``machine_temperature_system_failure.csv`` goes back 55 minutes at line 10151); refusing them
  would refuse the benchmark itself, so each such file gets one warning naming the first line.
  ``order="time"`` (``--sort``) scores and writes them in time order instead.
* **Warm-up**: by default the detector's warm-up is NAB's probationary period of the file
  (``min(15 % of the rows, 750)``), what NAB tells every detector; ``warmup=N`` fixes it.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from tasks.anomaly.detector import DetectorConfig, SeriesScores, score_series
from tasks.anomaly.nab import probation_rows

__all__ = [
    "DetectError",
    "DetectSummary",
    "FileResult",
    "Order",
    "Series",
    "Warmup",
    "detect_paths",
    "parse_timestamp",
    "parse_warmup",
    "read_series",
    "resolve_warmup",
    "score_rows",
]

#: ``"file"``: score rows as they stand in the file (NAB's way); ``"time"``: stable-sort them by time first.
Order = Literal["file", "time"]
#: A warm-up in rows, or ``"nab"``: NAB's probationary period of each file.
Warmup = int | Literal["nab"]


class DetectError(ValueError):
    """Bad input; the message names the file, line and column."""


@dataclass(frozen=True)
class FileResult:
    """One scored input file."""

    source: str
    output: str
    rows: int
    max_score: float
    max_score_at: str  # the timestamp text of the highest score ("" when no rows)
    alarms: int  # rows with score >= the summary's alarm threshold
    warmup: int = 0  # the warm-up the detector was given, in rows
    warnings: list[str] = field(default_factory=list)  # e.g. the clock stepping back


@dataclass
class DetectSummary:
    """What ``detect_paths`` did: one entry per file, and totals."""

    files: list[FileResult] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    alarm_threshold: float = 0.5


def parse_timestamp(text: str) -> float:
    """Timestamp text → epoch seconds: ISO 8601 (naive = UTC) or a number of epoch seconds/ms."""
    t = text.strip()
    try:
        num = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(num):
            raise ValueError(f"not a timestamp: {text!r}")
        return num / 1000.0 if abs(num) > 1e11 else num  # epoch milliseconds → seconds
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        return (dt - datetime(1970, 1, 1)).total_seconds()
    return dt.timestamp()


def _collect(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(csv file, path to write it under DIR) for every input; folders are searched recursively."""
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*.csv")):
                found.append((f, f.relative_to(p)))
        elif p.is_file():
            found.append((p, Path(p.name)))
        else:
            raise DetectError(f"{p}: no such file or folder")
    if not found:
        raise DetectError(f"no CSV files in {', '.join(str(p) for p in paths)}")
    return found


@dataclass(frozen=True)
class Series:
    """One input file, checked: timestamp text as written, epoch seconds, values (NaN: empty cell)."""

    stamps: list[str]
    secs: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    warnings: list[str] = field(default_factory=list)


def parse_warmup(text: str) -> Warmup:
    """``--warmup`` text → rows or ``"nab"``; a one-line error naming the option otherwise."""
    t = text.strip().lower()
    if t == "nab":
        return "nab"
    if t.isdigit():
        return int(t)
    raise DetectError(f"--warmup: expected a number of rows (0 or more) or 'nab', got {text!r}")


def resolve_warmup(warmup: Warmup, rows: int) -> int:
    """The warm-up in rows for a file of ``rows`` rows (``"nab"``: NAB's probationary period)."""
    return probation_rows(rows) if warmup == "nab" else int(warmup)


def read_series(path: Path, time_col: str = "timestamp", value_col: str = "value", order: Order = "file") -> Series:
    """Read and check one CSV; bad input raises :class:`DetectError` naming file, line and column.

    A timestamp earlier than the line before is kept (see the module docstring) and reported once
    per file in ``Series.warnings``, with how many such steps there are.
    """
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DetectError(f"{path}: empty file (no header line)") from None
        header = [h.strip() for h in header]
        for col in (time_col, value_col):
            if col not in header:
                raise DetectError(f"{path}: line 1: no column {col!r} (columns: {', '.join(header)})")
        ti, vi = header.index(time_col), header.index(value_col)
        stamps: list[str] = []
        secs: list[float] = []
        values: list[float] = []
        last = -math.inf
        first_back = ""
        backwards = 0
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ti, vi):
                raise DetectError(f"{path}: line {line_no}: {len(row)} fields, expected {len(header)}")
            text = row[ti]
            try:
                t = parse_timestamp(text)
            except ValueError:
                raise DetectError(f"{path}: line {line_no}: column {time_col!r}: not a timestamp: {text!r}") from None
            if t < last:
                backwards += 1
                if not first_back:
                    before = stamps[-1]
                    first_back = f"line {line_no}: column {time_col!r}: {text!r} is earlier than {before!r} before it"
            last = t
            cell = row[vi].strip()
            try:
                v = float(cell) if cell else math.nan  # an empty cell is a missing value, scored 0
            except ValueError:
                raise DetectError(f"{path}: line {line_no}: column {value_col!r}: not a number: {cell!r}") from None
            stamps.append(text)
            secs.append(t)
            values.append(v)
    series = Series(stamps, np.asarray(secs, dtype=np.float64), np.asarray(values, dtype=np.float64))
    if backwards:
        more = f" ({backwards} steps back in all)" if backwards > 1 else ""
        if order == "time":
            idx = np.argsort(series.secs, kind="stable")
            series = Series([stamps[i] for i in idx], series.secs[idx], series.values[idx])
            series.warnings.append(f"{path}: {first_back}{more}; rows sorted by time before scoring")
        else:
            series.warnings.append(f"{path}: {first_back}{more}; scored in file order (pass --sort for time order)")
    return series


def score_rows(series: Series, config: DetectorConfig | None = None, warmup: Warmup = "nab") -> SeriesScores:
    """Replay one series through a fresh detector whose warm-up is ``warmup`` (see the module docstring).

    The one scoring path of ``anomaly detect`` and ``benchmarks/nab_bench.py``, so the CLI's output
    scores what the benchmark reports.
    """
    cfg = replace(config or DetectorConfig(), warmup=resolve_warmup(warmup, len(series.stamps)))
    return score_series(series.secs, series.values, config=cfg)


def detect_paths(
    paths: Sequence[str | Path],
    *,
    time_col: str = "timestamp",
    value_col: str = "value",
    out: str | Path,
    config: DetectorConfig | None = None,
    alarm_threshold: float = 0.5,
    warmup: Warmup = "nab",
    order: Order = "file",
) -> DetectSummary:
    """Score every CSV in ``paths`` and write ``out/<relative path>``; see the module docstring.

    All inputs are read and checked before anything is written, so a bad file leaves no partial
    output behind.
    """
    started = time.perf_counter()
    out_dir = Path(out)
    inputs = [(src, rel, read_series(src, time_col, value_col, order)) for src, rel in _collect(paths)]
    targets = [out_dir / rel for _, rel, _ in inputs]
    if len(set(targets)) != len(targets):
        raise DetectError("two inputs would be written to the same output path; pass their common folder instead")
    summary = DetectSummary(alarm_threshold=alarm_threshold)
    for (src, _rel, series), target in zip(inputs, targets, strict=True):
        stamps, values = series.stamps, series.values
        result = score_rows(series, config, warmup)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for text, v, sc in zip(stamps, values, result.score, strict=True):
                w.writerow([text, "" if math.isnan(v) else repr(float(v)), f"{sc:.6f}"])
        tmp.replace(target)
        top = int(np.argmax(result.score)) if len(stamps) else -1
        summary.files.append(
            FileResult(
                source=str(src),
                output=str(target),
                rows=len(stamps),
                max_score=float(result.score[top]) if top >= 0 else 0.0,
                max_score_at=stamps[top] if top >= 0 else "",
                alarms=int(np.count_nonzero(result.score >= alarm_threshold)),
                warmup=resolve_warmup(warmup, len(stamps)),
                warnings=series.warnings,
            )
        )
        summary.rows += len(stamps)
    summary.seconds = time.perf_counter() - started
    return summary

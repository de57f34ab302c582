"""``cortex-perf anomaly detect PATH… --time-col C --value-col C --out DIR``: score CSV files.

The CLI parses arguments and prints; this module does the work so it can be tested without a
shell. Every CSV found (a file given, or every ``*.csv`` under a folder given, recursively) is
replayed through a fresh :class:`~tasks.anomaly.detector.Detector` and written to
``DIR/<path relative to the argument's folder>`` with columns ``timestamp,value,anomaly_score``
(NAB's results format), so any labelled data set can be scored with NAB-style tools. The input's
timestamp text is written back unchanged, so results line up with labels keyed by that text.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from tasks.anomaly.detector import DetectorConfig, score_series

__all__ = ["DetectError", "DetectSummary", "FileResult", "detect_paths", "parse_timestamp"]


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


def _read(path: Path, time_col: str, value_col: str) -> tuple[list[str], np.ndarray, np.ndarray]:
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
                raise DetectError(
                    f"{path}: line {line_no}: column {time_col!r}: {text!r} is earlier than the line before "
                    "(rows must be in time order)"
                )
            last = t
            cell = row[vi].strip()
            try:
                v = float(cell) if cell else math.nan  # an empty cell is a missing value, scored 0
            except ValueError:
                raise DetectError(f"{path}: line {line_no}: column {value_col!r}: not a number: {cell!r}") from None
            stamps.append(text)
            secs.append(t)
            values.append(v)
    return stamps, np.asarray(secs), np.asarray(values)


def detect_paths(
    paths: Sequence[str | Path],
    *,
    time_col: str = "timestamp",
    value_col: str = "value",
    out: str | Path,
    config: DetectorConfig | None = None,
    alarm_threshold: float = 0.5,
) -> DetectSummary:
    """Score every CSV in ``paths`` and write ``out/<relative path>``; see the module docstring.

    All inputs are read and checked before anything is written, so a bad file leaves no partial
    output behind.
    """
    started = time.perf_counter()
    out_dir = Path(out)
    inputs = [(src, rel, *_read(src, time_col, value_col)) for src, rel in _collect(paths)]
    targets = [out_dir / rel for _, rel, *_ in inputs]
    if len(set(targets)) != len(targets):
        raise DetectError("two inputs would be written to the same output path; pass their common folder instead")
    summary = DetectSummary(alarm_threshold=alarm_threshold)
    for (src, _rel, stamps, secs, values), target in zip(inputs, targets, strict=True):
        result = score_series(secs, values, config=config)
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
            )
        )
        summary.rows += len(stamps)
    summary.seconds = time.perf_counter() - started
    return summary

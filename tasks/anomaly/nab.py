"""The Numenta Anomaly Benchmark's scoring rules, re-implemented (NAB v1.1, ``nab/scorer.py``).

Why our own copy: the benchmark must score *our* detector with exactly the rules NAB's scoreboard
used, without NAB's Python 2 / pandas code in the project. Each rule below names its NAB origin.

* **Windows** (``labels/combined_windows.json``): ``[start, end]`` timestamp pairs per data file,
  inclusive; a row is "in" a window when ``start <= ts <= end``.
* **Probationary period**: the first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows of each file
  (``util.getProbationPeriod``); detections there are ignored (neither TP nor FP).
* **Detections**: ``anomaly_score >= threshold`` (``util.convertAnomalyScoresToDetections``).
* **True positive**: only the *first* detection inside a window counts, weighted by the scaled
  sigmoid of its relative position ``-(end - i + 1) / length`` and divided by the sigmoid's value at
  the window's far left edge, so the earliest possible detection earns exactly ``A_TP``. A window
  without a detection costs ``A_FN``.
* **False positive**: every detection outside a window. One after a window costs
  ``A_FP * sigmoid(|end - i| / (length - 1))`` (a detection just after a window costs almost
  nothing, one more than three window lengths after costs ``A_FP``); one before any window ``A_FP``.
* **Threshold**: one per profile for the whole corpus, chosen to maximise the corpus's raw score
  (NAB's ``optimizer.twiddle`` hill climb from 0.5; :func:`optimize_threshold` also offers the
  exact optimum over every distinct score).
* **Normalised score**: ``100 * (raw - null) / (perfect - null)`` where ``perfect`` is
  ``A_TP * number of windows`` (116 in NAB v1.1) and ``null`` is the null detector's raw score at
  its own optimised threshold (``-A_FN * windows``: it never detects anything).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROFILES",
    "CorpusFile",
    "CorpusScore",
    "FileScore",
    "FirstDetection",
    "Profile",
    "ThresholdResult",
    "first_detections",
    "load_windows",
    "normalised_score",
    "optimize_threshold",
    "probation_rows",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
    "to_datetime64",
    "twiddle",
    "window_bounds",
]

PROBATIONARY_FRACTION = 0.15


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: the weights of its cost matrix (``config/profiles.json``)."""

    name: str
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0
    tn: float = 1.0


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP": Profile("reward_low_FP", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN": Profile("reward_low_FN", tp=1.0, fp=0.11, fn=2.0),
}


def scaled_sigmoid(position: float) -> float:
    """``2 / (1 + exp(5 * position)) - 1``, and ``-1`` beyond 3 window lengths (``scorer.scaledSigmoid``)."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def probation_rows(n_rows: int, fraction: float = PROBATIONARY_FRACTION) -> int:
    """Rows ignored at the start of a file: ``min(floor(fraction * n), fraction * 5000)``."""
    return int(min(math.floor(fraction * n_rows), fraction * 5000))


def to_datetime64(stamps: Sequence[str] | npt.NDArray[np.generic]) -> npt.NDArray[np.datetime64]:
    """NAB timestamp text (``2014-04-10 00:04:00`` or with ``.000000``) → ``datetime64[us]``."""
    arr = np.asarray(stamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[us]")
    return np.array([str(s).strip().replace(" ", "T") for s in arr], dtype="datetime64[us]")


def load_windows(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """``combined_windows.json``: data file (relative to ``data/``) → ``[(start, end), ...]``."""
    raw = json.loads(Path(path).read_text())
    return {str(k): [(str(a), str(b)) for a, b in v] for k, v in raw.items()}


def window_bounds(timestamps: npt.NDArray[np.datetime64], windows: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """Row index ranges ``(first, last)`` (inclusive) of each window; empty windows are kept as ``(0, -1)``.

    NAB selects a window's rows by timestamp (``start <= ts <= end``), so duplicate or unsorted
    timestamps are handled the same way here: first and last matching row.
    """
    out: list[tuple[int, int]] = []
    for start, end in windows:
        lo, hi = to_datetime64([start])[0], to_datetime64([end])[0]
        idx = np.flatnonzero((timestamps >= lo) & (timestamps <= hi))
        out.append((int(idx[0]), int(idx[-1])) if idx.size else (0, -1))
    return out


@dataclass(frozen=True)
class FileScore:
    """One file's raw score at a threshold, with NAB's per-row counts (``tp`` = detected rows in windows)."""

    raw: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows_detected: int
    windows: int


def score_file(
    detections: npt.NDArray[np.bool_],
    bounds: Sequence[tuple[int, int]],
    probation: int,
    profile: Profile,
) -> FileScore:
    """Raw NAB score of one file's binary detections (``scorer.Scorer.getScore``)."""
    n = detections.shape[0]
    det = detections.astype(bool).copy()
    det[: min(probation, n)] = False
    label = np.zeros(n, dtype=bool)
    for first, last in bounds:
        if last >= first:
            label[first : last + 1] = True
    scored = np.arange(n) >= probation

    tp_score = 0.0
    fn_score = 0.0
    detected = 0
    for first, last in bounds:
        length = last - first + 1
        hits = np.flatnonzero(det[first : last + 1]) if length > 0 else np.empty(0, dtype=np.int64)
        if hits.size == 0:
            fn_score -= profile.fn
        else:
            i = first + int(hits[0])
            position = -(last - i + 1) / float(length)
            tp_score += scaled_sigmoid(position) * profile.tp / _MAX_TP
            detected += 1

    fp_idx = np.flatnonzero(det & ~label)
    fp_score = float(_fp_costs(fp_idx, bounds, profile).sum()) if fp_idx.size else 0.0

    return FileScore(
        raw=tp_score + fp_score + fn_score,
        tp=int(np.count_nonzero(det & label)),
        fp=int(fp_idx.size),
        fn=int(np.count_nonzero(~det & label & scored)),
        tn=int(np.count_nonzero(~det & ~label & scored)),
        windows_detected=detected,
        windows=len(bounds),
    )


@dataclass(frozen=True)
class FirstDetection:
    """How one window was (or was not) detected: where its first detection fell and what it earned.

    Why: NAB credits only the first detection in a window, by its position, so "how late" a
    detector is, relative to the labelled anomaly, says how much an earlier detector could still
    gain, and which detector fired first says which one to make earlier.
    """

    first: int  # window rows, inclusive
    last: int
    label: int | None  # the labelled anomaly's row (``combined_labels.json``), when it lies in the window
    row: int | None  # first detection in the window after the probation, None when missed
    credit: float  # the TP credit earned (``profile.tp`` at the window start), 0 when missed
    label_credit: float | None  # the credit a detection exactly at the labelled row would earn

    @property
    def lag(self) -> int | None:
        """Rows from the labelled anomaly to the first detection (negative: before it)."""
        return None if self.row is None or self.label is None else self.row - self.label


def first_detections(
    detections: npt.NDArray[np.bool_],
    bounds: Sequence[tuple[int, int]],
    probation: int,
    profile: Profile,
    labels: Sequence[int] = (),
) -> list[FirstDetection]:
    """Per window: its first detection after the probation, the credit earned and the labelled row.

    The credit is :func:`score_file`'s TP term for that window; ``label_credit`` is what a detection
    at the labelled row would earn, the most a detector that reacts at once to the anomaly itself
    (and never to what precedes it) can get.
    """
    out: list[FirstDetection] = []
    for first, last in bounds:
        if last < first:
            continue
        length = float(last - first + 1)
        lab = next((int(r) for r in labels if first <= r <= last), None)
        lo = max(first, probation)
        hits = np.flatnonzero(detections[lo : last + 1]) if lo <= last else np.empty(0, dtype=np.int64)
        row = lo + int(hits[0]) if hits.size else None
        credit = 0.0 if row is None else scaled_sigmoid(-(last - row + 1) / length) * profile.tp / _MAX_TP
        at_label = None
        if lab is not None and lab >= probation:
            at_label = scaled_sigmoid(-(last - lab + 1) / length) * profile.tp / _MAX_TP
        out.append(FirstDetection(first, last, lab, row, credit, at_label))
    return out


def _scaled_sigmoid_array(position: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Vectorised :func:`scaled_sigmoid`."""
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, out)


def _fp_costs(
    rows: npt.NDArray[np.int64], bounds: Sequence[tuple[int, int]], profile: Profile
) -> npt.NDArray[np.float64]:
    """The (negative) score of a false positive at each of ``rows``, from its closest preceding window."""
    real = [(first, last) for first, last in bounds if last >= first]
    if not real:
        return np.full(rows.shape[0], -profile.fp)
    real.sort(key=lambda b: b[1])
    ends = np.array([last for _, last in real], dtype=np.int64)
    spans = np.array([last - first for first, last in real], dtype=np.float64)
    k = np.searchsorted(ends, rows, side="left") - 1  # last window ending strictly before the row
    prev = np.maximum(k, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.where(spans[prev] > 0, np.abs(ends[prev] - rows) / spans[prev], np.inf)
    return np.where(k < 0, -profile.fp, _scaled_sigmoid_array(position) * profile.fp)


@dataclass
class CorpusFile:
    """One data file of a labelled corpus: its anomaly scores and its window row ranges."""

    name: str
    scores: npt.NDArray[np.float64]
    bounds: list[tuple[int, int]]
    probation: int = field(default=-1)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.probation < 0:
            self.probation = probation_rows(self.scores.shape[0])


@dataclass(frozen=True)
class CorpusScore:
    """Raw corpus score at one threshold, and every file's part of it."""

    threshold: float
    raw: float
    files: dict[str, FileScore]


def score_corpus(files: Sequence[CorpusFile], threshold: float, profile: Profile) -> CorpusScore:
    """Sum of the files' raw scores at ``threshold`` (``scorer.scoreCorpus``)."""
    per = {f.name: score_file(f.scores >= threshold, f.bounds, f.probation, profile) for f in files}
    return CorpusScore(threshold=threshold, raw=float(sum(s.raw for s in per.values())), files=per)


def twiddle(objective: Callable[[float], float], initial: float = 0.5, tolerance: float = 1e-7) -> tuple[float, float]:
    """NAB's one-parameter hill climb (``optimizer.twiddle``): best ``(x, objective(x))`` it visited."""
    past: dict[float, float] = {}
    x = initial
    delta = 0.1
    best = objective(x)
    past[x] = best
    while delta > tolerance:
        x += delta
        if x not in past:
            past[x] = objective(x)
        if past[x] > best:
            best = past[x]
            delta *= 2
        else:
            x -= 2 * delta
            if x not in past:
                past[x] = objective(x)
            if past[x] > best:
                best = past[x]
                delta *= 2
            else:
                x += delta
                delta *= 0.5
    best_x = max(past, key=lambda k: past[k])
    return best_x, past[best_x]


@dataclass(frozen=True)
class ThresholdResult:
    """The optimised threshold of one profile and the corpus score there."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float  # normalised, 0 = null detector, 100 = perfect


def _exact_optimum(files: Sequence[CorpusFile], profile: Profile) -> tuple[float, float]:
    """The threshold maximising the raw score over every distinct score value (sweep, no local optimum)."""
    values: list[npt.NDArray[np.float64]] = []
    deltas: list[npt.NDArray[np.float64]] = []
    base = 0.0
    for f in files:
        n = f.scores.shape[0]
        s = f.scores
        label = np.zeros(n, dtype=bool)
        for first, last in f.bounds:
            if last >= first:
                label[first : last + 1] = True
        base -= profile.fn * len(f.bounds)
        live = np.arange(n) >= f.probation
        # false positives: each row's own cost once its score is reached
        fp_rows = np.flatnonzero(live & ~label)
        if fp_rows.size:
            values.append(s[fp_rows])
            deltas.append(_fp_costs(fp_rows, f.bounds, profile))
        # windows: the earliest detection moves left each time the threshold passes a new record high
        for first, last in f.bounds:
            if last < first:
                continue
            length = last - first + 1
            lo = max(first, f.probation)
            if lo > last:
                continue
            seg = s[lo : last + 1]
            record_idx: list[int] = []
            record_val: list[float] = []
            for j, v in enumerate(seg):
                if not record_val or v > record_val[-1]:
                    record_idx.append(lo + j)
                    record_val.append(float(v))
            credit = [scaled_sigmoid(-(last - i + 1) / float(length)) * profile.tp / _MAX_TP for i in record_idx]
            k = len(record_idx) - 1
            values.append(np.array([record_val[k]]))
            deltas.append(np.array([profile.fn + credit[k]]))
            for j in range(k - 1, -1, -1):
                values.append(np.array([record_val[j]]))
                deltas.append(np.array([credit[j] - credit[j + 1]]))
    if not values:
        return 1.0, base
    v = np.concatenate(values)
    d = np.concatenate(deltas)
    order = np.argsort(-v, kind="stable")
    v, d = v[order], d[order]
    total = base + np.cumsum(d)
    last_of_value = np.r_[v[1:] != v[:-1], True]  # a threshold admits every row with an equal score
    cand_v, cand_s = v[last_of_value], total[last_of_value]
    best = int(np.argmax(cand_s))
    if cand_s[best] <= base:
        return float(np.nextafter(v[0], np.inf)), base
    return float(cand_v[best]), float(cand_s[best])


def normalised_score(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)`` (``runner.normalize``)."""
    return 100.0 * (raw - null) / (perfect - null)


def optimize_threshold(
    files: Sequence[CorpusFile],
    profile: Profile,
    method: Literal["nab", "exact"] = "nab",
) -> ThresholdResult:
    """One threshold for the whole corpus and the normalised score there.

    ``method="nab"`` is NAB's twiddle (what the published scoreboard used; it can stop at a local
    optimum); ``"exact"`` sweeps every distinct score value and so returns the global optimum.
    """
    n_windows = sum(len(f.bounds) for f in files)
    perfect = profile.tp * n_windows
    null = _null_score(files, profile)
    if method == "exact":
        threshold, raw = _exact_optimum(files, profile)
    else:

        def objective(t: float) -> float:
            if not 0.0 <= t <= 1.0:
                return -math.inf
            return score_corpus(files, t, profile).raw

        threshold, raw = twiddle(objective)
    return ThresholdResult(
        profile=profile.name,
        threshold=threshold,
        raw=raw,
        null=null,
        perfect=perfect,
        score=normalised_score(raw, null, perfect),
    )


def _null_score(files: Sequence[CorpusFile], profile: Profile) -> float:
    """The null detector (constant 0.5, NAB's ``null`` detector) at its own best threshold."""
    null_files = [CorpusFile(f.name, np.full(f.scores.shape[0], 0.5), f.bounds, f.probation) for f in files]
    never = score_corpus(null_files, 1.0, profile).raw
    always = score_corpus(null_files, 0.5, profile).raw
    return max(never, always)

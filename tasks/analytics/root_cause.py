"""Root-cause hints: which other series best explain an anomaly or alert on one series at a time.

Four kinds of evidence, each in [0, 1], are combined into one score per candidate series:

- **co-occurring anomaly**: the candidate's own stored anomaly score around ``at`` (the anomaly
  detector's ``anomalies`` table), or, where none is stored, how far the candidate left its own
  baseline (a robust z-score of the incident window against the hours before it);
- **lagged correlation of changes**: the best Pearson correlation between the target's and the
  candidate's first differences with the candidate leading by 0..L steps (a candidate that moves
  *after* the target counts less: it is more likely a symptom);
- **shared location labels** (host, service, pod, gpu, ...): the same machine or service is the
  usual suspect;
- **saturation**: a utilisation ratio newly at its limit during the incident is a cause more often
  than a consequence (this is what separates CPU from load average when both move together).

Why heuristics and not a causal model: the answer is a ranked list for a person to check, each
entry with its evidence; the weights are stated here and in the result so the ranking can be
argued with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from tasks.analytics.common import (
    LOCATION_LABELS,
    AnalyticsError,
    finite,
    is_counter,
    is_ratio,
    labels_of,
    not_counter,
)
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.timeparse import parse_duration

__all__ = ["WEIGHTS", "Cause", "RootCauseResult", "root_cause"]

#: How much each kind of evidence counts (they sum to 1, so the score stays in [0, 1]).
WEIGHTS = {"anomaly": 0.3, "correlation": 0.35, "labels": 0.2, "saturation": 0.15}
#: How many windows of history before the incident serve as the baseline.
BASELINE_WINDOWS = 6


@dataclass(slots=True)
class Cause:
    """One candidate explanation: the series, its combined score and the evidence behind it."""

    series: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "score": round(self.score, 4), "evidence": self.evidence}


@dataclass(slots=True)
class RootCauseResult:
    """Candidates ranked by score for ``target`` at ``at``; ``note`` says why the list is empty."""

    target: str
    at: datetime
    window_s: float
    causes: list[Cause] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "at": self.at.isoformat(),
            "window_s": self.window_s,
            "weights": WEIGHTS,
            "causes": [c.to_dict() for c in self.causes],
            "note": self.note,
        }


def _squash(x: float, half: float) -> float:
    return 0.0 if x <= 0 or not math.isfinite(x) else x / (x + half)


def _robust_z(base: np.ndarray, incident: np.ndarray) -> float:
    """90th percentile of |incident − baseline median| in baseline MADs (robust to a few spikes)."""
    if base.size < 3 or incident.size == 0:
        return 0.0
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med))) * 1.4826
    scale = max(mad, 1e-3 * abs(med), 1e-12)
    return float(np.percentile(np.abs(incident - med), 90)) / scale


def _lagged_corr(dy: np.ndarray, dx: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Best |corr(dx[t - lag], dy[t])| over lag in [-max_lag, max_lag] for every row of ``dx`` (one
    candidate's changes per row); negative lags (the candidate moving after the target) are
    discounted by 0.7. Returns (weighted corr, lag) per row; (0, 0) where no lag correlates.

    Why a matrix: the lake holds a thousand series; one ``np.corrcoef`` per candidate and lag was
    30,000 calls (2.8 s of a 4.7 s root-cause search on a 1,160-series lake); one matrix product per
    lag gives the same numbers. Ties go to the first lag in [-max_lag .. max_lag] order.
    """
    dx = np.atleast_2d(dx)
    n = len(dy)
    lags = range(-max_lag, max_lag + 1)
    w = np.zeros((dx.shape[0], len(lags)))
    for j, lag in enumerate(lags):
        if lag >= 0:
            a, b = dy[lag:], dx[:, : n - lag]
        else:
            a, b = dy[: n + lag], dx[:, -lag:]
        if a.size < 5 or a.std() == 0:
            continue
        ac = a - a.mean()
        bc = b - b.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (bc @ ac) / np.sqrt((ac @ ac) * (bc * bc).sum(axis=1))
        ok = (b.std(axis=1) != 0) & np.isfinite(r)
        w[:, j] = np.where(ok, np.abs(r) * (1.0 if lag >= 0 else 0.7), 0.0)
    best = w.max(axis=1, initial=0.0)
    best_lag = np.where(best > 0, np.argmax(w, axis=1) - max_lag, 0)
    return best, best_lag


def root_cause(lake: Lake, series: str, at: datetime, *, window: str = "1h", limit: int = 10) -> RootCauseResult:
    """Rank the lake's other series by how well they explain what ``series`` did around ``at``.

    ``series`` is one series in selector form (``metric{label="v"}``); the incident window is
    [at − window, at + window) and the baseline the ``BASELINE_WINDOWS`` windows before it.
    """
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise AnalyticsError(f"at: expected a timezone-aware datetime, got {at!r}")
    try:
        w = parse_duration(window)
    except (ValueError, TypeError) as e:
        raise AnalyticsError(f"window: {e}") from None
    if w <= timedelta(0):
        raise AnalyticsError(f"window: must be positive, got {window!r}")
    if not isinstance(limit, int) or limit < 1:
        raise AnalyticsError(f"limit: must be a positive integer, got {limit!r}")
    matched = lake.series(series)
    result = RootCauseResult(target=series, at=at, window_s=w.total_seconds())
    if matched.height == 0:
        result.note = "the series matches nothing in the lake"
        return result
    if matched.height > 1:
        names = ", ".join(matched.get_column("series").head(3).to_list())
        raise AnalyticsError(f"series: {series!r} matches {matched.height} series ({names}, ...); name exactly one")
    target = str(matched.get_column("series")[0])
    target_labels = labels_of(str(matched.get_column("labels")[0]))
    result.target = target
    if is_counter(str(matched.get_column("metric")[0])):
        result.note = "the series is a counter (its level only grows): explain its rate, a gauge, instead"
        return result

    step = max(timedelta(minutes=1), w / 60)
    step = timedelta(seconds=math.ceil(step.total_seconds() / 60) * 60)
    b0, i0, i1 = at - BASELINE_WINDOWS * w, at - w, at + w
    # Every series but counters (as ``bucketed`` reads them), as numbers keyed by series id: a
    # thousand series' label text would be joined, sorted and pivoted for nothing.
    cat = lake.catalogue()
    target_id = str(matched.get_column("series_id")[0])
    ids = cat.filter(not_counter()).get_column("series_id").to_list()
    frame = lake.window_buckets(ids, b0, i1, step, "avg").with_columns(pl.col("series_id").cast(pl.String))
    if not frame.height or target_id not in set(frame.get_column("series_id").unique().to_list()):
        result.note = "no samples of the series around that time"
        return result
    wide = frame.pivot(on="series_id", index="ts", values="value").sort("ts").fill_null(strategy="forward")
    wide = wide.fill_null(strategy="backward")
    ts = wide.get_column("ts")
    in_base = ((ts >= b0) & (ts < i0)).to_numpy()
    in_inc = ((ts >= i0) & (ts < i1)).to_numpy()
    # Changes are correlated over the incident and the two windows before it (the lead-up).
    in_corr = ((ts >= at - 3 * w) & (ts < i1)).to_numpy()
    y = wide.get_column(target_id).to_numpy().astype(np.float64)
    dy = np.diff(y[in_corr])
    max_lag = max(1, int((w / 4) / step))

    anomalies = lake.read_rows(S.ANOMALIES, i0, i1)
    anomaly_max: dict[int, float] = {}
    if anomalies.height:
        for sid, sc in anomalies.group_by("series_id").agg(pl.col("score").max()).iter_rows():
            anomaly_max[int(sid)] = float(sc)
    meta = {
        str(sid): (int(sid), m, lab, s)
        for sid, m, lab, s in cat.select("series_id", "metric", "labels", "series").iter_rows()
    }
    loc = {k: v for k, v in target_labels.items() if k in LOCATION_LABELS}

    causes: list[Cause] = []
    candidates = [c for c in wide.columns if c not in ("ts", target_id) and c in meta]
    xs = wide.select(candidates).to_numpy().astype(np.float64).T if candidates else np.empty((0, len(ts)))
    corrs, lags = _lagged_corr(dy, np.diff(xs[:, in_corr], axis=1), max_lag)
    for i, key in enumerate(candidates):
        sid, metric, labels_json, name = meta[key]
        x = xs[i]
        z = _robust_z(x[in_base], x[in_inc])
        stored = anomaly_max.get(sid)
        anomaly = max(_squash(z, 3.0), stored if stored is not None else 0.0)
        corr, lag = float(corrs[i]), int(lags[i])
        labels = labels_of(labels_json)
        shared = {k: v for k, v in loc.items() if labels.get(k) == v}
        label_score = len(shared) / len(loc) if loc else 0.0
        peak = float(x[in_inc].max()) if in_inc.any() else float("nan")
        # Saturation counts only when it is new (the series also left its baseline): a GPU that
        # is always busy explains nothing about this incident.
        saturated = is_ratio(metric) and peak >= 0.9 and z >= 3.0
        parts = {
            "anomaly": anomaly,
            "correlation": corr,
            "labels": label_score,
            "saturation": 1.0 if saturated else 0.0,
        }
        score = sum(WEIGHTS[k] * v for k, v in parts.items())
        if score <= 0:
            continue
        evidence: dict[str, Any] = {
            "parts": {k: finite(v, 4) for k, v in parts.items()},
            "deviation_z": finite(z, 2),
            "anomaly_score": finite(stored, 4),
            "correlation": finite(corr, 4),
            "lag_s": lag * step.total_seconds(),
            "shared_labels": shared,
            "peak_in_window": finite(peak),
            "saturated": saturated,
        }
        causes.append(Cause(name, score, evidence))
    causes.sort(key=lambda c: (-c.score, c.series))
    result.causes = causes[:limit]
    return result

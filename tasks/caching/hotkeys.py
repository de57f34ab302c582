"""Which keys will be hot in the next window: predictors behind one interface, best key first.

Why three: ``topk_prev`` (the most-read keys of the previous window) is what people do by hand and
the baseline every other policy must beat; ``decay`` (frequency with an exponential half-life, so
a burst fades and recency counts) needs no training; ``xgboost`` learns from the history itself
which mix of long- and short-term frequency, recency, gaps and — for timestamped histories — the
key's daily and weekly rhythm predicts the next window's reads. It trains only on windows that end
at or before the prediction point, so it never sees the future it is judged on.

Time is the history's (epoch seconds, or the request index for traces): ``window`` and half-lives
are in the same unit, and the feature windows are fractions and multiples of ``window``, so one
configuration serves a 5-minute window on a live Redis and a 91k-request window on a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import xgboost as xgb

from tasks.caching.access import AccessHistory

__all__ = [
    "DecayPredictor",
    "HotKey",
    "Predictor",
    "TopKPrevPredictor",
    "XGBRanker",
    "build_predictor",
    "key_features",
    "top_keys",
]

DAY = 86_400.0
WEEK = 7 * DAY
#: Feature windows and half-lives as multiples of the prediction window.
COUNT_WINDOWS = (0.01, 0.05, 0.2, 0.5, 1.0, 2.0)
HALF_LIVES = (0.05, 0.2, 0.9, 3.5)


@dataclass(frozen=True)
class HotKey:
    """A key with its predicted score (higher: hotter; comparable only within one prediction)."""

    key: str
    score: float


class Predictor(Protocol):
    """Scores every key seen before ``at``: ``(key ids, scores)``, unsorted."""

    name: str

    def scores(self, history: AccessHistory, at: float) -> tuple[np.ndarray, np.ndarray]: ...


def top_keys(predictor: Predictor, history: AccessHistory, at: float | None = None, top: int = 100) -> list[HotKey]:
    """The ``top`` hottest keys for the window starting at ``at`` (default: the end of the history).

    Ties keep the more recently read key first (a stable sort over ids by last access)."""
    at = history.end if at is None else at
    ids, s = predictor.scores(history, at)
    if not ids.size:
        return []
    order = np.lexsort((-_last_access(history.before(at), ids), -s))[:top]
    return [HotKey(history.keys[int(i)], float(s[j])) for j, i in zip(order, ids[order], strict=True)]


def ranked_ids(predictor: Predictor, history: AccessHistory, at: float, top: int) -> np.ndarray:
    """Key ids, best first (the benchmark's form of :func:`top_keys`)."""
    ids, s = predictor.scores(history, at)
    order = np.lexsort((-_last_access(history.before(at), ids), -s))[:top]
    return ids[order]


def _last_access(h: AccessHistory, ids: np.ndarray) -> np.ndarray:
    last = np.full(h.n_keys, -np.inf)
    if len(h):
        rev_u, rev_i = np.unique(h.ids[::-1], return_index=True)
        last[rev_u] = h.times[len(h) - 1 - rev_i]
    return last[ids]


@dataclass
class TopKPrevPredictor:
    """The baseline: reads per key over ``[at - window, at)``."""

    window: float
    name: str = "topk_prev"

    def scores(self, history: AccessHistory, at: float) -> tuple[np.ndarray, np.ndarray]:
        c = history.between(at - self.window, at).key_counts()
        ids = np.flatnonzero(c > 0)
        return ids, c[ids]


@dataclass
class DecayPredictor:
    """Σ 2^(-(at - t)/half_life) over a key's reads before ``at``: frequency that fades with age."""

    half_life: float
    name: str = "decay"

    def scores(self, history: AccessHistory, at: float) -> tuple[np.ndarray, np.ndarray]:
        h = history.before(at)
        w = h.counts * np.exp2(-(at - h.times) / self.half_life)
        s = np.bincount(h.ids, weights=w, minlength=h.n_keys)
        ids = np.flatnonzero(h.key_counts() > 0)
        return ids, s[ids]


def key_features(
    history: AccessHistory, at: float, window: float, *, max_keys: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-key features at ``at`` from the reads before it: ``(key ids, matrix, feature names)``.

    Names say what they are (``count_last_0.2w``: reads in the last 0.2 windows). Only keys read
    before ``at`` are candidates (nothing predicts a never-seen key), at most ``max_keys`` of them
    (the most-read), so memory stays bounded on a huge history."""
    h = history.before(at)
    n = h.n_keys
    total = np.bincount(h.ids, weights=h.counts, minlength=n)
    ids = np.flatnonzero(total > 0)
    if ids.size > max_keys:
        ids = np.sort(ids[np.argsort(-total[ids], kind="stable")[:max_keys]])
    cols: dict[str, np.ndarray] = {}
    for f in COUNT_WINDOWS:
        cols[f"count_last_{f}w"] = h.between(at - f * window, at).key_counts()[ids]
    for f in HALF_LIVES:
        w = h.counts * np.exp2(-(at - h.times) / (f * window))
        cols[f"decay_hl_{f}w"] = np.bincount(h.ids, weights=w, minlength=n)[ids]
    cnt = total[ids]
    # rates, not totals: a total grows with the history, so trees trained on a shorter past would
    # meet values they never saw at prediction time (a key read daily for 10 days vs 3)
    last = np.full(n, np.nan)
    first = np.full(n, np.nan)
    prev = np.full(n, np.nan)
    if len(h):
        rev_u, rev_i = np.unique(h.ids[::-1], return_index=True)
        last_pos = len(h) - 1 - rev_i
        last[rev_u] = h.times[last_pos]
        f_u, f_i = np.unique(h.ids, return_index=True)
        first[f_u] = h.times[f_i]
        mask = np.ones(len(h), bool)
        mask[last_pos] = False
        if mask.any():
            ids2, t2 = h.ids[mask], h.times[mask]
            p_u, p_i = np.unique(ids2[::-1], return_index=True)
            prev[p_u] = t2[::-1][p_i]
    span = max(at - h.start, 1.0)
    rec = (at - last[ids]) / window
    cols["recency_w"] = rec
    age = (at - first[ids]) / window
    cols["reads_per_window"] = cnt / np.maximum(age, 1.0)
    cols["age_w_capped_20"] = np.minimum(age, 20.0)
    mean_gap = np.where(cnt > 1, (last[ids] - first[ids]) / np.maximum(cnt - 1, 1), span) / window
    cols["mean_gap_w"] = mean_gap
    cols["last_gap_w"] = np.where(np.isnan(prev[ids]), span, last[ids] - prev[ids]) / window
    cols["recency_over_gap"] = rec / np.maximum(mean_gap, 1e-9)
    if h.timestamped:
        for name, period in (("1d", DAY), ("7d", WEEK)):
            cols[f"count_same_window_{name}_ago"] = h.between(at - period, at - period + window).key_counts()[ids]
        # the share of a key's reads that fell at this time of day, [at, at + window) modulo a day
        # (a weekly share needs weeks of history to mean anything; the 7-days-ago count stands in)
        inside = np.mod(h.times - at, DAY) < window
        share = np.bincount(h.ids, weights=h.counts * inside, minlength=n)[ids] / np.maximum(cnt, 1e-9)
        cols["share_at_this_time_of_day"] = share
    x = np.column_stack(list(cols.values())).astype(np.float32) if ids.size else np.zeros((0, len(cols)), np.float32)
    return ids, x, list(cols)


@dataclass
class XGBRanker:
    """Gradient-boosted trees scoring log(1 + reads in the next window) from :func:`key_features`.

    ``fit(history, at)`` trains on ``points`` prediction points ``at - window - k·stride·window``
    (and, for timestamped histories, the same hour on up to ``days`` previous days), each labelled
    with the reads in the window after it — all of it before ``at``."""

    window: float
    points: int = 4
    stride: float = 0.25
    days: int = 7
    rounds: int = 100
    max_depth: int = 6
    eta: float = 0.1
    #: a leaf needs this many examples: with few positives (a key read daily: one per day) a
    #: smaller one lets the trees memorise them by a feature that drifts (the mean gap)
    min_child_weight: float = 5.0
    threads: int = 2
    seed: int = 0
    name: str = "xgboost"
    booster: xgb.Booster | None = field(default=None, repr=False)
    features: list[str] = field(default_factory=list, repr=False)

    def training_points(self, history: AccessHistory, at: float) -> list[float]:
        """Where the labelled examples come from: windows that end by ``at`` and start after some history."""
        near = [self.window + k * self.stride * self.window for k in range(self.points)]
        cands = [at - g for g in near]
        if history.timestamped:
            # the same time of day on previous days, AND the windows just before it on those days:
            # with the near windows from the last day only, every negative example shares the last
            # day's drifting features (a daily key's mean gap grows by the day) and the trees learn
            # "which day" instead of "which time of day" (a 09:00 key ranked 9th at 08:58)
            for d in range(1, self.days + 1):
                cands += [at - d * DAY] + [at - d * DAY - g for g in near]
        lo = history.start + self.window
        return sorted({p for p in cands if p > lo and p + self.window <= at})

    def fit(self, history: AccessHistory, at: float | None = None) -> XGBRanker:
        at = history.end if at is None else at
        past = history.before(at)
        xs, ys = [], []
        for p in self.training_points(past, at):
            ids, x, names = key_features(past, p, self.window)
            if not ids.size:
                continue
            y = np.log1p(past.between(p, p + self.window).key_counts()[ids])
            xs.append(x)
            ys.append(y)
            self.features = names
        if not xs:
            raise ValueError(
                "hot-key model: not enough history to train "
                f"(need more than two windows of {self.window:g} before the prediction point)"
            )
        params = {
            "objective": "reg:squarederror",
            "max_depth": self.max_depth,
            "eta": self.eta,
            "min_child_weight": self.min_child_weight,
            "tree_method": "hist",
            "nthread": self.threads,
            "seed": self.seed,
        }
        data = xgb.DMatrix(np.vstack(xs), label=np.concatenate(ys), feature_names=self.features)
        self.booster = xgb.train(params, data, self.rounds)
        return self

    def scores(self, history: AccessHistory, at: float) -> tuple[np.ndarray, np.ndarray]:
        if self.booster is None:
            self.fit(history, at)
        assert self.booster is not None
        ids, x, names = key_features(history, at, self.window)
        if not ids.size:
            return ids, np.zeros(0)
        if names != self.features:
            raise ValueError("hot-key model: trained on other features (timestamped vs virtual time); retrain it")
        return ids, self.booster.predict(xgb.DMatrix(x, feature_names=names)).astype(np.float64)

    def save(self, path: str | Path) -> None:
        """Keep the trained model (XGBoost's JSON), so a flow trains and the CLI only predicts."""
        if self.booster is None:
            raise ValueError("hot-key model: nothing to save, fit it first")
        self.booster.set_attr(window=repr(self.window))
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: str | Path) -> XGBRanker:
        booster = xgb.Booster()
        booster.load_model(str(path))
        window = float(booster.attr("window") or "nan")
        return cls(window=window, booster=booster, features=list(booster.feature_names or []))


def build_predictor(
    model: Literal["topk_prev", "decay", "xgboost"], *, window: float, half_life: float
) -> TopKPrevPredictor | DecayPredictor | XGBRanker:
    """The predictor a name picks (``cache.hot.model``), with the window and half-life in history time."""
    if model == "topk_prev":
        return TopKPrevPredictor(window)
    if model == "decay":
        return DecayPredictor(half_life)
    if model == "xgboost":
        return XGBRanker(window)
    raise ValueError(f"cache.hot.model: unknown model {model!r} (known: topk_prev, decay, xgboost)")

"""The learned strategy: predicted latency and failure for *this query on that target*, lowest
expected cost wins, P2C-EWMA among the targets the model cannot tell apart, a bounded exploration.

Why a model at all: P2C-EWMA sees one latency per target, averaged over every kind of query; when
target 1 is fast for kind A and slow for kind B and target 2 the reverse, both averages look alike
and it routes blind. A model fed the query's features (``tasks.routing.features``) and the target
sees the difference.

The model (:class:`RouteModel`) is two XGBoost boosters over one row per (query, target): a
regressor of ``log1p(latency_ms)`` (successful attempts; the log keeps a few slow outliers from
dominating squared error) and a classifier of failure (every attempt). A row is the query's columns
(``features.QUERY_COLUMNS``), a one-hot of the target (``pool/name``, as known at training) and the
target's live state at decision time: requests in flight and ``log1p`` of its peak-EWMA latency.

**Load beyond the training data.** Trees are flat past their last split, so a target with more
requests in flight than the model ever saw for it would be predicted as if it had the most it saw.
Past that point the prediction is extrapolated as a processor-sharing server scales (Finagle's
peak-EWMA assumption too): service time × ``(pending + 1) / (max_seen + 1)``. Inside the range the
model's own learned load response stands (no double counting).

**Choosing** (:class:`LearnedStrategy`): every candidate is scored, expected cost =
``latency_weight·latency + price_weight·price + failure_penalty_ms·p_fail``; P2C-EWMA among those
within ``tie_tolerance`` of the best. Two signals come from the live state rather than the model,
because the model is only as recent as the router flow's last retrain: ``p_fail`` is the model's
probability updated with the target's recent failures (:class:`LiveFailures`, read from the
Router's counters, fading with ``live_decay_s``), so a failure burst is seen within a few attempts
— with no model yet too; and the target's in-flight count enters the model (``pending``). Exploration
(``exploration``, a share of queries) goes only to targets within ``1 + explore_margin`` of the best
cost: measured in-process, a 5× slower target explored at 5 % made the p99 (BENCHMARKS.md, "Learned
strategy, in-process").

Prediction for a decision walks the boosters' trees as numpy arrays (:class:`Forest`, checked
equal to XGBoost's own prediction in the tests): XGBoost's ``inplace_predict`` has a fixed cost per
call larger than the whole budget. See BENCHMARKS.md ("router: learned strategy").
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from tasks.config.routing import LearnedSettings
from tasks.registry import register_kind
from tasks.routing.features import QUERY_COLUMNS, encode_query, query_features
from tasks.routing.model import Query, Strategy, TargetState

__all__ = [
    "LIVE_COLUMNS",
    "LIVE_PRIOR_WEIGHT",
    "MODEL_KIND",
    "LearnedStrategy",
    "LiveFailures",
    "RouteModel",
    "target_key",
]

MODEL_KIND = "router_xgboost"
LIVE_COLUMNS = ("pending", "ewma_log1p")
_Q = len(QUERY_COLUMNS)
_FORMAT = 1


def target_key(pool: str, target: str) -> str:
    """A target's identity in the model: unique across pools."""
    return f"{pool}/{target}"


def _params(seed: int, objective: str) -> dict[str, Any]:
    return {
        "objective": objective,
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.15,
        "min_child_weight": 2.0,
        "subsample": 0.9,
        "seed": seed,
        "nthread": 2,
        "verbosity": 0,
    }


def _depth(left: list[int], right: list[int]) -> int:
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, d = stack.pop()
        if left[node] == -1:
            deepest = max(deepest, d)
        else:
            stack += [(left[node], d + 1), (right[node], d + 1)]
    return deepest


class Forest:
    """A booster's trees as numpy arrays, walked level by level for all (row, tree) pairs at once.

    Why: ``inplace_predict`` costs ~170 µs per call on this box even for one tree (fixed set-up per
    call), and a decision makes two calls; walking ≤ 6 levels of ≤ 120 trees for ≤ 10 rows with
    numpy costs a fraction of that. Used for small batches (a decision); bulk scoring (the
    backtest) uses XGBoost itself. Splits follow XGBoost: ``x < threshold`` goes left. Our rows are
    never NaN, so XGBoost's default direction for missing values never applies.
    """

    def __init__(self, booster: xgb.Booster) -> None:
        doc = json.loads(bytes(booster.save_raw("json")))["learner"]
        trees = doc["gradient_booster"]["model"]["trees"]
        width = max(len(t["left_children"]) for t in trees)
        n = len(trees)
        self.left: np.ndarray = np.zeros((n, width), dtype=np.int64)
        self.right: np.ndarray = np.zeros((n, width), dtype=np.int64)
        self.feature: np.ndarray = np.zeros((n, width), dtype=np.int64)
        self.threshold: np.ndarray = np.zeros((n, width), dtype=np.float32)
        self.value: np.ndarray = np.zeros((n, width), dtype=np.float32)
        self.depth = 0
        for i, t in enumerate(trees):
            left, right = t["left_children"], t["right_children"]
            k = len(left)
            idx = np.arange(k)
            lc, rc = np.array(left), np.array(right)
            leaf = lc == -1
            base = i * width  # flat indices: a leaf points at itself, so extra levels are no-ops
            self.left[i, :k] = np.where(leaf, idx, lc) + base
            self.right[i, :k] = np.where(leaf, idx, rc) + base
            self.feature[i, :k] = np.where(leaf, 0, np.array(t["split_indices"]))
            cond = np.array(t["split_conditions"], dtype=np.float32)
            self.threshold[i, :k] = np.where(leaf, np.inf, cond)
            self.value[i, :k] = np.where(leaf, cond, 0.0)
            self.depth = max(self.depth, _depth(left, right))
        self.left, self.right = self.left.ravel(), self.right.ravel()
        self.feature, self.threshold, self.value = self.feature.ravel(), self.threshold.ravel(), self.value.ravel()
        self.roots = np.arange(n, dtype=np.int64) * width
        raw = str(doc["learner_model_param"]["base_score"]).strip("[]").split(",")[0]
        self.logistic = doc["objective"]["name"] == "binary:logistic"
        score = float(raw)
        self.base_margin = math.log(score / (1.0 - score)) if self.logistic else score

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots)))
        for _ in range(self.depth):
            go_left = x[rows, self.feature[node]] < self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        margin = self.value[node].sum(axis=1, dtype=np.float64) + self.base_margin
        return 1.0 / (1.0 + np.exp(-margin)) if self.logistic else margin


#: batches up to this many rows are scored with :class:`Forest` (a decision), larger with XGBoost
FOREST_MAX_ROWS = 64


class RouteModel:
    """The fitted latency + failure model over (query features, target, live state)."""

    kind: ClassVar[str] = MODEL_KIND

    def __init__(
        self,
        targets: Sequence[str],
        latency: xgb.Booster,
        failure: xgb.Booster | None,
        *,
        failure_rate: float,
        max_pending: Mapping[str, float],
        meta: Mapping[str, Any] | None = None,
        compile_trees: bool = True,
    ) -> None:
        self.targets = list(targets)
        self._index = {t: i for i, t in enumerate(self.targets)}
        self.latency = latency
        self.failure = failure  # None: one class only in training → the constant ``failure_rate``
        self.failure_rate = float(failure_rate)
        self.max_pending = {k: float(v) for k, v in max_pending.items()}
        self.meta = dict(meta or {})
        self._latency_forest: Forest | None = None
        self._failure_forest: Forest | None = None
        if compile_trees:  # (fit builds a shell around an empty booster first, to lay out its rows)
            self._latency_forest = Forest(latency)
            self._failure_forest = Forest(failure) if failure is not None else None

    @property
    def columns(self) -> int:
        return _Q + len(self.targets) + len(LIVE_COLUMNS)

    # ---- rows ------------------------------------------------------------------------------
    def _fill(self, row: np.ndarray, key: str, pending: float, ewma_ms: float) -> None:
        idx = self._index.get(key)
        if idx is not None:
            row[_Q + idx] = 1.0
        row[-2] = pending
        row[-1] = math.log1p(max(ewma_ms, 0.0))

    def matrix(self, records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> np.ndarray:
        """Training/backtest rows: each record's query columns, its target, and the live state the
        Router recorded with it (``pending``, ``ewma_ms``; 0 when absent)."""
        x = np.zeros((len(records), self.columns), dtype=np.float32)
        for i, (rec, key) in enumerate(zip(records, keys, strict=True)):
            encode_query(rec, x[i, :_Q])
            self._fill(x[i], key, _num(rec.get("pending")), _num(rec.get("ewma_ms")))
        return x

    # ---- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        records: Sequence[Mapping[str, Any]],
        keys: Sequence[str],
        latency_ms: np.ndarray,
        ok: np.ndarray,
        *,
        seed: int = 0,
        rounds: int = 120,
        meta: Mapping[str, Any] | None = None,
    ) -> RouteModel:
        """Fit both boosters on outcome rows (``keys``: ``target_key`` of each row's target)."""
        if len(records) == 0:
            raise ValueError("records: no outcomes to fit on")
        targets = sorted(set(keys))
        max_pending: dict[str, float] = {}
        for rec, key in zip(records, keys, strict=True):
            max_pending[key] = max(max_pending.get(key, 0.0), _num(rec.get("pending")))
        shell = cls(
            targets, xgb.Booster(), None, failure_rate=0.0, max_pending=max_pending, meta=meta, compile_trees=False
        )
        x = shell.matrix(records, keys)
        ok = np.asarray(ok, dtype=bool)
        lat = np.asarray(latency_ms, dtype=np.float64)
        good = ok if ok.any() else np.ones_like(ok)
        dlat = xgb.DMatrix(x[good], label=np.log1p(np.maximum(lat[good], 0.0)))
        latency = xgb.train(_params(seed, "reg:squarederror"), dlat, num_boost_round=rounds)
        fail = (~ok).astype(np.float32)
        rate = float(fail.mean())
        failure = None
        if 0.0 < rate < 1.0:
            failure = xgb.train(_params(seed, "binary:logistic"), xgb.DMatrix(x, label=fail), num_boost_round=rounds)
        return cls(targets, latency, failure, failure_rate=rate, max_pending=max_pending, meta=meta)

    # ---- predicting ------------------------------------------------------------------------
    def predict_rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Service latency (ms, no load extrapolation) and failure probability of prepared rows."""
        small = len(x) <= FOREST_MAX_ROWS and self._latency_forest is not None
        lat_f, fail_f = (self._latency_forest, self._failure_forest) if small else (None, None)
        raw = lat_f(x) if lat_f is not None else self.latency.inplace_predict(x)
        lat = np.expm1(np.asarray(raw, dtype=np.float64))
        if self.failure is not None:
            raw_p = fail_f(x) if fail_f is not None else self.failure.inplace_predict(x)
            p = np.asarray(raw_p, dtype=np.float64)
        else:
            p = np.full(len(x), self.failure_rate)
        return np.maximum(lat, 0.0), np.clip(p, 0.0, 1.0)

    def predict(
        self, features: Mapping[str, Any], targets: Sequence[TargetState], now: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expected latency (ms, load beyond the trained range extrapolated) and failure
        probability of this query on each target, given each target's live state now."""
        x = np.zeros((len(targets), self.columns), dtype=np.float32)
        x[:, :_Q] = encode_query(features)
        keys = [target_key(t.pool, t.name) for t in targets]
        for i, (t, key) in enumerate(zip(targets, keys, strict=True)):
            self._fill(x[i], key, float(t.pending), t.ewma.get(now))
        lat, p = self.predict_rows(x)
        pending = np.array([t.pending for t in targets], dtype=np.float64)
        return lat * self.load_factor(keys, pending), p

    def load_factor(self, keys: Sequence[str], pending: np.ndarray) -> np.ndarray:
        """Processor-sharing extrapolation past the most requests in flight seen per target."""
        seen = np.array([self.max_pending.get(k, 0.0) for k in keys], dtype=np.float64)
        return np.maximum(1.0, (pending + 1.0) / (seen + 1.0))

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.latency.save_model(str(path / "latency.ubj"))
        if self.failure is not None:
            self.failure.save_model(str(path / "failure.ubj"))
        doc = {
            "format": _FORMAT,
            "kind": self.kind,
            "targets": self.targets,
            "query_columns": list(QUERY_COLUMNS),
            "failure_rate": self.failure_rate,
            "max_pending": self.max_pending,
            "meta": self.meta,
        }
        (path / "route_model.json").write_text(json.dumps(doc, indent=1, default=str))

    @classmethod
    def load(cls, path: Path) -> RouteModel:
        doc = json.loads((path / "route_model.json").read_text())
        if doc.get("format") != _FORMAT or doc.get("query_columns") != list(QUERY_COLUMNS):
            raise ValueError(f"{path}: a route model of another format (retrain it with this version)")
        latency = xgb.Booster(model_file=str(path / "latency.ubj"))
        fpath = path / "failure.ubj"
        failure = xgb.Booster(model_file=str(fpath)) if fpath.exists() else None
        return cls(
            doc["targets"],
            latency,
            failure,
            failure_rate=doc["failure_rate"],
            max_pending=doc["max_pending"],
            meta=doc.get("meta"),
        )


register_kind(MODEL_KIND, RouteModel.load)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0


def expected_cost(
    settings: LearnedSettings, latency_ms: np.ndarray, price: np.ndarray, p_fail: np.ndarray
) -> np.ndarray:
    """latency_weight·latency + price_weight·price + failure_penalty_ms·p_fail, per target (ms)."""
    return settings.latency_weight * latency_ms + settings.price_weight * price + settings.failure_penalty_ms * p_fail


class LiveFailures:
    """A target's recent failure rate, read from the Router's counters (``requests``, ``failures``).

    Why: the model's failure probability is what the target did at training time (up to the flow's
    last retrain); a target that starts failing now must be seen within seconds. Counts decay with
    time constant ``decay_s``, so once traffic moves away the rate returns to the model's prior
    (and the target is tried again), as a peak-EWMA forgets a slow target. Read from counters the
    Router already keeps, so the strategy needs no hook into ``record``.
    """

    __slots__ = ("fails", "failures", "requests", "sent", "stamp")

    def __init__(self, t: TargetState, now: float) -> None:
        self.requests, self.failures = t.requests, t.failures
        self.sent = self.fails = 0.0
        self.stamp = now

    def update(self, t: TargetState, now: float, decay_s: float) -> None:
        w = math.exp(-max(now - self.stamp, 0.0) / decay_s)
        # a target rebuilt by a reload starts its counters again: never a negative count
        self.sent = self.sent * w + max(t.requests - self.requests, 0)
        self.fails = self.fails * w + max(t.failures - self.failures, 0)
        self.requests, self.failures, self.stamp = t.requests, t.failures, now

    def blend(self, prior: float) -> float:
        """The posterior failure rate: ``LIVE_PRIOR_WEIGHT`` pseudo-attempts at the model's ``prior``."""
        return (self.fails + LIVE_PRIOR_WEIGHT * prior) / (self.sent + LIVE_PRIOR_WEIGHT)


#: how many attempts the model's failure probability is worth against live outcomes: a handful of
#: recent failures outweigh it (a failure burst is seen in seconds), a single one does not
LIVE_PRIOR_WEIGHT = 5.0


class LearnedStrategy:
    """Lowest expected cost per query; P2C-EWMA (``fallback``) among ties and without a model.

    Every candidate is scored (not two sampled, as P2C does): one balancer over a pool's few
    targets has no herd to fear, and the model's load response (``pending``) already charges a busy
    target for its queue. Exploration is bounded where it hurts: it goes only to targets whose
    expected cost is within ``1 + explore_margin`` times the best, since a query sent to a target
    the model is sure is several times slower lands in the tail (at 5 % exploration over a 5×
    slower target, p99 becomes that target's latency).
    """

    name = "learned"

    def __init__(self, settings: LearnedSettings, fallback: Strategy, rng: random.Random) -> None:
        self.settings = settings
        self.fallback = fallback
        self.rng = rng
        self.model: RouteModel | None = None
        #: whether the last ``choose`` explored (the Router copies it to ``Decision.explored``)
        self.last_explored = False
        #: expected cost per candidate name of the last model decision (for status and tests)
        self.last_costs: dict[str, float] = {}
        self._live: dict[tuple[str, str], LiveFailures] = {}

    def live_failure(self, t: TargetState, prior: float, now: float) -> float:
        """``t``'s failure probability: the model's ``prior`` updated with its recent outcomes."""
        key = (t.pool, t.name)
        live = self._live.get(key)
        if live is None:
            live = self._live[key] = LiveFailures(t, now)
        else:
            live.update(t, now, self.settings.live_decay_s)
        return live.blend(prior)

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        self.last_explored = False
        self.last_costs = {}
        if len(candidates) == 1:
            return candidates[0]
        if self.model is None:
            return self._choose_without_model(query, candidates, now)
        lat, p_model = self.model.predict(query_features(query), candidates, now)
        p_fail = np.array([self.live_failure(c, float(p), now) for c, p in zip(candidates, p_model, strict=True)])
        price = np.array([c.target.cost for c in candidates], dtype=np.float64)
        cost = expected_cost(self.settings, lat, price, p_fail)
        self.last_costs = {c.name: float(x) for c, x in zip(candidates, cost, strict=True)}
        best = float(cost.min())
        if self.settings.exploration > 0 and self.rng.random() < self.settings.exploration:
            reach = best + abs(best) * self.settings.explore_margin + 1e-9
            near = [c for c, x in zip(candidates, cost, strict=True) if x <= reach]
            if len(near) > 1:
                self.last_explored = True
                return near[self.rng.randrange(len(near))]
        bar = best + abs(best) * self.settings.tie_tolerance + 1e-9
        tied = [c for c, x in zip(candidates, cost, strict=True) if x <= bar]
        return tied[0] if len(tied) == 1 else self.fallback.choose(query, tied, now)

    def _choose_without_model(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        """No model yet: P2C-EWMA, with each target's live failure rate in its cost.

        While no candidate has failed lately this *is* the fallback. Once one has, two random
        candidates are compared on ``ewma × (pending + 1) + failure_penalty_ms × p_fail`` (the
        Finagle load plus the penalty the model's cost uses): a target answering 30 % HTTP 500 —
        below the breaker's threshold and rarely 5 in a row — stops winning its pairs until its
        failures are ``live_decay_s`` old, instead of taking its full share as P2C-EWMA gives it.
        """
        p_fail = [self.live_failure(c, 0.0, now) for c in candidates]
        if self.settings.failure_penalty_ms <= 0 or max(p_fail) <= 0.0:
            return self.fallback.choose(query, candidates, now)
        i = self.rng.randrange(len(candidates))
        j = self.rng.randrange(len(candidates) - 1)
        j += j >= i
        penalty = self.settings.failure_penalty_ms

        def cost(k: int) -> float:
            return candidates[k].cost(now) + penalty * p_fail[k]

        return candidates[i] if cost(i) <= cost(j) else candidates[j]

    def status(self) -> dict[str, Any]:
        """What the strategy runs on now: the model, or the fallback while there is none."""
        if self.model is None:
            return {"strategy": self.name, "mode": f"fallback ({self.fallback.name}): no model yet"}
        return {"strategy": self.name, "mode": "model", "kind": self.model.kind, "targets": self.model.targets}

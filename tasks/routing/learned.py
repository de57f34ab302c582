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

Prediction is one ``inplace_predict`` per booster on an ``n_targets × columns`` float32 array
(single-threaded): see BENCHMARKS.md ("router: learned strategy") for the measured cost.
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

__all__ = ["LIVE_COLUMNS", "MODEL_KIND", "LearnedStrategy", "RouteModel", "target_key"]

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
    ) -> None:
        self.targets = list(targets)
        self._index = {t: i for i, t in enumerate(self.targets)}
        self.latency = latency
        self.failure = failure  # None: one class only in training → the constant ``failure_rate``
        self.failure_rate = float(failure_rate)
        self.max_pending = {k: float(v) for k, v in max_pending.items()}
        self.meta = dict(meta or {})
        for b in (latency, failure):
            if b is not None:
                b.set_param({"nthread": 1})  # a decision is a handful of rows: threads cost more than they save

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
        shell = cls(targets, xgb.Booster(), None, failure_rate=0.0, max_pending=max_pending, meta=meta)
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
        lat = np.expm1(np.asarray(self.latency.inplace_predict(x), dtype=np.float64))
        if self.failure is not None:
            p = np.asarray(self.failure.inplace_predict(x), dtype=np.float64)
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


class LearnedStrategy:
    """Lowest expected cost per query; P2C-EWMA (``fallback``) among ties and without a model."""

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

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        self.last_explored = False
        self.last_costs = {}
        if self.model is None or len(candidates) == 1:
            return self.fallback.choose(query, candidates, now)
        if self.settings.exploration > 0 and self.rng.random() < self.settings.exploration:
            self.last_explored = True
            return candidates[self.rng.randrange(len(candidates))]
        lat, p_fail = self.model.predict(query_features(query), candidates, now)
        price = np.array([c.target.cost for c in candidates], dtype=np.float64)
        cost = expected_cost(self.settings, lat, price, p_fail)
        self.last_costs = {c.name: float(x) for c, x in zip(candidates, cost, strict=True)}
        best = float(cost.min())
        bar = best + abs(best) * self.settings.tie_tolerance + 1e-9
        tied = [c for c, x in zip(candidates, cost, strict=True) if x <= bar]
        return tied[0] if len(tied) == 1 else self.fallback.choose(query, tied, now)

    def status(self) -> dict[str, Any]:
        """What the strategy runs on now: the model, or the fallback while there is none."""
        if self.model is None:
            return {"strategy": self.name, "mode": f"fallback ({self.fallback.name}): no model yet"}
        return {"strategy": self.name, "mode": "model", "kind": self.model.kind, "targets": self.model.targets}

"""Retraining the router's model from its recorded outcomes, and judging it before it routes.

Steps (``retrain_router``): read ``router_outcomes`` over ``router.learned.history``; order by time;
fit a :class:`RouteModel` on the first 80 %; **backtest** on the last 20 % (never seen in fitting);
register the challenger; promote it (an action, ``tasks.routing.promotion``) only when it wins.

How the backtest judges a routing policy from logged outcomes (off-policy, no new traffic):

1. **Prediction error.** On held-out successes, the mean absolute error of ``log1p(latency)``
   predicted by the model for the target that served the query, against the live strategy's own
   implicit estimate: the target's peak-EWMA at decision time (recorded as ``ewma_ms``).
2. **Counterfactual cost of the model's picks** (a matched "direct method"). Each held-out query
   has a class — its route template and declared kind. For the target the model would pick, the
   realised cost of that *class on that target* is known from held-out outcomes (the live strategy
   and its exploration sent similar queries there): the mean of ``latency_weight·latency +
   price_weight·price + failure_penalty_ms·failed`` over them. Where that cell holds fewer than
   ``min_cell`` outcomes, the query counts at its own logged cost (as if the model had agreed with
   the live choice: unknown is not credited). Each candidate is scored with its last recorded live
   state (``pending``, ``ewma_ms``) at or before the query. The live policy's cost is the mean
   logged cost of the same queries; a champion is scored with the same procedure.

A challenger **wins** when its counterfactual cost beats both the live policy's and the champion's
by ``min_improvement`` and its prediction error is no worse than the EWMA's. Limits, said plainly:
the cell means assume outcomes within a class are exchangeable, and they do not see the load the
new picks would add (the strategy's load extrapolation and P2C among ties cover that at run time).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.actuators import ActionLedger
from tasks.config import Settings
from tasks.config.routing import LearnedSettings
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.registry import ModelRegistry, RegistryError
from tasks.routing.features import route_template
from tasks.routing.learned import RouteModel, expected_cost, target_key
from tasks.routing.promotion import load_champion, promote_model, promotion_action
from tasks.timeparse import parse_duration

__all__ = [
    "Backtest",
    "OutcomeRows",
    "RetrainReport",
    "backtest",
    "decide",
    "fit",
    "load_outcomes",
    "outcome_rows",
    "retrain_router",
    "split",
]

TRAIN_FRACTION = 0.8
MIN_CELL = 5
MIN_IMPROVEMENT = 0.02


@dataclass
class OutcomeRows:
    """Decoded outcomes in time order: what the model is fitted and backtested on."""

    records: list[dict[str, Any]]  # the feature record of each attempt (Decision.features)
    keys: list[str]  # target_key(pool, target)
    latency_ms: np.ndarray
    ok: np.ndarray
    price: np.ndarray  # the target's configured cost per request (0 when no longer configured)
    ts: list[datetime]

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, idx: slice) -> OutcomeRows:
        return OutcomeRows(
            self.records[idx], self.keys[idx], self.latency_ms[idx], self.ok[idx], self.price[idx], self.ts[idx]
        )

    def cost(self, learned: LearnedSettings) -> np.ndarray:
        """The realised cost of each attempt, in the strategy's units (ms)."""
        return expected_cost(learned, self.latency_ms, self.price, (~self.ok).astype(np.float64))

    def query_class(self, i: int) -> tuple[str, str, str]:
        """(pool, route, kind): queries the backtest treats as alike."""
        rec = self.records[i]
        return self.keys[i].split("/", 1)[0], str(rec.get("route", "")), str(rec.get("kind", ""))


def load_outcomes(lake: Lake, start: datetime, end: datetime) -> pl.DataFrame:
    """``router_outcomes`` in [start, end), oldest first."""
    return lake.read_rows(S.ROUTER_OUTCOMES, start, end).sort("ts", "outcome_id")


def _prices(settings: Settings) -> dict[str, float]:
    return {target_key(p.name, t.name): t.cost for p in settings.router.pools for t in p.targets}


def outcome_rows(df: pl.DataFrame, settings: Settings) -> OutcomeRows:
    """Decode a frame of outcomes; a row whose features are not a JSON object keeps the columns."""
    prices = _prices(settings)
    records: list[dict[str, Any]] = []
    keys: list[str] = []
    for pool, target, method, path, kind, size, feats in df.select(
        "pool", "target", "method", "path", "kind", "size", "features"
    ).iter_rows():
        try:
            rec = json.loads(feats) if feats else {}
        except ValueError:
            rec = {}
        if not isinstance(rec, dict):
            rec = {}
        if "route" not in rec:  # outcomes recorded without features: classify what the columns say
            rec.update(
                method=method, route=route_template(path), kind=kind or "", size_log2=math.log2(1 + max(size, 0))
            )
        records.append(rec)
        keys.append(target_key(pool, target))
    return OutcomeRows(
        records,
        keys,
        df["latency_ms"].to_numpy().astype(np.float64),
        df["ok"].to_numpy().astype(bool),
        np.array([prices.get(k, 0.0) for k in keys], dtype=np.float64),
        df["ts"].to_list(),
    )


def split(rows: OutcomeRows, fraction: float = TRAIN_FRACTION) -> tuple[OutcomeRows, OutcomeRows]:
    """Time-ordered split: fit on the first ``fraction``, hold out the rest."""
    cut = int(len(rows) * fraction)
    return rows.take(slice(0, cut)), rows.take(slice(cut, None))


def fit(rows: OutcomeRows, *, seed: int = 0, meta: Mapping[str, Any] | None = None) -> RouteModel:
    return RouteModel.fit(rows.records, rows.keys, rows.latency_ms, rows.ok, seed=seed, meta=meta)


@dataclass
class Backtest:
    """How a model would have done on held-out outcomes (lower is better everywhere)."""

    rows: int
    live_cost: float  # mean realised cost of the live strategy's choices (ms)
    model_cost: float  # counterfactual mean cost of the model's picks (ms)
    model_mae_log: float  # |log1p(predicted) − log1p(actual)| on served successes
    ewma_mae_log: float  # the same for the live peak-EWMA estimate
    agree: float  # share of queries where the model picks the live choice
    known: float  # share of queries whose pick had a known cell (or agreed)
    per_target: dict[str, int] = field(default_factory=dict)  # the model's picks per target

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 4)
        return d


def backtest(
    model: RouteModel, held: OutcomeRows, learned: LearnedSettings, *, default_ewma_ms: float, min_cell: int = MIN_CELL
) -> Backtest:
    """Score ``model`` on held-out outcomes (see the module docstring for the method)."""
    n = len(held)
    if n == 0:
        raise ValueError("held-out outcomes: none to backtest on")
    cost = held.cost(learned)
    # (1) prediction error on the served target, against the recorded EWMA
    x = model.matrix(held.records, held.keys)
    pred, _ = model.predict_rows(x)
    served = held.ok
    actual = np.log1p(held.latency_ms[served])
    model_mae = float(np.mean(np.abs(np.log1p(pred[served]) - actual))) if served.any() else math.inf
    ewma = np.array([float(r.get("ewma_ms", default_ewma_ms) or 0.0) for r in held.records])
    ewma_mae = float(np.mean(np.abs(np.log1p(ewma[served]) - actual))) if served.any() else math.inf
    # (2) the model's pick per query, each candidate in its last recorded live state
    cells: dict[tuple[tuple[str, str, str], str], list[float]] = defaultdict(list)
    for i in range(n):
        cells[(held.query_class(i), held.keys[i])].append(float(cost[i]))
    cell_mean = {k: (float(np.mean(v)), len(v)) for k, v in cells.items()}
    by_pool: dict[str, list[str]] = defaultdict(list)
    for k in dict.fromkeys(held.keys):
        by_pool[k.split("/", 1)[0]].append(k)
    last: dict[str, tuple[float, float]] = {}
    blocks: list[tuple[int, list[str]]] = []  # (first row in the stacked matrix, candidates) per query
    stacked_recs: list[dict[str, Any]] = []
    stacked_keys: list[str] = []
    for i in range(n):
        rec, key = held.records[i], held.keys[i]
        last[key] = (_num(rec.get("pending")), _num(rec.get("ewma_ms"), default_ewma_ms))
        cands = by_pool[key.split("/", 1)[0]]
        blocks.append((len(stacked_keys), cands))
        for cand in cands:
            pending, ewma_ms = last.get(cand, (0.0, default_ewma_ms))
            stacked_recs.append({**rec, "pending": pending, "ewma_ms": ewma_ms})
            stacked_keys.append(cand)
    all_lat, all_fail = model.predict_rows(model.matrix(stacked_recs, stacked_keys))
    all_pending = np.array([r["pending"] for r in stacked_recs], dtype=np.float64)
    all_lat = all_lat * model.load_factor(stacked_keys, all_pending)
    prices = {k: float(held.price[held.keys.index(k)]) for k in dict.fromkeys(held.keys)}
    picks_cost = np.empty(n)
    agree = known = 0
    per_target: dict[str, int] = defaultdict(int)
    for i, (first, cands) in enumerate(blocks):
        key = held.keys[i]
        sl = slice(first, first + len(cands))
        price = np.array([prices[c] for c in cands])
        expected = expected_cost(learned, all_lat[sl], price, all_fail[sl])
        best = float(expected.min())
        live_j = cands.index(key)
        # the live choice counts as the model's pick when the model cannot tell it from the best
        tied = expected[live_j] <= best + abs(best) * learned.tie_tolerance + 1e-9
        pick = key if tied else cands[int(expected.argmin())]
        per_target[pick] += 1
        if pick == key:
            agree += 1
            known += 1
            picks_cost[i] = cost[i]
            continue
        mean, count = cell_mean.get((held.query_class(i), pick), (0.0, 0))
        if count >= min_cell:
            known += 1
            picks_cost[i] = mean
        else:
            picks_cost[i] = cost[i]
    return Backtest(
        rows=n,
        live_cost=float(cost.mean()),
        model_cost=float(picks_cost.mean()),
        model_mae_log=model_mae,
        ewma_mae_log=ewma_mae,
        agree=agree / n,
        known=known / n,
        per_target=dict(per_target),
    )


def _num(v: Any, default: float = 0.0) -> float:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else default


def decide(
    challenger: Backtest, champion: Backtest | None, *, min_improvement: float = MIN_IMPROVEMENT
) -> tuple[bool, str]:
    """Whether the challenger wins, and why (the numbers behind it)."""
    bar_name, bar = "the live strategy", challenger.live_cost
    if champion is not None and champion.model_cost < bar:
        bar_name, bar = "the champion", champion.model_cost
    cost = f"counterfactual cost {challenger.model_cost:.4g} ms vs {bar_name}'s {bar:.4g} ms"
    if challenger.model_mae_log > challenger.ewma_mae_log:
        return False, (
            f"latency error {challenger.model_mae_log:.3g} (log) is worse than the live EWMA's "
            f"{challenger.ewma_mae_log:.3g}; {cost}"
        )
    if challenger.model_cost < bar * (1.0 - min_improvement):
        return True, f"{cost} (−{(1 - challenger.model_cost / bar) * 100:.1f} %)"
    return False, f"{cost}: not {min_improvement * 100:.0f} % better"


@dataclass
class RetrainReport:
    """What one retrain did: skipped (and why), or trained, backtested, promoted or rejected."""

    status: str  # "skipped" | "promoted" | "rejected" | "dry-run" | "failed"
    reason: str
    model: str
    outcomes: int = 0
    train_rows: int = 0
    held_rows: int = 0
    version: str | None = None
    previous: str | None = None
    backtest: Backtest | None = None
    champion_backtest: Backtest | None = None
    action: dict[str, Any] | None = None
    window: tuple[str, str] | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "model": self.model,
            "outcomes": self.outcomes,
            "train_rows": self.train_rows,
            "held_rows": self.held_rows,
            "version": self.version,
            "previous": self.previous,
            "backtest": self.backtest.to_dict() if self.backtest else None,
            "champion_backtest": self.champion_backtest.to_dict() if self.champion_backtest else None,
            "action": self.action,
            "window": list(self.window) if self.window else None,
        }


def retrain_router(
    settings: Settings,
    lake: Lake,
    registry: ModelRegistry,
    ledger: ActionLedger,
    now: datetime,
    *,
    dry_run: bool = False,
    seed: int = 0,
) -> RetrainReport:
    """Retrain from the last ``router.learned.history`` of outcomes; promote only a winner."""
    learned = settings.router.learned
    start = now - parse_duration(learned.history)
    df = load_outcomes(lake, start, now)
    window = (start.isoformat(), now.isoformat())
    base = RetrainReport("skipped", "", learned.model, outcomes=df.height, window=window)
    if df.height < learned.min_outcomes:
        base.reason = (
            f"{df.height} outcome(s) since {start:%Y-%m-%d %H:%M}, "
            f"fewer than router.learned.min_outcomes={learned.min_outcomes}"
        )
        return base
    rows = outcome_rows(df, settings)
    train, held = split(rows)
    base.train_rows, base.held_rows = len(train), len(held)
    default_ewma = settings.router.ewma_default_ms
    meta = {"train_start": train.ts[0].isoformat(), "train_end": train.ts[-1].isoformat(), "rows": len(train)}
    model = fit(train, seed=seed, meta=meta)
    base.backtest = challenger = backtest(model, held, learned, default_ewma_ms=default_ewma)
    current = None
    try:
        current = load_champion(registry, learned.model)
    except RegistryError:
        current = None  # an unreadable champion (another format) is replaced by a winner
    if current is not None:
        base.previous = current[0]
        base.champion_backtest = backtest(current[1], held, learned, default_ewma_ms=default_ewma)
    wins, reason = decide(challenger, base.champion_backtest)
    base.reason = reason
    if dry_run:
        base.status = "dry-run"
        base.reason = ("would promote: " if wins else "would reject: ") + reason
        return base
    mv = registry.register(
        learned.model,
        model,
        train_start=train.ts[0],
        train_end=train.ts[-1],
        score=challenger.model_cost,
        meta={"domain": "routing", "backtest": challenger.to_dict(), "held_rows": len(held)},
        now=now,
    )
    base.version = mv.version
    if not wins:
        registry.reject(learned.model, mv.version, reason=reason)
        base.status = "rejected"
        return base
    action = promotion_action(
        learned.model,
        mv.version,
        previous=base.previous,
        reason=reason,
        scores={
            "challenger": challenger.to_dict(),
            "champion": base.champion_backtest.to_dict() if base.champion_backtest else None,
        },
    )
    result = promote_model(lake, ledger, registry, action)
    base.action = result.to_dict()
    champion = registry.champion(learned.model)
    if champion is not None and champion.version == mv.version:
        base.status = "promoted"
    else:  # the action failed (its error is in the ledger and the lake): the version stays a challenger
        base.status = "failed"
        base.reason = f"promotion action {result.status}: {result.error or reason}"
    return base


def models_dir(settings: Settings) -> Path:
    """Where registered model versions live (the registry's own convention)."""
    return Path(settings.data_dir) / "models"

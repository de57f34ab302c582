"""What the learned router strategy costs per request, and what its learning loop costs per run.

    uv run python benchmarks/router_learned_bench.py [--json] [--outcomes 20000] [--decisions 5000]

Measures, on this machine, single-threaded like the request path: ``query_features`` per call
(with a 4 KiB text body and without), ``RouteModel.predict`` and ``LearnedStrategy.choose`` per
decision for 2, 5 and 10 targets (p50/p99 µs), and for the router flow: fitting the model on N
synthetic outcomes, the backtest on the held-out 20 %, and the counterfactual costs it reports
(a uniform live policy over targets whose speed depends on the query's kind: the model should pick
each kind's fast target). ``--json`` prints one JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

import numpy as np

from tasks.config.routing import LearnedSettings, RouterTarget
from tasks.routing.features import query_features
from tasks.routing.learned import LearnedStrategy, RouteModel, target_key
from tasks.routing.model import PeakEwma, Query, TargetState
from tasks.routing.training import OutcomeRows, backtest, split

TEXT = ("the quick brown fox jumps over the lazy dog; summarise the quarterly latency report " * 60)[:4096]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def _time_per_call(fn: Any, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
    return {"p50_us": round(_pct(samples, 50), 1), "p99_us": round(_pct(samples, 99), 1),
            "mean_us": round(statistics.fmean(samples), 1)}  # fmt: skip


def _synthetic(n: int, n_targets: int, seed: int) -> OutcomeRows:
    """Kinds k0..k{T-1}: kind i is fast (10 ms) on target i, slow (40 ms) elsewhere; uniform live policy."""
    rng = np.random.default_rng(seed)
    records, keys, lat = [], [], []
    for i in range(n):
        kind = int(rng.integers(0, n_targets))
        t = int(rng.integers(0, n_targets))
        rec = query_features(Query("POST", f"/v1/infer/{i}", kind=f"k{kind}", size=int(rng.integers(10, 5000)),
                                   text="some words for the text features"))  # fmt: skip
        rec["pending"] = int(rng.integers(0, 4))
        rec["ewma_ms"] = 25.0
        records.append(rec)
        keys.append(target_key("api", f"t{t}"))
        lat.append((10.0 if kind == t else 40.0) * rng.uniform(0.8, 1.2))
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return OutcomeRows(records, keys, np.array(lat), np.ones(n, dtype=bool), np.zeros(n),
                       [t0 + timedelta(seconds=i) for i in range(n)])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--outcomes", type=int, default=20_000, help="synthetic outcomes for the training figures")
    ap.add_argument("--decisions", type=int, default=5_000, help="timed calls per per-request figure")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    q_text = Query("POST", "/v1/infer/123", kind="k0", size=4096, text=TEXT)
    q_plain = Query("GET", "/v1/users/42/orders", kind="k1")
    out["query_features"] = {
        "text_4k": _time_per_call(lambda: query_features(q_text), args.decisions),
        "no_body": _time_per_call(lambda: query_features(q_plain), args.decisions),
    }
    out["decision"] = {}
    for n_targets in (2, 5, 10):
        rows = _synthetic(4000, n_targets, seed=n_targets)
        model = RouteModel.fit(rows.records, rows.keys, rows.latency_ms, rows.ok, seed=0)
        now = 100.0
        cands = [TargetState("api", RouterTarget(name=f"t{i}", url="http://127.0.0.1:1"), PeakEwma(10.0, 25.0, now),
                             pending=i % 3) for i in range(n_targets)]  # fmt: skip
        feats = query_features(q_plain)
        strategy = LearnedStrategy(LearnedSettings(exploration=0.0), _First(), random.Random(0))
        strategy.model = model
        out["decision"][str(n_targets)] = {
            "predict": _time_per_call(lambda m=model, c=cands, f=feats, t=now: m.predict(f, c, t), args.decisions),  # type: ignore[misc]
            "choose": _time_per_call(lambda s=strategy, c=cands, t=now: s.choose(q_plain, c, t), args.decisions),  # type: ignore[misc]
        }
    rows = _synthetic(args.outcomes, 4, seed=7)
    train, held = split(rows)
    t0 = time.perf_counter()
    model = RouteModel.fit(train.records, train.keys, train.latency_ms, train.ok, seed=0)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bt = backtest(model, held, LearnedSettings(), default_ewma_ms=30.0)
    out["training"] = {
        "outcomes": args.outcomes,
        "targets": 4,
        "fit_s": round(fit_s, 3),
        "backtest_s": round(time.perf_counter() - t0, 3),
        "backtest": bt.to_dict(),
    }
    if args.json:
        print(json.dumps(out))
        return
    print("query_features per call (µs):")
    for k, v in out["query_features"].items():
        print(f"  {k:8s} p50 {v['p50_us']:7.1f}  p99 {v['p99_us']:7.1f}")
    print("per decision (µs)        predict p50 / p99      choose p50 / p99")
    for n, v in out["decision"].items():
        p, c = v["predict"], v["choose"]
        print(
            f"  {n:>2} targets          {p['p50_us']:7.1f} / {p['p99_us']:7.1f}"
            f"    {c['p50_us']:7.1f} / {c['p99_us']:7.1f}"
        )
    tr = out["training"]
    b = tr["backtest"]
    print(f"training on {tr['outcomes']} outcomes (4 targets): fit {tr['fit_s']} s, backtest {tr['backtest_s']} s")
    print(f"  held-out cost: live {b['live_cost']} ms, model {b['model_cost']} ms; "
          f"latency error (log) model {b['model_mae_log']} vs EWMA {b['ewma_mae_log']}")  # fmt: skip


class _First:
    """Fallback for ties in the timing loop (a tie-break costs what the router's P2C costs)."""

    name = "first"

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        return candidates[0]


if __name__ == "__main__":
    main()

"""Synthetic router outcomes as the proxy records them (``router_outcomes`` rows), for the learning
loop's tests: a uniform-random live policy over a pool's targets, latency by (query kind, target)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from tasks.routing.features import query_features
from tasks.routing.model import Query

POOL = "api"
TARGETS = ("t1", "t2")
#: kind A is fast on t1 and slow on t2, kind B the reverse: the case only a learned router sees
CROSSED = {("A", "t1"): 10.0, ("A", "t2"): 50.0, ("B", "t1"): 50.0, ("B", "t2"): 10.0}
FLAT = {(k, t): 20.0 for k in ("A", "B") for t in TARGETS}
#: the pool the outcomes came from, as a --set override (prices 0)
POOL_OVERRIDE = (
    "router.pools=[{name: api, prefix: /v1, targets: "
    "[{name: t1, url: 'http://127.0.0.1:9001'}, {name: t2, url: 'http://127.0.0.1:9002'}]}]"
)


def synthetic_outcomes(
    n: int, start: datetime, latency: dict[tuple[str, str], float], *, seed: int = 1, step_s: float = 1.0
) -> pl.DataFrame:
    """``n`` outcomes from ``start`` on, one every ``step_s``: kinds A/B alternating, the target
    drawn uniformly (±10 % latency noise); features as the Router records them (with the chosen
    target's ``pending`` and ``ewma_ms`` at decision time)."""
    rng = np.random.default_rng(seed)
    ewma = {t: 30.0 for t in TARGETS}
    rows = []
    for i in range(n):
        kind = "A" if i % 2 else "B"
        target = TARGETS[int(rng.integers(0, len(TARGETS)))]
        q = Query("POST", f"/v1/infer/{i}", kind=kind, size=300, text="summarise this text please")
        feats = {**query_features(q), "pending": int(rng.integers(0, 3)), "ewma_ms": round(ewma[target], 3)}
        lat = latency[(kind, target)] * float(rng.uniform(0.9, 1.1))
        ewma[target] = 0.8 * ewma[target] + 0.2 * lat
        rows.append(
            {
                "outcome_id": uuid.uuid4().hex,
                "ts": start + timedelta(seconds=i * step_s),
                "pool": POOL,
                "target": target,
                "strategy": "p2c_ewma",
                "method": "POST",
                "path": q.path,
                "kind": kind,
                "size": 300,
                "latency_ms": lat,
                "status": 200,
                "ok": True,
                "error": None,
                "attempt": 1,
                "hedged": False,
                "features": json.dumps(feats),
            }
        )
    return pl.DataFrame(rows).with_columns(
        pl.col("ts").dt.cast_time_unit("us"), pl.col("status").cast(pl.Int32), pl.col("attempt").cast(pl.Int32)
    )

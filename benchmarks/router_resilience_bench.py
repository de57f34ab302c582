"""What the router's resilience costs per request: breaker, outlier ejection, retry budget, health.

The issue's budget for the whole router is ≤ 1 ms p50 per request at 1,000 requests/s; every
request passes a breaker check (``available`` for each candidate, ``try_acquire`` for the chosen
one, ``record`` after), an ejection ``record`` and the retry budget's counters. This measures those
per-request costs on their own (the default settings, an injected clock that moves 1 ms per call so
windows slide and ejections expire as in real traffic), and what turning ``Router.status()`` into
health samples and writing them to a lake costs (once per recorder flush, not per request).

Each figure: ``--batches`` batches of ``--calls`` operations; the per-operation time of each batch;
p50 and p99 over the batches, in microseconds.

    uv run python benchmarks/router_resilience_bench.py              # table
    uv run python benchmarks/router_resilience_bench.py --json       # one JSON object

``--json`` prints ``{"per_request_us": {"breaker", "ejection", "retry_budget", "total"}: {"p50", "p99"},
"health": {"targets", "samples", "samples_ms", "write_ms"}, "calls", "batches"}``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` importable
    sys.path.insert(0, str(ROOT))

from tasks.config.routing import BreakerSettings, EjectionSettings, RetrySettings  # noqa: E402
from tasks.lake import Lake  # noqa: E402
from tasks.routing.breaker import CircuitBreaker  # noqa: E402
from tasks.routing.ejection import OutlierDetector  # noqa: E402
from tasks.routing.health import health_samples, write_health  # noqa: E402
from tasks.routing.retry_budget import RetryBudget  # noqa: E402


class TickingClock:
    """A monotonic clock that advances 1 ms per read: a request stream at ~1,000/s."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


def per_op_us(op: Callable[[], None], calls: int, batches: int) -> dict[str, float]:
    times = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(calls):
            op()
        times.append((time.perf_counter_ns() - start) / calls / 1000.0)
    times.sort()
    return {
        "p50": round(statistics.median(times), 3),
        "p99": round(times[min(len(times) - 1, int(0.99 * len(times)))], 3),
    }


def breaker_op(rng: random.Random) -> Callable[[], None]:
    """Three candidates checked, one acquired and recorded; 10 % failures, so it stays closed."""
    clock = TickingClock()
    breakers = [CircuitBreaker(BreakerSettings(), clock=clock) for _ in range(3)]
    outcomes = [rng.random() >= 0.1 for _ in range(4096)]
    i = 0

    def op() -> None:
        nonlocal i
        i += 1
        for b in breakers:
            b.available()
        b = breakers[i % 3]
        if b.try_acquire():
            b.record(outcomes[i % 4096], 0.02)

    return op


def ejection_op(rng: random.Random) -> Callable[[], None]:
    """A pool of 25 targets, one failing 30 % of its requests (five in a row now and then: ejected, back)."""
    d = OutlierDetector(EjectionSettings(), clock=TickingClock())
    statuses = [503 if rng.random() < 0.3 else 200 for _ in range(4096)]
    i = 0

    def op() -> None:
        nonlocal i
        i += 1
        target = i % 25
        d.record(f"t{target}", statuses[i % 4096] if target == 0 else 200, 25)
        d.ejected_until(f"t{target}")

    return op


def budget_op() -> Callable[[], None]:
    """100 requests in flight; every request starts, asks for a retry, and both finish."""
    b = RetryBudget(RetrySettings())
    for _ in range(100):
        b.request_started()

    def op() -> None:
        b.request_started()
        if b.try_retry():
            b.retry_finished()
        b.request_finished()

    return op


def status(pools: int, targets: int) -> dict[str, Any]:
    return {
        "pools": [
            {
                "name": f"pool{p}",
                "panic": False,
                "targets": [
                    {
                        "name": f"t{t}",
                        "healthy": t % 7 != 0,
                        "pending": t % 5,
                        "ewma_ms": 20.0 + t,
                        "breaker": {"state": "open" if t % 7 == 0 else "closed"},
                        "ejected_for_s": 0.0,
                        "requests": 1000 + t,
                        "failures": t,
                    }
                    for t in range(targets)
                ],
            }
            for p in range(pools)
        ],
        "buffered": 10,
        "dropped": 0,
        "retry_budget": {"retries_in_flight": 1},
    }


def health_cost(pools: int, targets: int, repeats: int = 20) -> dict[str, Any]:
    st = status(pools, targets)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for _ in range(repeats):
        samples = health_samples(st, now)
    samples_ms = (time.perf_counter() - t0) / repeats * 1000
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(str(Path(d) / "lake"))
        write_health(lake, st, now)  # first write creates the tables
        writes = []
        for i in range(5):
            t0 = time.perf_counter()
            write_health(lake, st, datetime.fromtimestamp(now.timestamp() + i + 1, UTC))
            writes.append((time.perf_counter() - t0) * 1000)
    return {
        "targets": pools * targets,
        "samples": len(samples),
        "samples_ms": round(samples_ms, 3),
        "write_ms": round(statistics.median(writes), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--calls", type=int, default=10_000, help="operations per batch")
    ap.add_argument("--batches", type=int, default=30, help="batches per figure")
    args = ap.parse_args(argv)
    if not (1 <= args.calls <= 10_000_000 and 1 <= args.batches <= 10_000):
        ap.error("--calls must be 1..10000000 and --batches 1..10000")
    rng = random.Random(7)
    ops = {"breaker": breaker_op(rng), "ejection": ejection_op(rng), "retry_budget": budget_op()}
    per = {name: per_op_us(op, args.calls, args.batches) for name, op in ops.items()}

    def all_three() -> None:
        for op in ops.values():
            op()

    per["total"] = per_op_us(all_three, args.calls, args.batches)
    out = {"per_request_us": per, "health": health_cost(4, 25), "calls": args.calls, "batches": args.batches}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"per request, µs (p50 / p99 of {args.batches} batches of {args.calls}):")
    for name, v in per.items():
        print(f"  {name:<13} {v['p50']:>8.3f} / {v['p99']:.3f}")
    h = out["health"]
    print(
        f"health: {h['targets']} targets → {h['samples']} samples in {h['samples_ms']} ms; "
        f"written to a lake in {h['write_ms']} ms (median of 5)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

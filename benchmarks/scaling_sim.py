"""Scaling policies replayed on real request-rate traces: static peak, the HPA, predictive, hybrid, oracle.

Replays NASA-HTTP July and August 1995, WorldCup98 and the Azure VM CPU trace (``../shared/datasets``,
per minute; Azure's 5-minute values held over their interval) through ``tasks.scaling.simulate``:
15 s steps, provisioning delays of 60/120/180 s, capacity per replica = peak minute / 40. Every
forecast is causal (``tasks.scaling.nowcast``: the daily profile is learned from the first 7 days
and used only after them; level and error quantiles roll forward).

    uv run python benchmarks/scaling_sim.py                 # the four traces x 3 delays
    uv run python benchmarks/scaling_sim.py --quick         # smoke: first day of each trace, seconds
    uv run python benchmarks/scaling_sim.py --trace FILE.csv --time-col ts --value-col requests
    options: --delay S (one delay), --json, --datasets DIR,
             --set FIELD=VALUE (repeatable: a ``ScalingTarget`` field for predictive and hybrid on top of
             the config defaults, to replay a variant of BENCHMARKS.md, e.g. --set predictive_median_headroom=1)

``--json``: the last output line is ``{"default_policy": "predictive", "traces": {TRACE: {"<delay s>":
{POLICY: {"replica_minutes", "cost_ratio", "short_pct", "unserved_pct", "scale_events"}}}}}`` with
policies ``static``, ``hpa``, ``predictive``, ``hybrid``, ``oracle``, plus ``targets`` (per trace
and delay: whether the default policy met the issue's target) and ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` importable
    sys.path.insert(0, str(ROOT))

from tasks.config.scaling import ScalingTarget  # noqa: E402
from tasks.scaling.simulate import (  # noqa: E402
    SimResult,
    nowcasts,
    oracle,
    reference_targets,
    simulate,
    static_peak,
)
from tasks.scaling.traces import BUILTIN_TRACES, Trace, builtin_trace, load_csv_trace  # noqa: E402

DELAYS = (60, 120, 180)
POLICIES = ("static", "hpa", "predictive", "hybrid", "oracle")
DEFAULT_POLICY = "predictive"
REPLICAS_AT_PEAK = 40
STEP_S = 15.0


def figures(r: SimResult, oracle_rm: float) -> dict[str, float | int]:
    """The five figures the issue names, rounded for reading."""
    return {
        "replica_minutes": round(r.replica_minutes, 2),
        "cost_ratio": round(r.replica_minutes / oracle_rm, 4) if oracle_rm else math.nan,
        "short_pct": round(r.short_pct, 4),
        "unserved_pct": round(r.unserved_pct, 4),
        "scale_events": r.scale_events,
    }


def target_met(trace: str, row: dict[str, dict[str, Any]], policy: str) -> bool:
    """The issue's target: NASA ≤ half the HPA's short minutes, others ≤ the HPA's, both at ≤ its replica-minutes."""
    ours, hpa = row[policy], row["hpa"]
    factor = 0.5 if trace.startswith("nasa") else 1.0
    return bool(ours["replica_minutes"] <= hpa["replica_minutes"] and ours["short_pct"] <= factor * hpa["short_pct"])


def run_trace(
    trace: Trace, delays: tuple[int, ...], *, overrides: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """All policies on one trace for each delay (``overrides``: ``ScalingTarget`` fields on top of the defaults)."""
    cap = trace.peak / REPLICAS_AT_PEAK
    orc = oracle(trace, cap)
    static = static_peak(trace, cap)
    horizon_min = math.ceil((max(delays) + 2 * STEP_S + 60) / 60) + 1
    fc = nowcasts(trace, horizon_min)
    out: dict[str, dict[str, Any]] = {}
    for delay in delays:
        targets = reference_targets(trace.name, cap, float(delay), overrides=overrides)
        row: dict[str, Any] = {"static": figures(static, orc.replica_minutes)}
        for pol in ("hpa", "predictive", "hybrid"):
            res = simulate(trace, targets[pol], fc, step_s=STEP_S)
            row[pol] = figures(res, orc.replica_minutes)
            row[pol]["fallback_steps"] = res.fallbacks
            row[pol]["emergencies"] = res.emergencies
        row["oracle"] = figures(orc, orc.replica_minutes)
        out[str(delay)] = row
    return out


def print_table(name: str, trace: Trace, results: dict[str, dict[str, Any]]) -> None:
    """One markdown table per trace (delay × policy)."""
    print(f"\n### {name}: {trace.minutes:,} minutes in {len(trace.segments)} segment(s), peak {trace.peak:,.0f}/min")
    print("| delay | policy | replica-minutes | × oracle | % min under | unserved % | scale events | target |")
    print("|---:|---|---:|---:|---:|---:|---:|:--:|")
    for delay, row in results.items():
        for pol in POLICIES:
            f = row[pol]
            mark = ""
            if pol in ("predictive", "hybrid"):
                mark = "met" if target_met(name, row, pol) else "MISSED"
            print(
                f"| {delay} s | {pol} | {f['replica_minutes']:,.0f} | {f['cost_ratio']:.3f} | {f['short_pct']:.2f} "
                f"| {f['unserved_pct']:.3f} | {f['scale_events']:,} | {mark} |"
            )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["ramp_gain=0", "predictive_stabilisation_s=none"]`` → ``{"ramp_gain": 0.0, ...}``, checked
    against ``ScalingTarget`` (a wrong field or value is an error naming it, before minutes of replay)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        if key not in ScalingTarget.model_fields or key in ("name", "policy", "capacity_per_unit"):
            raise ValueError(f"--set {key}: not a ScalingTarget field the benchmark lets you change")
        out[key] = None if raw.strip().lower() in ("none", "null") else json.loads(raw) if raw.strip() else raw
    try:
        ScalingTarget(name="check", capacity_per_unit=1.0, **out)
    except ValidationError as exc:
        raise ValueError(f"--set: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the options, replay the traces, print the tables (and the JSON line)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first day of each trace (smoke run)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    ap.add_argument("--trace", type=Path, help="replay this CSV instead of the built-in traces")
    ap.add_argument("--time-col", default="timestamp", help="--trace: time column (epoch s or date-time)")
    ap.add_argument("--value-col", default="requests", help="--trace: requests per minute column")
    ap.add_argument("--delay", type=int, choices=DELAYS, help="one provisioning delay (s) instead of all three")
    ap.add_argument("--datasets", type=Path, help="the shared datasets folder (default ../shared/datasets)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a ScalingTarget field for predictive/hybrid (repeatable; replays a variant)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        ap.error(str(exc))
    delays = (args.delay,) if args.delay else DELAYS
    t0 = time.perf_counter()
    if args.trace:
        traces = [load_csv_trace(args.trace, time_col=args.time_col, value_col=args.value_col)]
    else:
        traces = [builtin_trace(n, args.datasets) for n in BUILTIN_TRACES]
    if args.quick:
        traces = [t.head(1440) for t in traces]
    report: dict[str, Any] = {"default_policy": DEFAULT_POLICY, "traces": {}, "targets": {}, "overrides": overrides}
    print(f"# Scaling policies on real traces ({'quick' if args.quick else 'full'}; step {STEP_S:g} s, "
          f"capacity = peak minute / {REPLICAS_AT_PEAK})")  # fmt: skip
    for trace in traces:
        results = run_trace(trace, delays, overrides=overrides)
        report["traces"][trace.name] = results
        report["targets"][trace.name] = {d: target_met(trace.name, row, DEFAULT_POLICY) for d, row in results.items()}
        print_table(trace.name, trace, results)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\n{report['seconds']} s")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

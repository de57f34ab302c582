"""Replay a per-minute request-rate trace through a scaling policy in 15-second steps.

Why a simulator and not just "compare the count with the demand": the interesting failures of a
scaler come from *time* — units ordered now are ready only after the provisioning delay, the HPA
sees the load a step late, scale-down waits out its stabilisation window. The model:

* the demand is the trace's rate, constant within each minute (traces have no finer resolution);
* every ``step_s`` seconds the policy sees the load of the *previous* step (a metric is known only
  after it was measured; with a ramp-aware target also the minutes before it, over its
  ``ramp_window_s``, stamped at each minute's end) and the latest forecast, issued at the end of
  the last complete minute, and returns a count through :func:`tasks.scaling.policies.decide`;
* units added become ready ``delay_s`` later; units removed go at once, pending ones first;
* **paid** = the requested count (a unit costs from the moment it is ordered), **served** = the
  ready units × capacity.

Figures per policy (summed over a trace's segments): ``replica_minutes`` (Σ paid × step/60),
``cost_ratio`` (÷ the oracle's), ``short_pct`` (% of minutes with at least one step where the
ready capacity was below the demand), ``unserved_pct`` (Σ unmet demand ÷ Σ demand, in %) and
``scale_events`` (count changes). The **oracle** is the lower bound Σ ceil(demand / capacity) per
minute, available at no delay; **static** is ceil(peak / capacity) all the time.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.config.scaling import ScalingTarget
from tasks.scaling.nowcast import Nowcaster
from tasks.scaling.policies import Forecast, MetricHistory, PolicyState, decide
from tasks.scaling.traces import Trace

__all__ = ["SimResult", "nowcasts", "oracle", "reference_targets", "simulate", "static_peak"]

DAY_MIN = 1440


@dataclass(frozen=True)
class SimResult:
    """The figures of one policy on one trace (see the module docstring)."""

    replica_minutes: float
    short_minutes: int
    minutes: int
    unserved: float
    demand: float
    scale_events: int
    fallbacks: int = 0
    emergencies: int = 0

    @property
    def short_pct(self) -> float:
        """% of minutes under-provisioned."""
        return 100.0 * self.short_minutes / self.minutes if self.minutes else 0.0

    @property
    def unserved_pct(self) -> float:
        """Unmet demand as % of all demand."""
        return 100.0 * self.unserved / self.demand if self.demand else 0.0

    def __add__(self, other: SimResult) -> SimResult:
        return SimResult(
            self.replica_minutes + other.replica_minutes,
            self.short_minutes + other.short_minutes,
            self.minutes + other.minutes,
            self.unserved + other.unserved,
            self.demand + other.demand,
            self.scale_events + other.scale_events,
            self.fallbacks + other.fallbacks,
            self.emergencies + other.emergencies,
        )


def oracle(trace: Trace, capacity: float) -> SimResult:
    """The lower bound: exactly ceil(demand / capacity) units in every minute, never short."""
    out = SimResult(0.0, 0, 0, 0.0, 0.0, 0)
    for _, y in trace.segments:
        units = np.ceil(y / capacity - 1e-9)
        out = out + SimResult(float(units.sum()), 0, len(y), 0.0, float(y.sum()), int(np.count_nonzero(np.diff(units))))
    return out


def static_peak(trace: Trace, capacity: float) -> SimResult:
    """ceil(peak / capacity) units all the time: never short, the most expensive reference."""
    units = math.ceil(trace.peak / capacity - 1e-9)
    out = SimResult(0.0, 0, 0, 0.0, 0.0, 0)
    for _, y in trace.segments:
        short = y > units * capacity
        out = out + SimResult(
            float(units * len(y)), int(short.sum()), len(y), float(np.maximum(y - units * capacity, 0).sum()),
            float(y.sum()), 0,
        )  # fmt: skip
    return out


def nowcasts(
    trace: Trace, horizon_min: int, *, train_days: float = 7.0, model: Nowcaster | None = None
) -> list[dict[float, np.ndarray]]:
    """Causal nowcasts for every segment: the profile is learned from the first ``train_days`` of the
    trace and used only *after* them; before that the model runs on its level alone."""
    base = model or Nowcaster()
    train_min = int(train_days * DAY_MIN)
    longest = max(trace.segments, key=lambda s: len(s[1]))
    # Train on the first segment long enough to hold the training days (NASA August starts with a short one).
    t_start, t_values = next((s for s in trace.segments if len(s[1]) >= train_min), longest)
    trained = dataclasses.replace(base)
    train_part = t_values[: max(DAY_MIN, min(train_min, len(t_values) // 2))]
    if len(train_part) >= DAY_MIN:
        trained.fit(train_part, (t_start // 60) % DAY_MIN)
        train_end: float = t_start + len(train_part) * 60
    else:  # under a day of data: no profile to learn, the level alone forecasts
        train_end = math.inf
    plain = dataclasses.replace(base, profile=np.zeros(DAY_MIN))
    out = []
    for start, y in trace.segments:
        tod0 = (start // 60) % DAY_MIN
        before = plain.forecast(y, horizon_min, tod0)
        after = trained.forecast(y, horizon_min, tod0)
        # Row t is issued at start + (t+1)·60 s; it may use the profile once that time is past the training part.
        issued = start + (np.arange(len(y)) + 1) * 60
        use = issued >= train_end
        out.append({q: np.where(use[:, None], after[q], before[q]) for q in before})
    return out


def simulate(
    trace: Trace,
    target: ScalingTarget,
    forecasts: list[dict[float, np.ndarray]] | None = None,
    *,
    step_s: float = 15.0,
) -> SimResult:
    """Replay ``trace`` through ``decide`` for ``target`` (its policy, delay, capacity and rails)."""
    if 60.0 % step_s:
        raise ValueError(f"step_s must divide a minute, got {step_s}")
    per_min = int(60 // step_s)
    delay_steps = math.ceil(target.provisioning_delay_s / step_s - 1e-9)
    cap = target.capacity_per_unit
    # Per-minute history only where a ramp is measured (the reactive policy reads the last value alone).
    ramp = target.ramp_gain > 0 and target.policy in ("predictive", "hybrid")
    hist_min = math.ceil(target.ramp_window_s / 60.0) if ramp else 0
    total = SimResult(0.0, 0, 0, 0.0, 0.0, 0)
    for seg_i, (start, y) in enumerate(trace.segments):
        fc_seg = forecasts[seg_i] if forecasts is not None else None
        units = min(max(math.ceil(y[0] / (cap * target.target_utilisation) - 1e-9), target.rails.min_units),
                    target.rails.max_units)  # fmt: skip
        ready = units
        pending: deque[tuple[int, int]] = deque()  # (ready at step, count)
        state = PolicyState()
        n = len(y) * per_min
        paid = 0
        short_minutes = 0
        unserved = 0.0
        events = fallbacks = emergencies = 0
        minute_short = False
        forecast: Forecast | None = None
        for t in range(n):
            m = t // per_min
            while pending and pending[0][0] <= t:
                ready += pending.popleft()[1]
            now = start + t * step_s
            if t % per_min == 0:
                if m > 0 and fc_seg is not None:
                    forecast = Forecast(float(start + m * 60), 60.0, {q: a[m - 1].tolist() for q, a in fc_seg.items()})
                minute_short = False
            seen = y[(t - 1) // per_min] if t > 0 else y[0]
            if hist_min:
                last = (t - 1) // per_min if t > 0 else 0
                lo = max(0, last - hist_min)
                history = MetricHistory(
                    tuple(start + (k + 1) * 60.0 for k in range(lo, last + 1)), tuple(y[lo : last + 1].tolist())
                )
            else:
                history = MetricHistory((now - step_s,), (float(seen),))
            d = decide(target, units, history, forecast, now, state)
            state = d.state
            fallbacks += "fallback" in d.policy
            emergencies += d.emergency
            if d.to_units > units:
                pending.append((t + delay_steps, d.to_units - units))
                events += 1
            elif d.to_units < units:
                drop = units - d.to_units
                while drop and pending:
                    at, c = pending.pop()
                    k = min(c, drop)
                    drop -= k
                    if k < c:
                        pending.append((at, c - k))
                ready -= drop
                events += 1
            units = d.to_units
            if delay_steps == 0:
                while pending:
                    ready += pending.popleft()[1]
            paid += units
            gap = y[m] - ready * cap
            if gap > 1e-9:
                unserved += gap / per_min
                if not minute_short:
                    short_minutes += 1
                    minute_short = True
        total = total + SimResult(paid / per_min, short_minutes, len(y), unserved, float(y.sum()), events,
                                  fallbacks, emergencies)  # fmt: skip
    return total


def reference_targets(
    name: str, capacity: float, delay_s: float, *, overrides: dict[str, Any] | None = None
) -> dict[str, ScalingTarget]:
    """The targets the benchmark compares, by its policy names (``hpa``, ``predictive``, ``hybrid``).

    ``hpa`` is the reactive policy with every HPA default and no emergency path (the pure HPA).
    ``predictive`` and ``hybrid`` are a ``ScalingTarget`` with nothing but its name, capacity, delay
    and policy set: the benchmarked setting *is* the config default (one source of truth), so a
    user's target behaves as measured. ``overrides`` (``ScalingTarget`` fields, validated) replays a
    variant on top of the defaults for ``predictive`` and ``hybrid``; BENCHMARKS.md lists the
    variants tried.
    """
    hpa = ScalingTarget(
        name=name, capacity_per_unit=capacity, provisioning_delay_s=delay_s, policy="reactive",
        emergency_utilisation=None, emergency_miss_ratio=None,
    )  # fmt: skip
    common: dict[str, Any] = {"capacity_per_unit": capacity, "provisioning_delay_s": delay_s, **(overrides or {})}
    return {
        "hpa": hpa,
        "predictive": ScalingTarget(name=name, **{**common, "policy": "predictive"}),
        "hybrid": ScalingTarget(name=name, **{**common, "policy": "hybrid"}),
    }

"""Scaling policies behind one pure function: ``decide(target, current, history, forecast, now, state)``.

Why one pure function: the live scale flow, the CLI's ``scale plan``, the actuators and the trace
simulator must make *the same* decision from the same inputs. Nothing here reads a clock, the lake
or an actuator; the caller passes the target's config, the current count (from the actuator), the
recent metric history, the latest forecast quantiles, the time, and the state the previous call
returned. The result is a :class:`Decision` record (from → to, policy, reason with the numbers,
expected cost and risk) plus the next state.

Policies (``ScalingTarget.policy``):

* ``reactive`` — the Kubernetes HPA algorithm with its real defaults: ``desired = ceil(current ×
  metric / target)`` with ``metric`` the load per current unit and ``target = capacity ×
  target_utilisation``; no change while ``|metric/target - 1| ≤ tolerance`` (0.1); then the guard
  rails with the HPA ``behavior`` defaults (``tasks.scaling.guardrails``).
* ``predictive`` (default) — provisions for a forecast quantile of the demand over ``[now, now + provisioning
  delay + one interval]``, so the capacity ordered now is ready before the load arrives. The
  quantile is the newsvendor choice ``penalty / (penalty + cost)`` (:func:`newsvendor_quantile`):
  the cheapest count under cost + expected shortage penalty. Falls back to ``reactive`` when the
  forecast is missing, stale (older than ``forecast_max_age_s``) or has been wrong recently (the
  demand beat the provisioned quantile in ``miss_limit`` of the last ``miss_window`` checks).
* ``hybrid`` — ``max(predictive, reactive floor)``: the floor is the HPA formula at
  ``hybrid_floor_utilisation`` (0.75), so a ramp the forecast lags behind is caught at once,
  without paying the HPA's full 30 % headroom all the time. It costs about 3 % more replica-minutes
  than ``predictive`` on NASA; ``predictive`` meets the benchmark's targets alone, so it is the default.
* ``static`` — always ``max_units`` (the static-peak reference).

The margins of ``predictive`` and ``hybrid``, each for a different kind of surprise (the defaults are
the setting measured on the four real traces, BENCHMARKS.md "Predictive scaling"):

* ``predictive_headroom`` (1.1) multiplies the newsvendor quantile: noise the quantile of past
  errors estimates a little low;
* ``predictive_median_headroom`` (1.3): the count also covers the forecast *median* × this. Why:
  the error quantiles come from a variance-stabilised (square-root) scale, so at high counts
  (WorldCup98: 10⁴–10⁵ requests/min) the p95 three minutes ahead is typically 8–16 % above the
  median, while a flash crowd grows 15–30 % within a provisioning delay. At low, noisy counts
  (NASA: p95 1.4–1.8 × the median) the floor never binds, so it buys flash-crowd cover exactly
  where the quantile is tight;
* ramp-aware headroom (``ramp_gain`` 3 over ``ramp_window_s`` 180 s, capped at
  ``ramp_max_headroom`` 1.5): when the load's log-linear growth per minute, less ``ramp_noise_k`` (5)
  standard errors of counting noise, is positive, the order is multiplied by
  ``min(exp(gain × log(1 + r) × lead), cap)`` with ``lead`` the time from the last metric to the
  end of the provisioning window (:func:`ramp_rate`). The noise discount keeps low-count noise from
  reading as a ramp; it needs the per-minute history of the load (a coarser metric step: no ramp);
* scale-down stabilisation is ``predictive_stabilisation_s`` (90 s) while the forecast is trusted
  and at least ``hold_after_miss_s`` (the HPA's 300 s) after a forecast miss or while falling back:
  a forecast that just under-shot is not trusted to scale down fast.

**Emergency path** (any policy): when the load per current unit passes ``emergency_utilisation`` ×
capacity, or the demand beats the forecast quantile by more than ``emergency_miss_ratio``, the
count jumps at once to ``ceil(load × emergency_headroom / capacity)`` past stabilisation, step
limits and cooldowns (never past ``max_units``), and the decision says so (``emergency=True``) so
the caller can alert.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.config.scaling import GuardRails, ScalingTarget
from tasks.scaling.guardrails import RailState, apply_guardrails

__all__ = [
    "POLICIES",
    "Decision",
    "Forecast",
    "MetricHistory",
    "PolicyState",
    "decide",
    "hpa_recommendation",
    "newsvendor_quantile",
    "ramp_rate",
]

POLICIES: tuple[str, ...] = ("reactive", "predictive", "hybrid", "static")


@dataclass(frozen=True)
class MetricHistory:
    """Recent observations of the load metric (oldest first), e.g. requests per minute."""

    times: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times) != len(self.values):
            raise ValueError(f"history: {len(self.times)} times but {len(self.values)} values")


@dataclass(frozen=True)
class Forecast:
    """Quantile forecast of the load.

    Step ``k`` (1-based) covers ``(issued_at + (k-1)·step_s, issued_at + k·step_s]``.
    """

    issued_at: float
    step_s: float
    quantiles: Mapping[float, Sequence[float]]
    model: str = "nowcast"

    def value(self, q: float, start: float, end: float) -> float | None:
        """The highest ``q`` quantile over the steps overlapping ``[start, end]``; None if not covered."""
        values = self.quantiles.get(q)
        if values is None:
            return None
        k0 = max(0, math.floor((start - self.issued_at) / self.step_s))
        k1 = math.ceil((end - self.issued_at) / self.step_s)
        if k1 > len(values) or k1 <= k0:
            return None
        chunk = values[k0:k1]
        if math.isnan(sum(chunk)):  # one NaN step: not covered (sum is the cheap NaN test)
            return None
        return float(max(chunk))


@dataclass(frozen=True)
class PolicyState:
    """What a target's policy carries from one decision to the next."""

    rails: RailState = field(default_factory=RailState)
    checks: tuple[tuple[float, float], ...] = ()  # (due time, provisioned quantile) to compare with the load
    outcomes: tuple[bool, ...] = ()  # recent checks, True = the load beat the quantile (a miss)


@dataclass(frozen=True)
class Decision:
    """One decision record: what, why, and at what expected cost and risk."""

    target: str
    at: float
    from_units: int
    to_units: int
    policy: str  # what decided: reactive, predictive, hybrid, static, or "<policy> (fallback: reactive)"
    reason: str
    proposed: int
    emergency: bool
    quantile: float | None
    forecast_model: str | None
    expected_cost_per_hour: float
    risk: float | None  # estimated probability that the load exceeds the new capacity
    state: PolicyState = field(repr=False, compare=False)

    def as_record(self) -> dict[str, Any]:
        """The record for the lake / an event (everything but the state)."""
        return {
            "target": self.target,
            "at": self.at,
            "from": self.from_units,
            "to": self.to_units,
            "policy": self.policy,
            "reason": self.reason,
            "proposed": self.proposed,
            "emergency": self.emergency,
            "quantile": self.quantile,
            "forecast_model": self.forecast_model,
            "expected_cost_per_hour": self.expected_cost_per_hour,
            "risk": self.risk,
        }


def newsvendor_quantile(cost_per_unit_hour: float, penalty_per_unit_hour: float) -> float:
    """The critical ratio ``penalty / (penalty + cost)``: provisioning to this quantile of the demand
    minimises cost + expected shortage penalty (one more unit pays off while P(needed) > cost/(cost+penalty))."""
    if not cost_per_unit_hour > 0:
        raise ValueError(f"cost_per_unit_hour must be > 0, got {cost_per_unit_hour}")
    if not penalty_per_unit_hour > 0:
        raise ValueError(f"shortage_penalty_per_unit_hour must be > 0, got {penalty_per_unit_hour}")
    return penalty_per_unit_hour / (penalty_per_unit_hour + cost_per_unit_hour)


def hpa_recommendation(current: int, load: float, per_unit_target: float, tolerance: float) -> int:
    """The HPA's raw recommendation: ``ceil(current × (load/current) / target)`` unless within tolerance.

    ``load`` is the total metric (e.g. requests/min over all units); with ``current == 0`` the HPA
    cannot compute a per-unit value and scales to ``ceil(load / target)``.
    """
    if current <= 0:
        return math.ceil(load / per_unit_target - 1e-9)
    ratio = load / (current * per_unit_target)
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(ratio * current - 1e-9)


@functools.lru_cache(maxsize=64)
def _with_stabilisation(rails: GuardRails, seconds: float) -> GuardRails:
    """``rails`` with a longer scale-down stabilisation window (cached: called every decision)."""
    return rails.model_copy(update={"scale_down_stabilisation_s": seconds})


def _pick_quantile(available: Sequence[float], wanted: float) -> float | None:
    """The smallest available quantile at or above ``wanted`` (err on the safe side), else the largest."""
    if not available:
        return None
    above = [q for q in available if q >= wanted - 1e-12]
    return min(above) if above else max(available)


def _risk(forecast: Forecast, units: int, capacity: float, start: float, end: float) -> float | None:
    """P(load > units × capacity) over the window, read off the forecast's quantile grid."""
    covered = None
    for q in sorted(forecast.quantiles):
        v = forecast.value(q, start, end)
        if v is None:
            return None
        if v <= units * capacity:
            covered = q
    return 1.0 - covered if covered is not None else 1.0 - min(forecast.quantiles, default=0.0)


def ramp_rate(history: MetricHistory, window_s: float, noise_k: float = 0.0) -> float:
    """The load's growth per minute over the last ``window_s`` of ``history`` (log-linear least squares).

    Why a log slope: match-time ramps grow by a *fraction* a minute (5–15 %), whatever the level;
    0.0 with fewer than three positive points in the window (no ramp can be told from noise then).
    ``noise_k`` discounts the slope by ``k`` standard errors of counting noise (the values are taken
    as counts per minute, e.g. requests/min: var(log v) ≈ 1/v), so a noisy low-count trace (NASA:
    ±10 % a minute) does not read its noise as a ramp while a high-count one (WorldCup98) keeps
    almost all of its slope.
    """
    if not history.times:
        return 0.0
    t_end = history.times[-1]
    pts = [(t, v) for t, v in zip(history.times, history.values, strict=True) if t >= t_end - window_s - 1e-9 and v > 0]
    if len(pts) < 3:
        return 0.0
    xs = [(t - t_end) / 60.0 for t, _ in pts]
    ls = [math.log(v) for _, v in pts]
    mx, ml = sum(xs) / len(xs), sum(ls) / len(ls)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return 0.0
    slope = sum((x - mx) * (lv - ml) for x, lv in zip(xs, ls, strict=True)) / sxx
    if noise_k > 0:
        # Counting noise: a count v per minute has var(log v) ≈ 1/v (Poisson), so the slope's
        # variance is Σ (x - x̄)² / v / Sxx².
        var = sum((x - mx) ** 2 / v for x, (_, v) in zip(xs, pts, strict=True)) / sxx**2
        slope -= noise_k * math.sqrt(var)
    return math.expm1(slope)


def decide(
    target: ScalingTarget,
    current: int,
    history: MetricHistory,
    forecast: Forecast | None,
    now: float,
    state: PolicyState | None = None,
) -> Decision:
    """The decision for ``target`` at ``now`` (see the module docstring for the policies)."""
    st = state or PolicyState()
    if current < 0:
        raise ValueError(f"current must be >= 0, got {current}")
    cap = target.capacity_per_unit
    rails = target.rails
    if not history.values:
        return Decision(target.name, now, current, current, target.policy, "no metric: hold", current, False,
                        None, None, current * target.cost_per_unit_hour, None, st)  # fmt: skip
    load = float(history.values[-1])
    parts: list[str] = []

    # Track record of earlier predictive decisions: did the load beat what we provisioned for?
    checks, outcomes = [], list(st.outcomes)
    worst_miss = 0.0
    for due, bound in st.checks:
        if due <= history.times[-1]:
            miss = load > bound
            outcomes.append(miss)
            if bound > 0:
                worst_miss = max(worst_miss, load / bound)
        else:
            checks.append((due, bound))
    outcomes = outcomes[-target.miss_window :]

    reactive = hpa_recommendation(current, load, cap * target.target_utilisation, target.tolerance)
    policy: str = target.policy
    fallback_used = False
    proposed = reactive
    quantile: float | None = None
    used_model: str | None = None
    window_end = now + target.provisioning_delay_s + target.interval_s
    fc_value: float | None = None
    if policy == "static":
        proposed = rails.max_units
        parts.append(f"static at max_units {rails.max_units}")
    elif policy == "reactive":
        parts.append(
            f"HPA: load {load:.4g} on {current} units, target {cap * target.target_utilisation:.4g}/unit → {reactive}"
        )
    else:
        wanted = newsvendor_quantile(target.cost_per_unit_hour, target.shortage_penalty_per_unit_hour)
        fallback = None
        if forecast is None:
            fallback = "no forecast"
        elif now - forecast.issued_at > target.forecast_max_age_s:
            fallback = f"forecast is {now - forecast.issued_at:.0f}s old > {target.forecast_max_age_s:g}s"
        else:
            quantile = _pick_quantile(sorted(forecast.quantiles), wanted)
            fc_value = forecast.value(quantile, now, window_end) if quantile is not None else None
            if fc_value is None:
                fallback = "forecast does not cover the provisioning delay"
            else:
                # Checked whether used or not, so a forecast that was set aside can earn its way back.
                checks.append((now + target.provisioning_delay_s, fc_value))
                if sum(outcomes) >= target.miss_limit:
                    fallback = f"forecast missed {sum(outcomes)} of the last {len(outcomes)} checks"
        if fallback is not None or forecast is None or fc_value is None or quantile is None:
            policy = f"{policy} (fallback: reactive)"
            fallback_used = True
            quantile = None
            fc_value = None
            parts.append(f"{fallback}; HPA: load {load:.4g} on {current} units → {reactive}")
        else:
            used_model = forecast.model
            headroom = target.predictive_headroom
            ramp_note = ""
            if target.ramp_gain > 0:
                rate = ramp_rate(history, target.ramp_window_s, target.ramp_noise_k)
                if rate > target.ramp_min_rate:
                    lead_min = (window_end - history.times[-1]) / 60.0
                    extra = min(math.exp(target.ramp_gain * math.log1p(rate) * lead_min), target.ramp_max_headroom)
                    headroom *= extra
                    ramp_note = f" × {extra:.3f} (ramp {rate * 100:.1f} %/min over {lead_min:.2g} min)"
            ordered = fc_value * headroom
            median_note = ""
            if target.predictive_median_headroom > 1.0:
                med = forecast.value(0.5, now, window_end)
                if med is not None and med * target.predictive_median_headroom > ordered:
                    ordered = med * target.predictive_median_headroom
                    median_note = f"; median {med:.4g} × {target.predictive_median_headroom:g} = {ordered:.4g}"
            predictive = math.ceil(ordered / cap - 1e-9)
            parts.append(
                f"p{quantile * 100:g} (newsvendor {wanted:.3f}) of load over the next "
                f"{window_end - now:g}s = {fc_value:.4g}{ramp_note}{median_note} ÷ {cap:.4g}/unit → {predictive}"
            )
            proposed = predictive
            if policy == "hybrid":
                floor = hpa_recommendation(current, load, cap * target.hybrid_floor_utilisation, target.tolerance)
                if floor > predictive:
                    parts.append(f"reactive floor (load {load:.4g} at {target.hybrid_floor_utilisation:g}) → {floor}")
                proposed = max(predictive, floor)

    emergency = False
    eu, em = target.emergency_utilisation, target.emergency_miss_ratio
    if eu is not None and current > 0 and load / (current * cap) > eu:
        emergency = True
        parts.append(f"EMERGENCY: load is {load / (current * cap):.2f}× the capacity of {current} units")
    elif em is not None and worst_miss > em:
        emergency = True
        parts.append(f"EMERGENCY: load beat the forecast by {worst_miss:.2f}×")
    if emergency:
        proposed = max(proposed, math.ceil(load * target.emergency_headroom / cap - 1e-9))

    if fallback_used or any(outcomes):
        # The forecast is absent or has just under-shot: scale down no faster than the HPA would.
        if target.hold_after_miss_s > rails.scale_down_stabilisation_s:
            rails = _with_stabilisation(rails, target.hold_after_miss_s)
    elif (
        used_model is not None
        and target.predictive_stabilisation_s is not None
        and target.predictive_stabilisation_s < rails.scale_down_stabilisation_s
    ):
        # A trusted forecast already looks one provisioning delay ahead: it need not remember the
        # HPA's 5 minutes of load to scale down safely (never a *longer* window than the rails').
        rails = _with_stabilisation(rails, target.predictive_stabilisation_s)
    to, rail_state, notes = apply_guardrails(proposed, current, now, rails, st.rails, emergency=emergency)
    parts.extend(notes)
    risk = _risk(forecast, to, cap, now, window_end) if (forecast is not None and used_model) else None
    return Decision(
        target=target.name,
        at=now,
        from_units=current,
        to_units=to,
        policy=policy,
        reason="; ".join(parts),
        proposed=proposed,
        emergency=emergency,
        quantile=quantile,
        forecast_model=used_model,
        expected_cost_per_hour=to * target.cost_per_unit_hour,
        risk=risk,
        state=PolicyState(rail_state, tuple(checks), tuple(outcomes)),
    )

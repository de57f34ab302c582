"""Guard rails for every scaling decision, in one place (DESIGN.md: min/max, largest step, cooldowns,
stabilisation, rate limit).

Why here and not inside each policy: a policy proposes a number; whether the system may move that
far, that fast, is a property of the *target*, the same whichever policy proposed it. The defaults
are the Kubernetes HPA's own ``behavior`` defaults, so the reactive policy followed by these rails
*is* the HPA algorithm:

* scale-up: no stabilisation, limit per 15 s period = max(+100 %, +4 units) (``selectPolicy: Max``);
* scale-down: stabilisation window 300 s (the highest recommendation made strictly after
  ``now - 300 s`` wins, as the controller's cutoff test), then at most -100 % per 15 s;
* the limits are relative to the count at the start of the period, as in the HPA controller
  (``getReplicasChangePerPeriod``): units added within the period do not raise the next step's limit.

Cooldowns and a rate limit on the number of changes are not HPA features; they default to off.
An emergency *scale-up* skips stabilisation, step limits, cooldowns and the rate limit, but never
min/max: max is a budget, not a pacing rule. An emergency never speeds up a scale-down: the load
that caused it is exactly what the stabilisation window is there to remember.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.config.scaling import GuardRails

__all__ = ["RailState", "apply_guardrails"]


@dataclass(frozen=True)
class RailState:
    """What the rails remember between decisions: recent recommendations and recent changes."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time s, proposal before the rails)
    changes: tuple[tuple[float, int], ...] = ()  # (time s, signed change applied)


def apply_guardrails(
    proposed: int, current: int, now: float, rails: GuardRails, state: RailState, *, emergency: bool = False
) -> tuple[int, RailState, list[str]]:
    """The count the target may move to, the new state, and why it differs from ``proposed`` (if it does).

    Order as in the HPA controller: stabilise the recommendation, then limit the rate of change,
    then clamp to min/max; cooldowns and the change-rate limit come last and hold the count.
    """
    notes: list[str] = []
    emergency = emergency and proposed > current
    horizon = max(rails.scale_down_stabilisation_s, rails.scale_up_stabilisation_s)
    recs = tuple(r for r in state.recommendations if r[0] > now - horizon + 1e-9) + ((now, proposed),)
    keep = max(
        rails.scale_up_period_s,
        rails.scale_down_period_s,
        rails.scale_up_cooldown_s,
        rails.scale_down_cooldown_s,
        rails.rate_window_s if rails.max_changes else 0.0,
    )
    changes = tuple(c for c in state.changes if c[0] > now - keep - 1e-9)
    desired = proposed
    if not emergency:
        if desired < current and rails.scale_down_stabilisation_s > 0:
            floor = max(r for t, r in recs if t > now - rails.scale_down_stabilisation_s + 1e-9)
            if floor > desired:
                notes.append(f"stabilised: highest proposal in {rails.scale_down_stabilisation_s:g}s is {floor}")
                desired = min(current, floor)
        if desired > current and rails.scale_up_stabilisation_s > 0:
            ceiling = min(r for t, r in recs if t > now - rails.scale_up_stabilisation_s + 1e-9)
            if ceiling < desired:
                notes.append(f"stabilised: lowest proposal in {rails.scale_up_stabilisation_s:g}s is {ceiling}")
                desired = max(current, ceiling)
        if desired > current:
            added = sum(c for t, c in changes if c > 0 and t > now - rails.scale_up_period_s + 1e-9)
            base = current - added
            limit = max(
                math.floor(base * (1 + rails.scale_up_percent / 100.0) + 1e-9), base + rails.scale_up_units, current
            )
            if desired > limit:
                notes.append(
                    f"step limit: at most max(+{rails.scale_up_percent:g}%, +{rails.scale_up_units}) per "
                    f"{rails.scale_up_period_s:g}s from {base} = {limit}"
                )
                desired = limit
        elif desired < current:
            removed = -sum(c for t, c in changes if c < 0 and t > now - rails.scale_down_period_s + 1e-9)
            base = current + removed
            limit = min(math.ceil(base * (1 - rails.scale_down_percent / 100.0) - 1e-9), current)
            if desired < limit:
                notes.append(f"step limit: at most -{rails.scale_down_percent:g}% per {rails.scale_down_period_s:g}s")
                desired = limit
    clamped = min(max(desired, rails.min_units), rails.max_units)
    if clamped != desired:
        notes.append(f"clamped to [{rails.min_units}, {rails.max_units}]")
        desired = clamped
    if not emergency and desired != current:
        last_up = max((t for t, c in changes if c > 0), default=-math.inf)
        last_down = max((t for t, c in changes if c < 0), default=-math.inf)
        if desired > current and now - last_up < rails.scale_up_cooldown_s:
            notes.append(f"scale-up cooldown: last scale-up {now - last_up:g}s ago < {rails.scale_up_cooldown_s:g}s")
            desired = current
        elif desired < current and now - max(last_down, last_up) < rails.scale_down_cooldown_s:
            notes.append(f"scale-down cooldown: last change under {rails.scale_down_cooldown_s:g}s ago")
            desired = current
        elif rails.max_changes and sum(1 for t, _ in changes if t > now - rails.rate_window_s) >= rails.max_changes:
            notes.append(f"rate limit: {rails.max_changes} changes in the last {rails.rate_window_s:g}s")
            desired = current
    if desired != current:
        changes = (*changes, (now, desired - current))
    return desired, RailState(recs, changes), notes

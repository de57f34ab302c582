"""Policy maths on hand-checked cases: the HPA, newsvendor, predictive lead time, fallback, emergency."""

from __future__ import annotations

import math

import pytest

from tasks.config.scaling import GuardRails, ScalingTarget
from tasks.scaling.policies import (
    Forecast,
    MetricHistory,
    PolicyState,
    decide,
    hpa_recommendation,
    newsvendor_quantile,
    ramp_rate,
)

NOW = 1_000_000.0


def _target(**kw: object) -> ScalingTarget:
    base: dict[str, object] = {"name": "web", "capacity_per_unit": 100.0, "provisioning_delay_s": 120.0}
    base.update(kw)
    return ScalingTarget(**base)  # type: ignore[arg-type]


def _hist(load: float) -> MetricHistory:
    return MetricHistory((NOW - 15,), (load,))


def _flat_forecast(
    level: float, *, issued_at: float = NOW, steps: int = 5, qs: tuple[float, ...] = (0.5, 0.98)
) -> Forecast:
    return Forecast(issued_at, 60.0, {q: [level * (1 + q - 0.5)] * steps for q in qs})


def test_hpa_formula_hand_checked() -> None:
    # 400 req/min on 4 units, target 70 per unit: ratio 400/280 = 1.4286 → ceil(5.714) = 6.
    assert hpa_recommendation(4, 400.0, 70.0, 0.1) == 6
    # 100 on 10 units at target 70: ratio 0.1429 → ceil(1.43) = 2.
    assert hpa_recommendation(10, 100.0, 70.0, 0.1) == 2
    assert hpa_recommendation(0, 100.0, 70.0, 0.1) == 2  # no units: ceil(load / target)


def test_hpa_tolerance_edges() -> None:
    # ratio 1.09 and 0.91: within 0.1, hold; 1.11 and 0.89: act.
    assert hpa_recommendation(10, 10 * 70 * 1.09, 70.0, 0.1) == 10
    assert hpa_recommendation(10, 10 * 70 * 0.91, 70.0, 0.1) == 10
    assert hpa_recommendation(10, 10 * 70 * 1.11, 70.0, 0.1) == 12  # ceil(11.1)
    assert hpa_recommendation(10, 10 * 70 * 0.89, 70.0, 0.1) == 9  # ceil(8.9)


def test_reactive_decision_goes_through_hpa_rails() -> None:
    t = _target(policy="reactive", emergency_utilisation=None)
    d = decide(t, 2, _hist(2000.0), None, NOW)  # wants ceil(2000/70) = 29, limit max(4, 6) = 6
    assert (d.from_units, d.to_units, d.proposed) == (2, 6, 29)
    assert d.policy == "reactive" and "step limit" in d.reason
    assert d.expected_cost_per_hour == pytest.approx(6 * t.cost_per_unit_hour)
    # Scale-down is held by the 5-minute stabilisation window.
    st = d.state
    d2 = decide(t, 6, _hist(70.0), None, NOW + 15, st)
    assert d2.to_units == 6 and "stabilised" in d2.reason


def test_newsvendor_quantile_and_choice() -> None:
    assert newsvendor_quantile(1.0, 49.0) == pytest.approx(0.98)
    assert newsvendor_quantile(1.0, 1.0) == pytest.approx(0.5)
    assert newsvendor_quantile(3.0, 1.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shortage_penalty_per_unit_hour"):
        newsvendor_quantile(1.0, 0.0)
    t = _target(policy="predictive", shortage_penalty_per_unit_hour=49.0)
    fc = Forecast(NOW, 60.0, {0.5: [500.0] * 5, 0.98: [900.0] * 5, 0.99: [1200.0] * 5})
    d = decide(t, 9, _hist(500.0), fc, NOW)
    assert d.quantile == 0.98 and d.to_units == math.ceil(900 * t.predictive_headroom / 100)
    # p98 missing from the grid: the next one above (the safe side) is used.
    fc2 = Forecast(NOW, 60.0, {0.5: [500.0] * 5, 0.99: [1200.0] * 5})
    d2 = decide(t, 12, _hist(500.0), fc2, NOW)
    assert d2.quantile == 0.99 and d2.to_units == math.ceil(1200 * t.predictive_headroom / 100)
    assert d2.risk == pytest.approx(0.01)  # the count covers p99 and not more of the grid


def test_predictive_orders_capacity_one_delay_ahead() -> None:
    """Load jumps from 300 to 1500 in forecast step 4 (180..240 s after issue): with a 120 s delay
    and 15 s interval the policy reacts once now + 135 s reaches that step, not before."""
    # Headroom 1: the counts read straight off the forecast (this test is about *when*, not how much).
    t = _target(policy="predictive", predictive_headroom=1.0, rails=GuardRails(scale_up_units=100))
    fc = Forecast(NOW, 60.0, {0.98: [300.0, 300.0, 300.0, 1500.0, 1500.0]})
    st = PolicyState()
    seen = {}
    cur = 3
    for k in range(0, 8):
        now = NOW + 15 * k
        d = decide(t, cur, MetricHistory((now - 15,), (300.0,)), fc, now, st)
        st, cur = d.state, d.to_units
        seen[k * 15] = cur
    assert seen[0] == seen[30] == seen[45] == 3  # window [now, now + 135 s] ends at or before 180 s: not yet
    assert seen[60] == 15  # window reaches into step 4: 1500/100 ordered at 60 s
    # ready at 60 + 120 = 180 s, exactly when the load arrives: no earlier (no waste), no later


def test_fallback_to_reactive_when_forecast_missing_or_stale() -> None:
    t = _target(policy="hybrid")
    hpa = decide(_target(policy="reactive"), 4, _hist(600.0), None, NOW)
    d = decide(t, 4, _hist(600.0), None, NOW)
    assert d.policy == "hybrid (fallback: reactive)" and "no forecast" in d.reason
    assert d.to_units == hpa.to_units == 8  # ceil(600/70) = 9, limited to 4+4
    stale = _flat_forecast(100.0, issued_at=NOW - 600)
    d2 = decide(t, 4, _hist(600.0), stale, NOW)
    assert d2.policy.endswith("(fallback: reactive)") and "old" in d2.reason and d2.to_units == 8
    short = Forecast(NOW, 60.0, {0.98: [100.0]})  # 1 step: does not cover 135 s
    d3 = decide(t, 4, _hist(600.0), short, NOW)
    assert "does not cover" in d3.reason and d3.forecast_model is None


def test_fallback_when_forecast_was_recently_wrong_and_recovery() -> None:
    t = _target(policy="predictive", miss_window=4, miss_limit=2, emergency_miss_ratio=None,
                emergency_utilisation=None, rails=GuardRails(scale_down_stabilisation_s=0))  # fmt: skip
    low = _flat_forecast(100.0)  # p98 = 148
    st = PolicyState()
    # The forecast's checks fall due after the 120 s delay; the load then is 500 > 148: misses.
    policies = []
    for k in range(0, 14):
        now = NOW + 15 * k
        fc = Forecast(now, 60.0, low.quantiles)
        load = 100.0 if k < 8 else 500.0
        d = decide(t, 5, MetricHistory((now - 15,), (load,)), fc, now, st)
        st = d.state
        policies.append(d.policy)
    assert policies[0] == "predictive"
    assert policies[-1] == "predictive (fallback: reactive)"
    assert "missed" in d.reason and d.to_units == math.ceil(500 / 70)
    # A good forecast earns its way back once its checks come due and pass.
    good = _flat_forecast(500.0)  # p98 = 740
    for k in range(14, 40):
        now = NOW + 15 * k
        d = decide(t, 8, MetricHistory((now - 15,), (500.0,)), Forecast(now, 60.0, good.quantiles), now, st)
        st = d.state
    assert d.policy == "predictive" and d.to_units == math.ceil(740 * t.predictive_headroom / 100)


def test_hybrid_is_max_of_predictive_and_reactive_floor() -> None:
    t = _target(policy="hybrid")
    low = Forecast(NOW, 60.0, {0.98: [200.0] * 5})
    d = decide(t, 5, _hist(550.0), low, NOW)  # predictive ceil(200 × 1.1 / 100) = 3 < the floor
    floor = hpa_recommendation(5, 550.0, 100.0 * t.hybrid_floor_utilisation, t.tolerance)
    assert floor > 3 and d.to_units == floor and "reactive floor" in d.reason
    high = Forecast(NOW, 60.0, {0.98: [950.0] * 5})
    assert decide(t, 8, _hist(550.0), high, NOW).to_units == math.ceil(950 * t.predictive_headroom / 100)


def test_emergency_path_jumps_past_step_limits_and_says_why() -> None:
    t = _target(policy="reactive", rails=GuardRails(max_units=50))
    d = decide(t, 2, _hist(2000.0), None, NOW)  # 10x the capacity of 2 units
    assert d.emergency and "EMERGENCY" in d.reason
    # max(HPA ceil(2000/70) = 29, ceil(2000 × emergency_headroom / 100)), past the +4 step limit
    assert d.to_units == max(29, math.ceil(2000 * t.emergency_headroom / 100)) > 6
    capped = decide(_target(policy="reactive", rails=GuardRails(max_units=10)), 2, _hist(2000.0), None, NOW)
    assert capped.emergency and capped.to_units == 10
    calm = decide(t, 2, _hist(250.0), None, NOW)  # 1.25x: not past the 1.5 bound
    assert not calm.emergency
    # A forecast beaten by more than 1.5x is an emergency too.
    tp = _target(policy="predictive", emergency_utilisation=None)
    st = PolicyState(checks=((NOW - 30, 300.0),))  # due before the latest observation (NOW - 15)
    dm = decide(tp, 10, _hist(900.0), _flat_forecast(900.0), NOW, st)
    assert dm.emergency and "beat the forecast" in dm.reason


def test_decision_record_has_the_numbers() -> None:
    d = decide(_target(policy="predictive"), 3, _hist(300.0), _flat_forecast(300.0), NOW)
    rec = d.as_record()
    assert set(rec) >= {"from", "to", "policy", "reason", "expected_cost_per_hour", "risk", "quantile"}
    assert rec["from"] == 3 and rec["to"] == d.to_units and "p98" in rec["reason"]


def test_static_policy_holds_max_units() -> None:
    d = decide(_target(policy="static", rails=GuardRails(max_units=7)), 7, _hist(1.0), None, NOW)
    assert d.to_units == 7 and d.policy == "static"


def test_bad_inputs_are_clear() -> None:
    with pytest.raises(ValueError, match="history"):
        MetricHistory((1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match="current"):
        decide(_target(), -1, _hist(1.0), None, NOW)


def test_headroom_and_hold_after_a_miss() -> None:
    from tasks.scaling.guardrails import RailState

    # The defaults: 10 % headroom, a 90 s scale-down window while the forecast is trusted, and the
    # HPA's 300 s (the rails' default) after a miss.
    t = _target(policy="predictive")
    assert t.rails.scale_down_stabilisation_s == 300.0 and t.predictive_headroom == pytest.approx(1.1)
    fc = Forecast(NOW, 60.0, {0.98: [900.0] * 5})
    assert decide(t, 10, _hist(500.0), fc, NOW).to_units == 10  # ceil(900 * 1.1 / 100)
    low = Forecast(NOW, 60.0, {0.98: [150.0] * 5})
    recs = RailState(recommendations=((NOW - 200, 10),))
    calm = decide(t, 10, _hist(100.0), low, NOW, PolicyState(rails=recs, outcomes=(False,)))
    assert calm.to_units == 2  # the 10 is older than the 90 s window: ceil(150 * 1.1 / 100)
    missed = decide(t, 10, _hist(100.0), low, NOW, PolicyState(rails=recs, outcomes=(True,)))
    assert missed.to_units == 10 and "300s" in missed.reason  # after a miss: the HPA's 300 s hold
    # The reactive policy (the HPA) keeps the rails' 300 s; rails shorter than 90 s are never lengthened.
    hpa = decide(_target(policy="reactive", emergency_utilisation=None), 10, _hist(100.0), None, NOW,
                 PolicyState(rails=recs))  # fmt: skip
    assert hpa.to_units == 10 and "300s" in hpa.reason
    quick = _target(policy="predictive", rails=GuardRails(scale_down_stabilisation_s=0))
    assert decide(quick, 10, _hist(100.0), low, NOW, PolicyState(rails=RailState(((NOW - 30, 10),)))).to_units == 2
    # None: the rails' window applies while the forecast is trusted too.
    slow = _target(policy="predictive", predictive_stabilisation_s=None)
    assert decide(slow, 10, _hist(100.0), low, NOW, PolicyState(rails=recs, outcomes=(False,))).to_units == 10


def test_median_headroom_is_a_relative_floor_that_binds_only_when_the_quantile_is_tight() -> None:
    """High counts: the p95 sits a few % over the median, so a flash crowd's +30 % is not covered
    unless the median × ``predictive_median_headroom`` floor is; low, noisy counts: the p95 is far
    above the median already and the floor changes nothing."""
    t = _target(policy="predictive", predictive_headroom=1.0, predictive_median_headroom=1.3)
    tight = Forecast(NOW, 60.0, {0.5: [1000.0] * 5, 0.95: [1050.0] * 5})
    d = decide(t, 12, _hist(1000.0), tight, NOW)
    assert d.to_units == 13 and "median 1000 × 1.3" in d.reason  # ceil(1300/100), not ceil(1050/100) = 11
    wide = Forecast(NOW, 60.0, {0.5: [1000.0] * 5, 0.95: [1800.0] * 5})
    assert decide(t, 12, _hist(1000.0), wide, NOW).to_units == 18  # the quantile already covers it
    off = _target(policy="predictive", predictive_headroom=1.0, predictive_median_headroom=1.0)
    assert decide(off, 12, _hist(1000.0), tight, NOW).to_units == 11
    # No median in the forecast: the floor cannot be read and is skipped, not guessed.
    only_p95 = Forecast(NOW, 60.0, {0.95: [1050.0] * 5})
    assert decide(t, 12, _hist(1000.0), only_p95, NOW).to_units == 11


def _minutes(values: list[float]) -> MetricHistory:
    """Per-minute history ending at NOW - 15 s (oldest first)."""
    n = len(values)
    return MetricHistory(tuple(NOW - 15 - 60 * (n - 1 - i) for i in range(n)), tuple(values))


def test_ramp_rate_hand_checked_and_noise_discount() -> None:
    # An exact 10 %/min ramp reads as 10 %/min; flat is 0; too few points is 0.
    ramp = [1000 * 1.1**i for i in range(4)]
    assert ramp_rate(_minutes(ramp), 180.0) == pytest.approx(0.10)
    assert ramp_rate(_minutes([500.0] * 4), 180.0) == pytest.approx(0.0)
    assert ramp_rate(_minutes(ramp[-2:]), 180.0) == 0.0
    # Points older than the window are ignored: a fall before it does not hide the ramp.
    assert ramp_rate(_minutes([9000.0, *ramp]), 180.0) == pytest.approx(0.10)
    # Counting noise: the same 10 %/min at 10 requests/min is discounted far more than at 10 000.
    low = [10 * 1.1**i for i in range(4)]
    high = [10_000 * 1.1**i for i in range(4)]
    x = [-3.0, -2.0, -1.0, 0.0]
    sxx = 5.0
    se_low = math.sqrt(sum((xi + 1.5) ** 2 / v for xi, v in zip(x, low, strict=True))) / sxx
    assert ramp_rate(_minutes(low), 180.0, 2.0) == pytest.approx(math.expm1(math.log(1.1) - 2 * se_low))
    assert ramp_rate(_minutes(low), 180.0, 2.0) < 0 < ramp_rate(_minutes(high), 180.0, 2.0) < 0.1


def test_ramp_aware_headroom_orders_ahead_of_a_ramp_and_is_capped() -> None:
    fc = _flat_forecast(1000.0, qs=(0.95,))  # p95 = 1450 over the window

    def t(**kw: object) -> ScalingTarget:  # the hand-checked maths: no counting-noise discount
        return _target(**{"ramp_noise_k": 0.0, **kw})

    ramp = [1000 * 1.1**i for i in range(4)]
    h = _target().predictive_headroom
    plain = decide(t(ramp_gain=0.0), 16, _minutes(ramp), fc, NOW)
    assert plain.to_units == math.ceil(1450 * h / 100)
    # 10 %/min over the lead (delay 120 s + interval 15 s + the metric's 15 s age = 2.5 min), gain 1.
    on = decide(t(ramp_gain=1.0, ramp_window_s=180.0), 16, _minutes(ramp), fc, NOW)
    assert on.to_units == math.ceil(1450 * h * 1.1**2.5 / 100) > plain.to_units
    assert "ramp 10.0 %/min" in on.reason
    # A flat load, or a ramp under the threshold, adds nothing.
    assert decide(t(ramp_gain=1.0), 16, _minutes([1000.0] * 6), fc, NOW).to_units == plain.to_units
    assert decide(t(ramp_gain=1.0, ramp_min_rate=0.2), 16, _minutes(ramp), fc, NOW).to_units == plain.to_units
    # The multiplier is capped, so a 5x spike does not order 5^gain x the forecast.
    spike = decide(t(ramp_gain=3.0, ramp_max_headroom=1.3), 16, _minutes([200, 200, 200, 1000.0]), fc, NOW)
    assert spike.to_units == math.ceil(1450 * h * 1.3 / 100)
    # The default (gain 3, noise k 5): the same 10 %/min ramp at 1000/min is counted net of its noise,
    # so it orders more than without a ramp and less than the undiscounted gain-3 extrapolation.
    d = decide(_target(), 16, _minutes(ramp), fc, NOW)
    raw = decide(t(), 16, _minutes(ramp), fc, NOW)
    assert plain.to_units < d.to_units < raw.to_units

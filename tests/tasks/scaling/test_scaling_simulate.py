"""Simulator accounting, the causal nowcaster, and trace loading/regularising."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tasks.config.scaling import GuardRails, ScalingTarget
from tasks.scaling.nowcast import Nowcaster
from tasks.scaling.simulate import nowcasts, oracle, reference_targets, simulate, static_peak
from tasks.scaling.traces import Trace, TraceError, load_csv_trace, regularise

START = 1_700_000_040  # a minute boundary


def _trace(values: np.ndarray, name: str = "t") -> Trace:
    return Trace(name, ((START, np.asarray(values, dtype=float)),))


def _noisy(days: int = 3, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * 1440)
    rate = 60 + 40 * np.sin(2 * np.pi * t / 1440) + np.where((t % 1440 > 600) & (t % 1440 < 640), 120, 0)
    return rng.poisson(rate).astype(float)


def test_constant_load_hand_checked() -> None:
    """100/min, capacity 10: the HPA starts at ceil(100/7) = 15 and holds (ratio 0.95 is within tolerance)."""
    tr = _trace(np.full(120, 100.0))
    target = ScalingTarget(name="c", capacity_per_unit=10.0, provisioning_delay_s=120, policy="reactive")
    r = simulate(tr, target)
    assert r.replica_minutes == pytest.approx(15 * 120)
    assert (r.short_minutes, r.scale_events, r.unserved) == (0, 0, 0.0)
    o = oracle(tr, 10.0)
    assert o.replica_minutes == 10 * 120 and o.short_minutes == 0


def test_step_up_is_short_for_about_the_delay_and_static_never() -> None:
    """Load jumps 50 → 500 at minute 30; capacity 10; 120 s delay, HPA without emergency path."""
    y = np.r_[np.full(30, 50.0), np.full(30, 500.0)]
    tr = _trace(y)
    target = ScalingTarget(name="s", capacity_per_unit=10.0, provisioning_delay_s=120, policy="reactive",
                           emergency_utilisation=None)  # fmt: skip
    r = simulate(tr, target)
    # The HPA sees the jump one step late, then needs the delay (+ step-limit doublings): ≥ 2 short minutes.
    assert 2 <= r.short_minutes <= 5
    assert r.unserved > 0
    s = static_peak(tr, 10.0)
    assert s.short_minutes == 0 and s.replica_minutes == 50 * 60
    # Zero delay: the only shortfall left is the one-step metric lag and the step limit.
    quick = simulate(tr, target.model_copy(update={"provisioning_delay_s": 0}))
    assert quick.short_minutes < r.short_minutes


def test_oracle_is_a_lower_bound_for_policies_that_never_fall_short() -> None:
    y = _noisy(2)
    tr = _trace(y)
    cap = float(y.max()) / 40
    o = oracle(tr, cap)
    assert o.replica_minutes == pytest.approx(float(np.ceil(y / cap - 1e-9).sum()))
    generous = ScalingTarget(name="g", capacity_per_unit=cap, provisioning_delay_s=60, policy="reactive",
                             target_utilisation=0.3)  # fmt: skip
    r = simulate(tr, generous)
    s = static_peak(tr, cap)
    for res in (r, s):
        if res.short_minutes == 0:
            assert res.replica_minutes >= o.replica_minutes
    assert s.short_minutes == 0 and s.replica_minutes >= o.replica_minutes
    # Any policy: the served demand (demand - unserved) never exceeds the ready capacity paid for.
    assert r.replica_minutes * cap >= r.demand - r.unserved


def test_perfect_forecast_predictive_never_short_where_hpa_is() -> None:
    """With the true future as its forecast, the predictive policy orders capacity one delay ahead."""
    y = np.r_[np.full(30, 50.0), np.full(30, 400.0), np.full(30, 50.0), np.full(30, 400.0)]
    tr = _trace(y)
    h = 5
    fut = np.full((len(y), h), np.nan)
    for k in range(1, h + 1):
        fut[: len(y) - k, k - 1] = y[k:]
    fc = [{0.98: fut}]
    rails = GuardRails(scale_down_stabilisation_s=0, scale_up_units=100)
    pred = ScalingTarget(name="p", capacity_per_unit=10.0, provisioning_delay_s=120, policy="predictive",
                         shortage_penalty_per_unit_hour=49.0, rails=rails)  # fmt: skip
    hpa = reference_targets("p", 10.0, 120)["hpa"]
    rp = simulate(tr, pred, fc)
    rh = simulate(tr, hpa, fc)
    assert rh.short_minutes > 0
    assert rp.short_minutes < rh.short_minutes
    # Its shortfalls are only where the forecast is NaN (the first minute) or the rails hold it.
    assert rp.short_minutes <= 1


def test_nowcast_is_causal_and_calibrated() -> None:
    y = _noisy(4)
    model = Nowcaster(window=1440, min_errors=120).fit(y[:1440])
    a = model.forecast(y, 4)
    changed = y.copy()
    changed[3000:] *= 5
    b = model.forecast(changed, 4)
    for q in a:
        # Row t uses y[0..t]: rows before 3000 must not move when the future changes.
        np.testing.assert_array_equal(a[q][:3000], b[q][:3000])
        assert not np.allclose(a[q][3000:3100], b[q][3000:3100], equal_nan=True)
    # Coverage of the 1-minute-ahead p90 over the last two days is near 90 %.
    p90 = a[0.9][2880:-1, 0]
    hit = np.mean(y[2881:] <= p90)
    assert 0.85 <= hit <= 0.95, hit
    with pytest.raises(ValueError, match="alpha"):
        Nowcaster(alpha=0)
    with pytest.raises(ValueError, match="one day"):
        Nowcaster().fit(y[:100])


def test_nowcasts_learn_the_profile_only_from_the_training_days() -> None:
    y = _noisy(3)
    tr = _trace(y)
    a = nowcasts(tr, 4, train_days=1)[0]
    changed = y.copy()
    changed[2000:] = 0.0
    b = nowcasts(_trace(changed), 4, train_days=1)[0]
    np.testing.assert_array_equal(a[0.98][:2000], b[0.98][:2000])


def test_regularise_sums_duplicates_splits_gaps_and_holds_coarse_samples() -> None:
    ts = np.r_[np.arange(0, 120 * 60, 60), 120 * 60 - 60, np.arange(10_000 * 60, 10_200 * 60, 60)]
    vals = np.r_[np.ones(120), 5.0, np.full(200, 2.0)]
    tr = regularise(ts + START, vals, name="dup")
    assert len(tr.segments) == 2
    assert tr.segments[0][1][-1] == 6.0  # duplicate minute summed
    assert tr.minutes == 120 + 200
    coarse = regularise(np.arange(0, 3000, 300) + START, np.arange(10.0), name="az", min_segment_min=1)
    assert len(coarse.segments) == 1 and coarse.minutes == 50
    assert list(coarse.segments[0][1][:6]) == [0, 0, 0, 0, 0, 1]  # each 5-minute value held
    minutes = np.r_[np.arange(10), 13, 14]  # minutes 10-12 missing: a short gap
    filled = regularise(minutes * 60 + START, np.r_[np.ones(10), 4.0, 4.0], name="gap", min_segment_min=1)
    assert list(filled.segments[0][1][9:]) == [1.0, 1.75, 2.5, 3.25, 4.0, 4.0]  # interpolated, not split
    with pytest.raises(TraceError, match="negative"):
        regularise(np.array([0, 60]), np.array([1.0, -1.0]), name="neg", min_segment_min=1)


def test_load_csv_trace_and_errors_name_the_column(tmp_path: Path) -> None:
    f = tmp_path / "shop.csv"
    rows = ["when,reqs,other"] + [f"2024-01-01 {h:02d}:{m:02d},{h * 60 + m},x" for h in range(2) for m in range(60)]
    f.write_text("\n".join(rows) + "\n")
    tr = load_csv_trace(f, time_col="when", value_col="reqs")
    assert tr.name == "shop" and tr.minutes == 120 and tr.peak == 119.0
    with pytest.raises(TraceError, match="'nope'"):
        load_csv_trace(f, time_col="when", value_col="nope")
    with pytest.raises(TraceError, match="'other' must be numeric"):
        load_csv_trace(f, time_col="when", value_col="other")
    with pytest.raises(TraceError, match="does not exist"):
        load_csv_trace(tmp_path / "missing.csv", time_col="a", value_col="b")
    assert math.isclose(tr.head(30).minutes, 30)


def test_ramp_aware_headroom_covers_a_ramp_a_lagging_forecast_misses() -> None:
    """A 10 %/min ramp for 20 minutes; the forecast only repeats the last minute (a lagging level).

    Plain predictive is short on most ramp minutes (the load outgrows the order within the delay);
    the ramp-aware target (gain 1.5: a per-minute value stands for its minute's middle, so gain 1
    under-shoots by half a minute) sees the ramp in the simulator's history and orders ahead.
    """
    y = np.r_[np.full(30, 1000.0), 1000.0 * 1.1 ** np.arange(1, 21), np.full(30, 1000.0 * 1.1**20)]
    tr = _trace(y)
    h = 5
    lag = np.repeat(y[:, None], h, axis=1)  # row t: "the next minutes look like minute t"
    fc = [{0.95: lag}]
    cap = float(y.max()) / 40
    plain = ScalingTarget(name="r", capacity_per_unit=cap, provisioning_delay_s=120, policy="predictive",
                          shortage_penalty_per_unit_hour=19.0, emergency_utilisation=None,
                          emergency_miss_ratio=None, miss_window=400, miss_limit=400, ramp_gain=0.0)  # fmt: skip
    ramp = plain.model_copy(update={"ramp_gain": 1.5, "ramp_window_s": 180.0, "ramp_noise_k": 0.0})
    rp, rr = simulate(tr, plain, fc), simulate(tr, ramp, fc)
    # The default setting (gain 3, net of 5 counting-noise standard errors, cap 1.5) covers it as well.
    default = simulate(tr, plain.model_copy(update={"ramp_gain": ScalingTarget.model_fields["ramp_gain"].default}), fc)
    assert rp.short_minutes >= 15
    # Left: the first ramp minutes, before the 180 s window holds three points of it (measured 22 → 4).
    assert rr.short_minutes <= 5
    assert rr.replica_minutes > rp.replica_minutes  # the cover is paid for, not free
    assert default.short_minutes <= 5 and default.replica_minutes > rp.replica_minutes


def test_reference_targets_are_the_config_defaults_and_overrides_replay_a_variant() -> None:
    """One source of truth: the benchmarked setting is what a user's target gets by default."""
    ref = reference_targets("w", 10.0, 120)
    assert ref["predictive"] == ScalingTarget(name="w", capacity_per_unit=10.0, provisioning_delay_s=120)
    assert ref["hybrid"] == ScalingTarget(name="w", capacity_per_unit=10.0, provisioning_delay_s=120, policy="hybrid")
    # The HPA reference is the reactive policy with the HPA's own rails (300 s scale-down window), no emergency.
    hpa = ref["hpa"]
    assert hpa.policy == "reactive" and hpa.rails.scale_down_stabilisation_s == 300.0
    assert hpa.emergency_utilisation is None and hpa.emergency_miss_ratio is None
    var = reference_targets("w", 10.0, 120, overrides={"predictive_median_headroom": 1.0, "ramp_gain": 0.0})
    assert var["predictive"].predictive_median_headroom == 1.0 and var["hybrid"].ramp_gain == 0.0
    assert var["hpa"] == hpa  # the HPA reference never changes
    with pytest.raises(ValueError, match="predictive_headroom"):
        reference_targets("w", 10.0, 120, overrides={"predictive_headroom": 0.5})


def test_benchmark_set_option_checks_the_field_before_replaying() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "scaling_sim.py"
    spec = importlib.util.spec_from_file_location("scaling_sim_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_overrides(["ramp_gain=0", "predictive_stabilisation_s=none"]) == {
        "ramp_gain": 0,
        "predictive_stabilisation_s": None,
    }
    with pytest.raises(ValueError, match="colour"):
        mod.parse_overrides(["colour=1"])
    with pytest.raises(ValueError, match="predictive_headroom"):
        mod.parse_overrides(["predictive_headroom=0.5"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        mod.parse_overrides(["ramp_gain"])

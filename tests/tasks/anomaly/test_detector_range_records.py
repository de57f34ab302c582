"""The ``range`` detector reports any new all-time record beyond 2 % of the range seen (5 %
before): a never-seen value at the start of an incident is reported early, and the quiet period
then silences the follow-ups."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.anomaly.detector import DetectorConfig, score_series

STEP = 300.0
WARMUP = 576


def heavy_tailed(n: int = 3000, seed: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Noise with routine 20 sd spikes, so the z-based detectors are used to big deviations."""
    rng = np.random.default_rng(seed)
    ts = 1_600_000_000.0 + np.arange(n) * STEP
    return ts, 100 + rng.standard_t(1.5, n).clip(-20, 20)


@pytest.mark.parametrize("beyond", [0.03, 0.04])
def test_a_small_new_record_beyond_the_tolerance_is_reported_by_range(beyond: float) -> None:
    ts, v = heavy_tailed()
    at = 2500
    lo, hi = v[:at].min(), v[:at].max()
    v[at] = hi + beyond * (hi - lo)
    res = score_series(ts, v, config=DetectorConfig(warmup=WARMUP))
    assert res.detector[at] == "range"
    # excess / tolerance = beyond / 0.02, shaped like the others: above the 0.5 "reported alarm" level
    rr = beyond / 0.02
    assert res.score[at] == pytest.approx(rr / (rr + 0.5))
    assert res.score[at] > 0.6


def test_a_record_within_the_tolerance_is_not_a_range_alarm() -> None:
    ts, v = heavy_tailed()
    at = 2500
    lo, hi = v[:at].min(), v[:at].max()
    v[at] = hi + 0.015 * (hi - lo)  # a new record, but within 2 % of the range seen
    res = score_series(ts, v, config=DetectorConfig(warmup=WARMUP))
    assert res.detector[at] != "range"
    # the old 5 % tolerance did not see the 3 % record that the new default reports
    v[at] = hi + 0.03 * (hi - lo)
    assert score_series(ts, v, config=DetectorConfig(warmup=WARMUP, range_tolerance=0.05)).detector[at] != "range"
    assert score_series(ts, v, config=DetectorConfig(warmup=WARMUP)).detector[at] == "range"

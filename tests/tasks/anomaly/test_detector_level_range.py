"""The ``level_range`` detector (``range`` on the warm-up/32 moving mean) reports a sustained
rise inside the range a spiky series has already shown, and is causal and restorable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.anomaly.detector import STATE_VERSION, Detector, DetectorConfig, score_series

DAY_STEP = 86_400.0  # daily samples: no daily seasonal slot
WARMUP = 600


def test_defaults() -> None:
    c = DetectorConfig()
    assert (c.level_range_fraction, c.level_range_tolerance) == (0.03125, 0.035)
    assert STATE_VERSION == 8


ONLY_LEVEL_RANGE = {
    "weight_residual": 0.0,
    "weight_seasonal": 0.0,
    "weight_level_shift": 0.0,
    "weight_slow_shift": 0.0,
    "range_tolerance": 1e9,
}


RISE = 3010


def busy_series(n: int = 4000, at: int = RISE) -> tuple[np.ndarray, np.ndarray]:
    """A spike of 10 every 50 samples on a flat 0 (so the range seen is [0, 10]), then from ``at`` a
    sustained rise to 2 for 100 samples: no new value, but a level over 18 samples never seen."""
    ts = 1_600_000_000.0 + np.arange(n) * DAY_STEP
    v = np.zeros(n)
    v[::50] = 10.0
    v[at : at + 100] = np.maximum(v[at : at + 100], 2.0)
    return ts, v


def test_a_sustained_rise_inside_the_range_is_a_level_range_record() -> None:
    ts, v = busy_series()
    cfg = DetectorConfig(warmup=WARMUP, **ONLY_LEVEL_RANGE)  # type: ignore[arg-type]
    assert Detector(cfg)._level_range_size() == WARMUP // 32
    res = score_series(ts, v, config=cfg)
    alarms = np.flatnonzero(res.score >= 0.5)
    assert alarms.size and RISE <= alarms[0] < RISE + WARMUP // 32  # within one moving-mean window
    assert res.detector[alarms[0]] == "level_range" and "level_range:" in res.reason[alarms[0]]
    assert v[RISE : RISE + 100].max() <= v[:RISE].max()  # indeed no new value: `range` cannot see it
    off = score_series(ts, v, config=DetectorConfig(warmup=WARMUP, **{**ONLY_LEVEL_RANGE, "level_range_fraction": 0.0}))  # type: ignore[arg-type]
    assert off.score.max() == 0.0


def test_level_range_state_survives_a_json_round_trip() -> None:
    ts, v = busy_series()
    cfg = DetectorConfig(warmup=WARMUP)
    full = score_series(ts, v, config=cfg)
    det = Detector(cfg)
    first = score_series(ts[: RISE - 10], v[: RISE - 10], detector=det)
    state = json.loads(json.dumps(det.state_dict()))
    assert state["level_lo"] == 0.0 and state["level_hi"] == 10.0 / (WARMUP // 32)
    rest = score_series(ts[RISE - 10 :], v[RISE - 10 :], detector=Detector.from_state(state))
    assert np.array_equal(np.concatenate([first.score, rest.score]), full.score)


def test_scores_at_t_do_not_depend_on_later_samples() -> None:
    ts, v = busy_series()
    cfg = DetectorConfig(warmup=WARMUP)
    full = score_series(ts, v, config=cfg).score
    head = score_series(ts[: RISE + 5], v[: RISE + 5], config=cfg).score
    assert np.array_equal(full[: RISE + 5], head)


def test_a_constant_series_has_no_level_range_to_leave() -> None:
    n = 2000
    ts = 1_600_000_000.0 + np.arange(n) * DAY_STEP
    res = score_series(ts, np.full(n, 3.0), config=DetectorConfig(warmup=WARMUP, **ONLY_LEVEL_RANGE))  # type: ignore[arg-type]
    assert res.score.max() == 0.0 and "level_range" not in res.detector


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("level_range_tolerance", 0.0, "must be > 0"),
        ("range_tolerance", -0.01, "must be a number >= 0"),
        ("level_range_fraction", float("nan"), "must be a number >= 0"),
        ("slow_recent", 0, "a window of at least 1 sample"),
        ("history_quantile", 1.5, r"must be in \(0, 1\]"),
    ],
)
def test_bad_detector_settings_are_refused_naming_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=rf"detector\.{field}: {message}"):
        DetectorConfig.from_dict({field: value})

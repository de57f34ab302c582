"""Round 8: the ``pattern`` detector (record novelty of the last window's shape) sees a change in how a
series moves that no single sample shows, stays silent on noise, and is causal and restorable."""

from __future__ import annotations

import json

import numpy as np

from tasks.anomaly.detector import STATE_VERSION, Detector, DetectorConfig, score_series

DAY_STEP = 86_400.0  # daily samples: no daily seasonal slot, so only the other detectors are in play
WARMUP = 600
CHANGE = 2500


def rhythm_series(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """A sine of period 100 that speeds up to period 50 at ``CHANGE``: every value stays in the usual
    range and moves by the usual amounts, only the shape of a window is new."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    phase = np.where(i < CHANGE, i / 100, CHANGE / 100 + (i - CHANGE) / 50)
    ts = 1_600_000_000.0 + i * DAY_STEP
    return ts, np.sin(2 * np.pi * phase) + rng.normal(0, 0.05, n)


def test_a_faster_rhythm_is_found_by_the_pattern_detector_only() -> None:
    for seed in (0, 1):
        ts, v = rhythm_series(seed)
        res = score_series(ts, v, config=DetectorConfig(warmup=WARMUP))
        alarms = np.flatnonzero(res.score >= 0.5)
        assert alarms.size and CHANGE <= alarms[0] < CHANGE + 100  # within one old period of the change
        assert res.detector[alarms[0]] == "pattern"
        assert "pattern:" in res.reason[alarms[0]]
        off = score_series(ts, v, config=DetectorConfig(warmup=WARMUP, pattern_fraction=0.0))
        assert off.score[CHANGE : CHANGE + 400].max() < 0.5  # the point detectors see nothing there


def test_pattern_detector_is_silent_on_noise() -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n = 4000
        ts = 1_600_000_000.0 + np.arange(n) * 300.0
        res = score_series(ts, 50 + rng.normal(0, 1, n), config=DetectorConfig(warmup=WARMUP))
        assert "pattern" not in res.detector


def test_pattern_state_survives_a_json_round_trip() -> None:
    ts, v = rhythm_series(0)
    cfg = DetectorConfig(warmup=WARMUP)
    full = score_series(ts, v, config=cfg)
    det = Detector(cfg)
    cut = CHANGE + 17  # memory, pending windows and the record are all in use here
    first = score_series(ts[:cut], v[:cut], detector=det)
    state = json.loads(json.dumps(det.state_dict()))
    assert state["version"] == STATE_VERSION == 8
    assert state["pattern_memory"] and state["pattern_pending"] and state["pattern_max"] > 0
    det = Detector.from_state(state)
    rest = score_series(ts[cut:], v[cut:], detector=det)
    assert np.array_equal(np.concatenate([first.score, rest.score]), full.score)
    assert full.detector == first.detector + rest.detector


def test_pattern_memory_is_bounded() -> None:
    ts, v = rhythm_series(1)
    det = Detector(DetectorConfig(warmup=WARMUP, pattern_memory=10))
    score_series(ts, v, detector=det)
    memory = det.state_dict()["pattern_memory"]
    assert len(memory) == 10 and all(len(f) == DetectorConfig().pattern_blocks for f in memory)


def test_scores_at_t_do_not_depend_on_later_samples() -> None:
    ts, v = rhythm_series(2)
    cfg = DetectorConfig(warmup=WARMUP)
    full = score_series(ts, v, config=cfg).score
    head = score_series(ts[: CHANGE + 60], v[: CHANGE + 60], config=cfg).score
    assert np.array_equal(full[: CHANGE + 60], head)


ONLY_LEVEL_RANGE = {
    "weight_residual": 0.0,
    "weight_seasonal": 0.0,
    "weight_level_shift": 0.0,
    "weight_slow_shift": 0.0,
    "range_tolerance": 1e9,
    "pattern_fraction": 0.0,
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

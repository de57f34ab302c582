"""After a short warm-up the level-shift test starts on a growing reference window, with its
z in standard errors of the difference of two medians, so more than the residual detector is live
right after the probationary period; a long warm-up keeps the full reference."""

from __future__ import annotations

import json

import numpy as np

from tasks.anomaly.detector import Detector, DetectorConfig, score_series

STEP = 300.0


def shifted_series(n: int = 600, at: int = 190, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_600_000_000.0 + np.arange(n) * STEP
    v = 50 + rng.normal(0, 1, n)
    v[at:] += 4
    return ts, v


def test_level_test_is_live_right_after_a_short_warm_up() -> None:
    ts, v = shifted_series()
    # the shifted values also leave the range seen so far, and their moving mean leaves the range of
    # earlier moving means; switch those detectors off to test this one
    off = {"range_tolerance": 1e9, "level_range_fraction": 0.0}
    short = DetectorConfig(warmup=150, **off)  # type: ignore[arg-type]
    res = score_series(ts, v, config=short)
    assert "level_shift" in res.detector[150:200]  # live (and calibrated) soon after the warm-up
    i = 190 + int(np.argmax(res.score[190:200]))
    assert res.score[i] > 0.5 and res.detector[i] in ("level_shift", "residual")
    # with the old rule (a full 300-sample reference first) only the residual test is live there
    old = score_series(
        ts,
        v,
        config=DetectorConfig(warmup=150, level_min_reference=300, **off),  # type: ignore[arg-type]
    )
    assert "level_shift" not in old.detector[:400]


def test_long_warm_up_keeps_the_full_reference() -> None:
    c = DetectorConfig(warmup=750)
    assert Detector(c)._level_min_reference() == c.level_reference
    assert Detector(DetectorConfig(warmup=150))._level_min_reference() == 150 - 100 - 5 + 1
    assert Detector(DetectorConfig(warmup=50))._level_min_reference() == c.level_min_reference


def test_growing_reference_survives_a_json_round_trip_mid_growth() -> None:
    ts, v = shifted_series()
    cfg = DetectorConfig(warmup=150)
    full = score_series(ts, v, config=cfg)
    det = Detector(cfg)
    first = score_series(ts[:120], v[:120], detector=det)  # the reference is still growing here
    det = Detector.from_state(json.loads(json.dumps(det.state_dict())))
    rest = score_series(ts[120:], v[120:], detector=det)
    assert np.array_equal(np.concatenate([first.score, rest.score]), full.score)
    assert full.detector == first.detector + rest.detector

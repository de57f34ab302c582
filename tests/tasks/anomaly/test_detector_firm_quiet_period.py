"""A clear alarm (score >= ``quiet_firm_score``, 0.65) cannot be overtaken in its quiet period;
a marginal one still can. On NAB every breakthrough after a reported alarm was a false alarm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_detector_quiet import WARMUP, spiky_series  # one generator for both quiet-period tests

from tasks.anomaly.detector import STATE_VERSION, Detector, DetectorConfig, score_series


def cfg(**kw: float) -> DetectorConfig:
    # range at 5 % so that the first spike is a clear but not maximal alarm (as in test_detector_quiet.py)
    return DetectorConfig(warmup=WARMUP, quiet_fraction=0.5, range_tolerance=0.05, **kw)  # type: ignore[arg-type]


def test_default_firm_score() -> None:
    assert DetectorConfig().quiet_firm_score == 0.65
    assert STATE_VERSION >= 7  # introduced in version 7


def test_a_clear_alarm_is_not_overtaken_in_its_quiet_period() -> None:
    ts, v = spiky_series({1600: 5.5, 1750: 60.0})
    res = score_series(ts, v, config=cfg())
    assert 0.65 <= res.score[1600] < 0.75  # clear, yet 1.3x of it is below the 0.999 cap
    assert res.score[1750] == 0.0 and "quiet after an alarm" in res.reason[1750]
    # the same alarm with the rule off (the Round 5 behaviour): the huge spike breaks through
    off = score_series(ts, v, config=cfg(quiet_firm_score=1.0))
    assert off.score[1600] == res.score[1600] and off.score[1750] > 1.3 * off.score[1600]
    # the rule only ever silences
    changed = res.score != off.score
    assert changed.any() and np.all(res.score[changed] == 0.0)


def test_a_marginal_alarm_is_still_overtaken_and_the_overtaking_one_is_firm() -> None:
    ts, v = spiky_series({1600: 5.3, 1750: 60.0})
    res = score_series(ts, v, config=cfg())
    assert 0.5 <= res.score[1600] < 0.65  # marginal: starts a quiet period that can be broken
    after = np.flatnonzero(res.score[1601:1750] > 0) + 1601
    assert after.size == 1 and res.score[after[0]] > 1.3 * res.score[1600]  # broken by a clear one
    assert res.score[after[0]] >= 0.65
    assert res.score[1750] == 0.0  # which is firm: the spike 150 samples later is the same incident


@pytest.mark.parametrize("cut", [1602, 1700])
def test_the_firm_quiet_period_survives_save_and_restore(cut: int) -> None:
    ts, v = spiky_series({1600: 5.5, 1750: 60.0})
    det = Detector(cfg())
    first = score_series(ts[:cut], v[:cut], detector=det).score
    restored = Detector.from_state(json.loads(json.dumps(det.state_dict())))
    second = score_series(ts[cut:], v[cut:], detector=restored).score
    assert np.concatenate([first, second]).tolist() == score_series(ts, v, config=cfg()).score.tolist()


def test_state_of_the_previous_version_is_refused() -> None:
    state = Detector(cfg()).state_dict()
    state["version"] = 6
    with pytest.raises(ValueError, match="version 6"):
        Detector.from_state(state)

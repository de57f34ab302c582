"""Predictors on synthetic histories where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.caching.access import AccessHistory
from tasks.caching.hotkeys import (
    DecayPredictor,
    TopKPrevPredictor,
    XGBRanker,
    build_predictor,
    key_features,
    top_keys,
)

DAY = 86_400.0


def test_topk_prev_counts_only_the_previous_window() -> None:
    h = AccessHistory.from_keys(["old"] * 50 + ["a", "b", "a", "a", "b", "c"])
    top = top_keys(TopKPrevPredictor(window=6), h, top=3)
    assert [k.key for k in top] == ["a", "b", "c"]
    assert top[0].score == 3


def test_a_burst_decays_below_a_steady_key() -> None:
    # "burst": 100 reads long ago; "steady": one read every 40 requests since (50 in all)
    keys = ["burst"] * 100 + [k for i in range(2000) for k in (["steady"] if i % 40 == 0 else [f"x{i}"])]
    h = AccessHistory.from_keys(keys)
    assert top_keys(DecayPredictor(half_life=100), h, top=1)[0].key == "steady"
    assert top_keys(DecayPredictor(half_life=1e9), h, top=1)[0].key == "burst"  # no decay: plain frequency


def _daily_history(days: int = 10) -> AccessHistory:
    """Background keys all day; "report" is read only 09:00–09:05 every day."""
    rng = np.random.default_rng(0)
    t0 = 1_700_000_000 - (1_700_000_000 % DAY)  # a UTC midnight
    keys: list[str] = []
    times: list[float] = []
    for d in range(days):
        for t in np.sort(rng.uniform(0, DAY, 3000)):
            keys.append(f"bg{rng.integers(0, 40)}")
            times.append(t0 + d * DAY + t)
        for j in range(30):
            keys.append("report")
            times.append(t0 + d * DAY + 9 * 3600 + j * 10)
    return AccessHistory.from_keys(keys, times)


def test_daily_features_mark_a_key_before_its_hour() -> None:
    h = _daily_history()
    t0 = h.times[0] - (h.times[0] % DAY)
    at = t0 + 9 * DAY + 9 * 3600 - 120  # 08:58 on the last day: "report" not read for ~24 h
    ids, x, names = key_features(h.before(at), at, 600.0)
    row = x[list(ids).index(h.keys.index("report"))]
    assert row[names.index("count_same_window_1d_ago")] == 30
    assert row[names.index("share_at_this_time_of_day")] == 1.0
    # the decayed frequency cannot know: a day-old key is not among the busy background keys
    assert "report" not in [k.key for k in top_keys(DecayPredictor(600.0), h.before(at), at, top=5)]


@pytest.mark.parametrize("days", [4, 10])
def test_the_default_predictor_ranks_a_daily_key_first_just_before_its_hour(days: int) -> None:
    h = _daily_history(days)
    t0 = h.times[0] - (h.times[0] % DAY)
    at = t0 + (days - 1) * DAY + 9 * 3600 - 120  # 08:58 on the last day
    past = h.before(at)
    predictor = build_predictor("xgboost", window=600.0, half_life=600.0)  # cache.hot.model's default
    assert [k.key for k in top_keys(predictor, past, at, top=1)] == ["report"]
    # and not at 08:30, when the next window holds none of its reads
    early = at - 1680
    ranked = [
        k.key
        for k in top_keys(build_predictor("xgboost", window=600.0, half_life=600.0), h.before(early), early, top=20)
    ]
    assert "report" not in ranked


def test_features_use_only_the_past() -> None:
    h = AccessHistory.from_keys(["a", "b", "a", "c", "c", "c"])
    ids, x, names = key_features(h, at=3, window=2)
    assert sorted(h.keys[i] for i in ids) == ["a", "b"]  # "c" is read only from t=3 on
    assert x[list(ids).index(0), names.index("count_last_1.0w")] == 1  # [1, 3): one "a" (at t=2)


def test_ranker_without_enough_history_says_so() -> None:
    h = AccessHistory.from_keys(["a", "b"])
    with pytest.raises(ValueError, match="not enough history"):
        XGBRanker(window=10).fit(h)


def test_saved_ranker_predicts_the_same(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    h = AccessHistory.from_keys([f"k{int(z)}" for z in rng.zipf(1.3, 5000) % 300])
    m = XGBRanker(window=500, rounds=20).fit(h)
    m.save(tmp_path / "m.json")
    again = XGBRanker.load(tmp_path / "m.json")
    assert again.window == 500
    assert top_keys(again, h, top=10) == top_keys(m, h, top=10)


def test_unknown_model_names_the_setting() -> None:
    with pytest.raises(ValueError, match="cache.hot.model"):
        build_predictor("lfu", window=1, half_life=1)  # type: ignore[arg-type]

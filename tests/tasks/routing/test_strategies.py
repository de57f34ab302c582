"""Each selection strategy on hand-made target states, against worked numbers."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from tasks.config.routing import RouterSettings, RouterTarget
from tasks.routing.model import PeakEwma, Query, TargetState
from tasks.routing.strategies import (
    ConsistentHash,
    P2CLeastRequest,
    P2CPeakEwma,
    RoundRobin,
    build_strategy,
)


def ts(name: str, *, weight: float = 1.0, pending: int = 0, ewma_ms: float = 30.0, now: float = 0.0) -> TargetState:
    t = TargetState(
        pool="p",
        target=RouterTarget(name=name, url=f"http://127.0.0.1:1/{name}", weight=weight),
        ewma=PeakEwma(10.0, ewma_ms, now),
    )
    t.pending = pending
    return t


Q = Query()


def test_peak_ewma_worked_numbers() -> None:
    e = PeakEwma(10.0, 30.0, 0.0)
    assert e.get(0.0) == pytest.approx(30.0)
    assert e.get(10.0) == pytest.approx(30.0 * math.exp(-1))  # idle: decays toward zero
    e.observe(100.0, 0.0)  # above the estimate: believed at once (peak)
    assert e.get(0.0) == pytest.approx(100.0)
    e.observe(10.0, 10.0)  # below the decayed 100·e^-1 = 36.8: pulled toward 10 with weight 1 − e^-1
    decayed = 100 * math.exp(-1)
    assert e.get(10.0) == pytest.approx(decayed * math.exp(-1) + 10 * (1 - math.exp(-1)))
    assert e.get(10.0) == pytest.approx(19.85, abs=0.01)
    same = PeakEwma(10.0, 50.0, 0.0)
    same.observe(same.get(3.0), 3.0)  # a sample equal to the estimate leaves it there
    assert same.get(3.0) == pytest.approx(50.0 * math.exp(-0.3))
    # reading in between changes nothing
    e2 = PeakEwma(10.0, 100.0, 0.0)
    for t in (1.0, 2.5, 7.0):
        e2.get(t)
    e2.observe(10.0, 10.0)
    assert e2.get(10.0) == pytest.approx(e.get(10.0))


def test_peak_sensitivity_one_slow_answer_counts_at_once() -> None:
    e = PeakEwma(10.0, 30.0, 0.0)
    for i in range(600):  # a minute of 5 ms answers (τ = 10 s: the default is forgotten)
        e.observe(5.0, i * 0.1)
    assert 4.9 < e.get(60.0) < 5.1
    e.observe(400.0, 60.0)
    assert e.get(60.0) == pytest.approx(400.0)


def test_smooth_weighted_round_robin_spreads_weights() -> None:
    a, b, c = ts("a", weight=5), ts("b", weight=1), ts("c", weight=1)
    rr = RoundRobin()
    seq = "".join(rr.choose(Q, [a, b, c], 0.0).name for _ in range(7))
    assert seq == "aabacaa"  # nginx's worked example: spread, not aaaaabc
    counts = Counter(rr.choose(Q, [a, b, c], 0.0).name for _ in range(700))
    assert counts == {"a": 500, "b": 100, "c": 100}


def test_round_robin_equal_weights_cycles_and_skips_missing_candidates() -> None:
    a, b, c = ts("a"), ts("b"), ts("c")
    rr = RoundRobin()
    assert [rr.choose(Q, [a, b, c], 0).name for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    picks = [rr.choose(Q, [a, c], 0).name for _ in range(4)]
    assert set(picks) == {"a", "c"} and picks.count("a") == 2


def test_p2c_least_request_picks_the_less_loaded_of_two() -> None:
    busy, idle = ts("busy", pending=5), ts("idle", pending=0)
    p2c = P2CLeastRequest(random.Random(1))
    assert all(p2c.choose(Q, [busy, idle], 0).name == "idle" for _ in range(50))
    # weight: 4 in flight on weight 4 beats 2 in flight on weight 1
    heavy, light = ts("heavy", weight=4, pending=4), ts("light", weight=1, pending=2)
    assert p2c.choose(Q, [heavy, light], 0).name == "heavy"
    single = ts("only", pending=99)
    assert p2c.choose(Q, [single], 0) is single


def test_p2c_samples_two_distinct_targets_uniformly() -> None:
    targets = [ts(str(i)) for i in range(5)]
    targets[0].pending = 100  # the worst target only wins when it is not drawn... never, since both differ
    p2c = P2CLeastRequest(random.Random(7))
    counts = Counter(p2c.choose(Q, targets, 0).name for _ in range(5000))
    assert "0" not in counts  # two distinct draws: the worst always loses its pair
    for i in "1234":
        assert 1000 < counts[i] < 1500  # ties go to the first drawn: uniform over the rest


def test_p2c_ewma_cost_is_rtt_times_pending_plus_one() -> None:
    fast_busy = ts("fast_busy", ewma_ms=10.0, pending=4)  # 10 × 5 = 50
    slow_idle = ts("slow_idle", ewma_ms=40.0, pending=0)  # 40 × 1 = 40
    assert fast_busy.cost(0.0) == pytest.approx(50.0) and slow_idle.cost(0.0) == pytest.approx(40.0)
    s = P2CPeakEwma(random.Random(3))
    assert all(s.choose(Q, [fast_busy, slow_idle], 0.0).name == "slow_idle" for _ in range(20))
    fast_busy.pending = 2  # 30 < 40
    assert all(s.choose(Q, [fast_busy, slow_idle], 0.0).name == "fast_busy" for _ in range(20))


def test_p2c_ewma_retries_a_slow_target_after_its_estimate_decays() -> None:
    slow = ts("slow", ewma_ms=500.0, now=0.0)
    ok = ts("ok", ewma_ms=20.0, now=0.0)
    ok.ewma.observe(20.0, 60.0)  # ok keeps answering; slow has not been tried for a minute
    s = P2CPeakEwma(random.Random(0))
    assert s.choose(Q, [slow, ok], 1.0).name == "ok"
    assert slow.ewma.get(60.0) < 20.0  # 500·e^-6 ≈ 1.2 ms: worth another try
    assert s.choose(Q, [slow, ok], 60.0).name == "slow"


def test_consistent_hash_keeps_keys_and_moves_only_the_lost_targets_keys() -> None:
    targets = [ts(n) for n in "abcd"]
    ch = ConsistentHash()
    keys = [f"user-{i}" for i in range(2000)]
    first = {k: ch.choose(Query(key=k), targets, 0).name for k in keys}
    assert {k: ch.choose(Query(key=k), targets, 0).name for k in keys} == first
    share = Counter(first.values())
    assert all(350 < share[n] < 650 for n in "abcd"), share
    without_b = [t for t in targets if t.name != "b"]
    after = {k: ch.choose(Query(key=k), without_b, 0).name for k in keys}
    moved = [k for k in keys if after[k] != first[k]]
    assert moved and all(first[k] == "b" for k in moved)  # only b's keys moved
    # b back: its keys return (the ring kept its place)
    assert {k: ch.choose(Query(key=k), targets, 0).name for k in keys} == first


def test_consistent_hash_honours_weights_and_falls_back_to_the_path() -> None:
    heavy, light = ts("heavy", weight=3), ts("light", weight=1)
    ch = ConsistentHash()
    share = Counter(ch.choose(Query(key=str(i)), [heavy, light], 0).name for i in range(4000))
    assert 0.68 < share["heavy"] / 4000 < 0.82
    a = ch.choose(Query(path="/x/1"), [heavy, light], 0)
    assert all(ch.choose(Query(path="/x/1"), [heavy, light], 0) is a for _ in range(5))


def test_build_strategy_names_and_unknown() -> None:
    s = RouterSettings()
    rng = random.Random(0)
    for name in ("round_robin", "p2c", "p2c_ewma", "consistent_hash", "learned"):
        assert build_strategy(name, s, rng).name == name
    with pytest.raises(ValueError, match="strategy: unknown strategy 'fastest'"):
        build_strategy("fastest", s, rng)

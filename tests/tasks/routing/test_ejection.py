"""Outlier ejection against Envoy's consecutive-5xx semantics: the run, 30 s × n up to 300 s, the
backoff's decay, and the cap on how much of a pool may be ejected."""

from __future__ import annotations

import pytest

from tasks.config.routing import EjectionSettings
from tasks.routing.ejection import OutlierDetector, ejection_cap, is_5xx


class Clock:
    def __init__(self, t: float = 5000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def detector(clock: Clock, **kw: object) -> OutlierDetector:
    return OutlierDetector(EjectionSettings(**kw), clock=clock)  # defaults: 5, 30 s, 300 s, 10 %


def errors(d: OutlierDetector, target: str, n: int, pool_size: int = 10, status: int = 503) -> list[float | None]:
    return [d.record(target, status, pool_size) for _ in range(n)]


def test_five_consecutive_5xx_eject_for_30s_and_any_other_answer_resets_the_run():
    clock = Clock()
    d = detector(clock)
    assert errors(d, "a", 4) == [None] * 4
    assert d.record("a", 200, 10) is None  # resets
    assert d.record("a", 404, 10) is None and d.snapshot()["a"]["consecutive_5xx"] == 0  # 4xx is no 5xx
    assert errors(d, "a", 4, status=500) == [None] * 4
    until = d.record("a", 0, 10)  # no answer counts as a 5xx: the fifth in a row
    assert until == clock.t + 30.0
    assert d.ejected_until("a") == until and d.ejected() == ["a"]
    snap = d.snapshot()["a"]
    assert snap == {"ejected_for_s": 30.0, "times_ejected": 1, "consecutive_5xx": 0, "ejections": 1}


def test_is_5xx():
    assert [is_5xx(s) for s in (0, 200, 404, 499, 500, 503, 599)] == [True, False, False, False, True, True, True]


def test_un_ejection_is_lazy_and_exact_and_starts_a_new_run():
    clock = Clock()
    d = detector(clock)
    until = errors(d, "a", 5)[-1]
    assert until is not None
    # panic-mode traffic while ejected still counts, but does not eject again
    assert errors(d, "a", 7) == [None] * 7 and d.snapshot()["a"]["consecutive_5xx"] == 7
    clock.t = until - 0.001
    assert d.ejected_until("a") == until
    clock.t = until  # Envoy: un-eject when base × n ≤ now − ejection time
    assert d.ejected_until("a") == 0.0 and d.ejected() == []
    assert d.snapshot()["a"]["consecutive_5xx"] == 0  # the counters reset on un-ejection
    assert errors(d, "a", 4) == [None] * 4  # a whole new run is needed


def test_ejection_time_is_30s_times_n_up_to_300s():
    clock = Clock()
    d = detector(clock)
    durations = []
    for _ in range(13):
        start = clock.t
        until = errors(d, "a", 5)[-1]
        assert until is not None
        durations.append(until - start)
        clock.t = until  # fails again the moment it is back: no healthy time for the backoff to decay
    assert durations == [30.0 * n for n in range(1, 11)] + [300.0, 300.0, 300.0]
    # Envoy's backoff stops once n × base ≥ max + base: n = 11 here
    assert d.snapshot()["a"]["times_ejected"] == 11 and d.snapshot()["a"]["ejections"] == 13


def test_backoff_decrements_once_per_healthy_base_period():
    clock = Clock()
    d = detector(clock)
    for _ in range(3):  # ejected 30, 60, 90 s back to back: n = 3
        until = errors(d, "a", 5)[-1]
        assert until is not None
        clock.t = until
    back = clock.t
    clock.t = back + 29.9
    assert d.snapshot()["a"]["times_ejected"] == 3  # not yet a whole base period healthy
    clock.t = back + 65
    assert d.snapshot()["a"]["times_ejected"] == 1  # two base periods: n 3 → 1
    start = clock.t
    assert errors(d, "a", 5)[-1] == start + 60.0  # n = 2 now: 2 × 30 s
    clock.t = start + 60 + 10 * 30  # ten healthy base periods: decays to zero, not below
    assert d.snapshot()["a"]["times_ejected"] == 0
    assert errors(d, "a", 5)[-1] == clock.t + 30.0


@pytest.mark.parametrize(("pool_size", "cap"), [(1, 1), (5, 1), (9, 1), (10, 1), (19, 1), (20, 2), (25, 2), (30, 3)])
def test_cap_is_ten_percent_of_the_pool_and_at_least_one(pool_size, cap):
    assert ejection_cap(10.0, pool_size) == cap
    assert ejection_cap(0.0, pool_size) == 1  # Envoy's always_eject_one_host


@pytest.mark.parametrize(("pool_size", "cap"), [(5, 1), (10, 1), (25, 2)])
def test_no_more_than_the_cap_ejected_at_once(pool_size, cap):
    clock = Clock()
    d = detector(clock)
    targets = [f"t{i}" for i in range(cap + 1)]
    start = clock.t
    for i, name in enumerate(targets[:cap]):  # one second apart
        clock.t = start + i
        assert errors(d, name, 5, pool_size)[-1] == clock.t + 30.0
    over = targets[cap]
    assert errors(d, over, 5, pool_size) == [None] * 5  # over the cap: not ejected
    assert d.overflows == 1 and d.ejected() == sorted(targets[:cap])
    # its run keeps counting; once the first target is back, its next 5xx ejects it
    assert d.record(over, 503, pool_size) is None and d.snapshot()[over]["consecutive_5xx"] == 6
    clock.t = start + 30
    assert d.ejected_until(targets[0]) == 0.0
    assert d.record(over, 503, pool_size) == clock.t + 30.0
    assert d.ejected() == sorted([*targets[1:cap], over])


def test_a_larger_percent_ejects_more():
    clock = Clock()
    d = detector(clock, max_ejection_percent=50.0)
    assert [errors(d, n, 5, pool_size=4)[-1] is not None for n in "abc"] == [True, True, False]


def test_settings_change_the_run_and_times():
    clock = Clock()
    d = detector(clock, consecutive_5xx=2, base_ejection_s=10.0, max_ejection_s=25.0)
    assert errors(d, "a", 2)[-1] == clock.t + 10.0
    clock.t += 10
    assert errors(d, "a", 2)[-1] == clock.t + 20.0
    clock.t += 20
    assert errors(d, "a", 2)[-1] == clock.t + 25.0  # capped at the max


def test_disabled_never_ejects_and_forget_drops_a_target():
    clock = Clock()
    off = detector(clock, enabled=False)
    assert errors(off, "a", 20) == [None] * 20 and off.ejected_until("a") == 0.0
    d = detector(clock)
    errors(d, "a", 5)
    d.forget("a")
    assert d.ejected_until("a") == 0.0 and d.snapshot() == {} and d.ejected() == []
    d.forget("never-seen")  # harmless
    assert d.ejected_until("unknown") == 0.0 and d.snapshot() == {}  # asking creates nothing

"""The circuit breaker's state machine against resilience4j's semantics, with an injected clock and
worked numbers."""

from __future__ import annotations

import pytest

from tasks.config.routing import BreakerSettings
from tasks.routing.breaker import MAX_TRANSITIONS, CallWindow, CircuitBreaker


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def breaker(clock: Clock, **kw: object) -> CircuitBreaker:
    base: dict[str, object] = {
        "window_size": 10,
        "minimum_calls": 5,
        "failure_rate_threshold": 50.0,
        "slow_call_rate_threshold": 100.0,
        "slow_call_duration_s": 1.0,
        "wait_open_s": 10.0,
        "half_open_calls": 3,
    }
    base.update(kw)
    return CircuitBreaker(BreakerSettings(**base), clock=clock)


def calls(b: CircuitBreaker, outcomes: str, duration_s: float = 0.01) -> None:
    """``outcomes``: one letter per permitted call, ``o`` ok, ``x`` failed."""
    for c in outcomes:
        assert b.try_acquire()
        b.record(c == "o", duration_s)


def open_breaker(b: CircuitBreaker) -> None:
    """Failed calls until it opens (as many as its minimum volume needs)."""
    while b.state == "closed":
        calls(b, "x")
    assert b.state == "open"


# ---- closed ---------------------------------------------------------------------------------------


def test_three_failures_of_five_calls_open_it_but_not_before_the_minimum():
    clock = Clock()
    b = breaker(clock)
    calls(b, "xxx")
    calls(b, "o")  # 3 of 4 failed = 75 %, but 4 calls are below the minimum of 5
    assert b.state == "closed" and b.snapshot()["failure_rate"] is None
    calls(b, "o")  # 3 of 5 = 60 % ≥ 50 %
    assert b.state == "open"
    assert b.transitions == [(clock.t, "closed", "open")]
    assert not b.available() and not b.try_acquire()
    snap = b.snapshot()
    assert snap["state"] == "open" and snap["failure_rate"] == 60.0 and snap["calls"] == 5
    assert snap["not_permitted"] == 1 and snap["retry_in_s"] == 10.0


def test_below_threshold_stays_closed_and_the_window_slides():
    b = breaker(Clock())
    calls(b, "xxoooooooo")  # 20 % over 10 calls
    assert b.state == "closed" and b.snapshot()["failure_rate"] == 20.0
    # the window holds the last 10 calls: two new failures push the two oldest (also failures) out
    calls(b, "xx")  # oooooooo + xx = 20 %
    assert b.snapshot()["failure_rate"] == 20.0 and b.snapshot()["calls"] == 10
    calls(b, "xx")  # ooooooxxxx = 40 %
    assert b.state == "closed" and b.snapshot()["failure_rate"] == 40.0
    calls(b, "x")  # oooooxxxxx = 50 % ≥ 50 % → open
    assert b.state == "open"


def test_exactly_the_threshold_opens():
    b = breaker(Clock(), window_size=4, minimum_calls=4)
    calls(b, "oxox")  # 50 % ≥ 50 %
    assert b.state == "open"


def test_minimum_above_the_window_is_the_window():
    # resilience4j: minimumNumberOfCalls = min(minimum, window size) for a count-based window
    b = breaker(Clock(), window_size=3, minimum_calls=100)
    calls(b, "oxx")
    assert b.state == "open"


def test_slow_calls_open_it_and_the_duration_is_strictly_more_than_the_limit():
    clock = Clock()
    b = breaker(clock, slow_call_rate_threshold=60.0, slow_call_duration_s=1.0)
    calls(b, "ooooo", duration_s=1.0)  # exactly the limit is not slow
    assert b.state == "closed" and b.snapshot()["slow_call_rate"] == 0.0
    calls(b, "oooo", duration_s=1.5)  # 4 slow of 9 = 44 %
    assert b.state == "closed"
    calls(b, "o", duration_s=2.0)  # 5 of 10 = 50 %
    assert b.state == "closed" and b.snapshot()["slow_call_rate"] == 50.0
    calls(b, "o", duration_s=2.0)  # window drops a fast one: 6 of 10 = 60 % ≥ 60 %
    assert b.state == "open" and b.snapshot()["failure_rate"] == 0.0


def test_a_slow_failure_counts_in_both_rates():
    b = breaker(Clock(), slow_call_rate_threshold=100.0)
    calls(b, "oooo")
    calls(b, "x", duration_s=5.0)
    snap = b.snapshot()
    assert snap["failure_rate"] == 20.0 and snap["slow_call_rate"] == 20.0
    assert snap["failed_calls"] == 1 and snap["slow_calls"] == 1


# ---- open → half-open -----------------------------------------------------------------------------


def test_open_waits_then_half_open_lazily_on_read():
    clock = Clock()
    b = breaker(clock)
    open_breaker(b)
    opened = clock.t
    clock.t += 10.0  # resilience4j: clock.instant().isAfter(retryAfter) — exactly the wait is not after
    assert b.state == "open" and not b.available()
    snap = b.snapshot()
    assert snap["opened_for_s"] == 10.0 and snap["retry_in_s"] == 0.0
    clock.t += 0.001
    assert b.available()  # reading moved it; nothing consumed
    assert b.state == "half_open" and b.snapshot()["half_open_permits"] == 3
    assert b.transitions == [(opened, "closed", "open"), (clock.t, "open", "half_open")]


def test_try_acquire_after_the_wait_takes_the_first_trial_permit():
    clock = Clock()
    b = breaker(clock)
    open_breaker(b)
    clock.t += 11
    assert b.try_acquire()  # OPEN → HALF_OPEN inside the permission request, as resilience4j does
    assert b.snapshot()["half_open_permits"] == 2


def test_a_call_permitted_before_opening_is_counted_without_changing_state():
    clock = Clock()
    b = breaker(clock)
    assert b.try_acquire()  # in flight while the breaker opens
    open_breaker(b)
    b.record(True, 0.01)
    assert b.state == "open" and b.snapshot()["calls"] == 6  # counted in the window it opened on


# ---- half-open ------------------------------------------------------------------------------------


def half_open(clock: Clock, **kw: object) -> CircuitBreaker:
    b = breaker(clock, **kw)
    open_breaker(b)
    clock.t += 11
    assert b.state == "half_open"
    return b


def test_half_open_permits_exactly_the_trial_calls_and_release_gives_one_back():
    clock = Clock()
    b = half_open(clock)
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert not b.available() and b.snapshot()["half_open_permits"] == 0
    b.release()  # one trial never sent
    assert b.available() and b.snapshot()["half_open_permits"] == 1
    assert b.try_acquire() and not b.try_acquire()
    # releases never create more permits than half_open_calls
    for _ in range(10):
        b.release()
    assert b.snapshot()["half_open_permits"] == 3


def test_trial_calls_all_ok_close_with_a_fresh_window():
    clock = Clock()
    b = half_open(clock)
    calls(b, "oo")
    assert b.state == "half_open"  # 2 of 3 trial calls recorded: no verdict yet
    calls(b, "o")
    assert b.state == "closed"
    snap = b.snapshot()
    assert snap["calls"] == 0 and snap["failure_rate"] is None  # fresh window
    assert [t[1:] for t in b.transitions] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_call_waits_for_the_verdict_one_of_three_closes():
    clock = Clock()
    b = half_open(clock)
    calls(b, "x")
    assert b.state == "half_open"  # resilience4j does not open on the first failed trial
    calls(b, "oo")  # 1 of 3 = 33 % < 50 %
    assert b.state == "closed"


def test_two_failed_trials_of_three_reopen_with_a_new_wait():
    clock = Clock()
    b = half_open(clock)
    calls(b, "xox")  # 67 % ≥ 50 %
    assert b.state == "open"
    reopened = clock.t
    clock.t += 5
    assert not b.try_acquire()
    clock.t = reopened + 10.5
    assert b.state == "half_open" and b.snapshot()["half_open_permits"] == 3


def test_half_open_minimum_is_the_smaller_of_minimum_calls_and_trial_calls():
    # resilience4j's forHalfOpen: window = permitted trial calls, minimum = min(minimum_calls, it)
    clock = Clock()
    b = half_open(clock, minimum_calls=2, half_open_calls=4)
    calls(b, "x")
    assert b.state == "half_open"
    calls(b, "o")  # 2 calls ≥ minimum 2: 50 % ≥ 50 % → open, the other two permits unused
    assert b.state == "open"


def test_slow_trial_calls_reopen():
    clock = Clock()
    b = half_open(clock, slow_call_rate_threshold=100.0)
    calls(b, "ooo", duration_s=3.0)  # every trial slow: 100 % ≥ 100 %
    assert b.state == "open"


# ---- disabled, bounds -----------------------------------------------------------------------------


def test_disabled_breaker_always_permits_and_never_opens():
    b = breaker(Clock(), enabled=False)
    calls(b, "x" * 50)
    assert b.state == "closed" and b.available() and b.snapshot()["calls"] == 0


def test_memory_is_bounded():
    clock = Clock()
    b = breaker(clock, window_size=10, minimum_calls=5, wait_open_s=1.0)
    open_breaker(b)
    for _ in range(200):  # open → half-open → open: 400 more transitions
        clock.t += 2
        calls(b, "xxx")
        assert b.state == "open"
    assert len(b.transitions) == MAX_TRANSITIONS
    w = CallWindow(10, 5)
    for i in range(1000):
        w.add(i % 2 == 0, False)
    assert len(w) == 10 and w.failed == 5 and w.failure_rate == 50.0


@pytest.mark.parametrize("minimum", [1, 5])
def test_call_window_minimum(minimum):
    w = CallWindow(5, minimum)
    assert w.failure_rate is None  # empty is never judged
    w.add(True, False)
    assert (w.failure_rate is None) == (minimum > 1)

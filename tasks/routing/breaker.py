"""A per-target circuit breaker with resilience4j's semantics (count-based sliding window).

Why copy resilience4j rather than invent: people who run JVM services already know what its
thresholds mean, and its state machine is precise about the cases a home-made breaker gets wrong
(when rates are judged at all, what a half-open trial decides, what an unused permit does). The
parts, as in ``CircuitBreakerStateMachine`` / ``CircuitBreakerMetrics`` (resilience4j 2.x):

- **CLOSED** permits every call and records each outcome in a window of the last ``window_size``
  calls. Rates are judged only once the window holds ``min(minimum_calls, window_size)`` calls; the
  breaker opens when the failure rate ≥ ``failure_rate_threshold`` % *or* the slow-call rate ≥
  ``slow_call_rate_threshold`` % (a call is slow when it took *more than* ``slow_call_duration_s``;
  a slow failure counts in both rates). Worked: window 10, minimum 5, three failures in the first
  five calls = 60 % ≥ 50 % → OPEN on the fifth call (not before: four calls are below the minimum).
- **OPEN** rejects calls until ``wait_open_s`` has passed (strictly after, like ``isAfter``); the
  window it opened on is kept, and a call permitted before it opened that finishes now is still
  counted there (resilience4j's ``OpenState.onError``), without changing state.
- **HALF_OPEN** permits ``half_open_calls`` trial calls and judges them in a window of their own
  (size ``half_open_calls``, minimum ``min(minimum_calls, half_open_calls)``): once that many are
  recorded, rates ≥ a threshold → OPEN again (a new wait), else → CLOSED with a fresh window. A
  failed trial call does not open the breaker by itself — resilience4j waits for the trial
  window's verdict, and so does this. A permitted call that was never made gives its permit back
  (``release``).

Where this differs from resilience4j, and why:
- OPEN → HALF_OPEN happens lazily when the state is *read* (``state``, ``available``) as well as on
  ``try_acquire``; resilience4j's ``getState()`` keeps reporting OPEN until the next permission
  request. A router asks ``available()`` of every candidate before choosing, so reading is asking.
- ``release`` never gives back more permits than ``half_open_calls`` (resilience4j's
  ``incrementAndGet`` is unbounded, so a stray release could permit an extra trial call).
- ``enabled: false`` is resilience4j's DISABLED state: always permits, records nothing.
- Only the count-based window and a fixed open wait (no time-based window, no exponential
  ``waitIntervalFunctionInOpenState``, no ``maxWaitDurationInHalfOpenState``).

Not thread-safe: the router calls it from one event loop. Memory is bounded: the window is a
``deque`` of at most ``window_size`` calls, the transition log keeps the last 100.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from tasks.config.routing import BreakerSettings

__all__ = ["MAX_TRANSITIONS", "BreakerState", "CallWindow", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]

#: Transitions kept for status and health (oldest dropped first).
MAX_TRANSITIONS = 100


class CallWindow:
    """The last ``size`` calls (failed?, slow?) with running counts: resilience4j's
    ``FixedSizeSlidingWindowMetrics`` plus the minimum volume ``CircuitBreakerMetrics`` applies."""

    __slots__ = ("calls", "failed", "minimum", "size", "slow")

    def __init__(self, size: int, minimum: int) -> None:
        self.size = size
        self.minimum = min(minimum, size)  # resilience4j: min(minimumNumberOfCalls, window size)
        self.calls: deque[tuple[bool, bool]] = deque()
        self.failed = 0
        self.slow = 0

    def add(self, failed: bool, slow: bool) -> None:
        if len(self.calls) == self.size:
            old_failed, old_slow = self.calls.popleft()
            self.failed -= old_failed
            self.slow -= old_slow
        self.calls.append((failed, slow))
        self.failed += failed
        self.slow += slow

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def judged(self) -> bool:
        """Enough calls to judge the rates (below the minimum nothing opens or closes)."""
        return len(self.calls) > 0 and len(self.calls) >= self.minimum

    @property
    def failure_rate(self) -> float | None:
        """Failed calls in % of the window; None below the minimum (resilience4j: -1)."""
        return 100.0 * self.failed / len(self.calls) if self.judged else None

    @property
    def slow_call_rate(self) -> float | None:
        """Slow calls in % of the window; None below the minimum (resilience4j: -1)."""
        return 100.0 * self.slow / len(self.calls) if self.judged else None


class CircuitBreaker:
    """One target's breaker: ``try_acquire`` before a call, ``record`` (or ``release``) after it."""

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._state: BreakerState = "closed"
        self._window = CallWindow(settings.window_size, settings.minimum_calls)
        self._opened_at = 0.0  # monotonic time of the last CLOSED/HALF_OPEN → OPEN
        self._permits = 0  # half-open trial calls left
        self._transitions: deque[tuple[float, str, str]] = deque(maxlen=MAX_TRANSITIONS)
        self.not_permitted = 0  # calls rejected since start (resilience4j's numberOfNotPermittedCalls)

    # ---- state ----------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now; an OPEN breaker whose wait has passed becomes HALF_OPEN on this read."""
        if self._state == "open" and self._clock() > self._opened_at + self.settings.wait_open_s:
            self._to_half_open()
        return self._state

    @property
    def transitions(self) -> list[tuple[float, str, str]]:
        """``(monotonic time, from, to)`` of the last ``MAX_TRANSITIONS`` state changes, oldest first."""
        return list(self._transitions)

    def available(self) -> bool:
        """Would a call be permitted now? Consumes nothing (a half-open permit stays free)."""
        if not self.settings.enabled:
            return True
        state = self.state
        if state == "closed":
            return True
        if state == "half_open":
            return self._permits > 0
        return False

    def try_acquire(self) -> bool:
        """Permit one call now (taking a half-open permit); False, and counted, when rejected."""
        if not self.settings.enabled:
            return True
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and self._permits > 0:
            self._permits -= 1
            return True
        self.not_permitted += 1
        return False

    def release(self) -> None:
        """A permitted call that was never made: its half-open permit is free again."""
        if self.settings.enabled and self._state == "half_open":
            self._permits = min(self._permits + 1, self.settings.half_open_calls)

    def record(self, ok: bool, duration_s: float) -> None:
        """The outcome of a permitted call; may open or close the breaker."""
        if not self.settings.enabled:
            return
        slow = duration_s > self.settings.slow_call_duration_s
        self._window.add(not ok, slow)
        state = self._state  # no lazy transition: a late call belongs to the window it ran in
        if state == "open" or not self._window.judged:
            return
        if self._above_thresholds():
            self._to_open()
        elif state == "half_open":
            self._to_closed()

    # ---- reporting ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What status shows: the state, the rates (None below the minimum volume), the window."""
        state = self.state
        now = self._clock()
        is_open = state == "open"
        return {
            "state": state,
            "failure_rate": self._window.failure_rate,
            "slow_call_rate": self._window.slow_call_rate,
            "calls": len(self._window),
            "failed_calls": self._window.failed,
            "slow_calls": self._window.slow,
            "opened_for_s": max(now - self._opened_at, 0.0) if is_open else 0.0,
            "retry_in_s": max(self._opened_at + self.settings.wait_open_s - now, 0.0) if is_open else 0.0,
            "half_open_permits": self._permits if state == "half_open" else 0,
            "not_permitted": self.not_permitted,
        }

    # ---- transitions ----------------------------------------------------------------------------

    def _above_thresholds(self) -> bool:
        s, w = self.settings, self._window
        failure, slow = w.failure_rate, w.slow_call_rate
        assert failure is not None and slow is not None  # judged
        return failure >= s.failure_rate_threshold or slow >= s.slow_call_rate_threshold

    def _move(self, to: BreakerState) -> None:
        self._transitions.append((self._clock(), self._state, to))
        self._state = to

    def _to_open(self) -> None:
        # the window it opened on stays (resilience4j's OpenState keeps the metrics it was given)
        self._opened_at = self._clock()
        self._permits = 0
        self._move("open")

    def _to_half_open(self) -> None:
        s = self.settings
        self._window = CallWindow(s.half_open_calls, s.minimum_calls)
        self._permits = s.half_open_calls
        self._move("half_open")

    def _to_closed(self) -> None:
        s = self.settings
        self._window = CallWindow(s.window_size, s.minimum_calls)
        self._permits = 0
        self._move("closed")

"""Placeholder: the per-target circuit breaker (resilience4j semantics) lands from its own branch.

Until then every call is permitted, so the router and the proxy can be built against the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from tasks.config.routing import BreakerSettings


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.transitions: list[tuple[float, str, str]] = []

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        return "closed"

    def available(self) -> bool:
        return True

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None

    def record(self, ok: bool, duration_s: float) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"state": "closed", "failure_rate": None, "slow_call_rate": None, "calls": 0, "opened_for_s": None}

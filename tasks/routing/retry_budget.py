"""The router's retry budget, Envoy's: retries in flight ≤ max(min_retries, budget_percent % × active).

Why a budget and not only ``max_attempts``: per-request retry limits still multiply load when a
whole backend tier is failing (every request retried once = twice the traffic on a tier that is
already down — a retry storm). Envoy's budget ties retries to the traffic actually in flight: at
most ``budget_percent`` % of the active requests may be retries, with a floor of ``min_retries``
so a quiet router can still retry at all (Envoy: 20 % and 3). As in Envoy's
``ResourceManagerImpl::RetryBudgetImpl``: the allowance is ``max(uint(percent / 100 × active),
min)`` — the percentage share is rounded *down* — and a retry may start while the retries in
flight are *fewer* than it. Worked, with 20 % and 3: 0 active → 3, 5 active → max(1, 3) = 3,
100 active → 20.

``active`` counts the requests the router is serving (``request_started``/``request_finished``,
one per client request, however many attempts it makes); Envoy's counts upstream requests and
pending ones, attempts included. Not thread-safe: one event loop calls it.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.config.routing import RetrySettings

__all__ = ["RetryBudget"]


class RetryBudget:
    """Counts active requests and retries in flight; ``try_retry`` says whether one more fits."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.active = 0  # requests in flight
        self.retries_in_flight = 0
        self.retries = 0  # retries started since start
        self.rejected = 0  # retries the budget refused since start

    def allowance(self) -> int:
        """Retries that may be in flight now: ``max(min_retries, floor(budget_percent % × active))``."""
        s = self.settings
        return max(s.min_retries, math.floor(s.budget_percent * self.active / 100.0))

    def request_started(self) -> None:
        self.active += 1

    def request_finished(self) -> None:
        self.active = max(self.active - 1, 0)

    def try_retry(self) -> bool:
        """Start a retry if the budget has room (then ``retry_finished`` must follow); else count a refusal."""
        if self.retries_in_flight < self.allowance():
            self.retries_in_flight += 1
            self.retries += 1
            return True
        self.rejected += 1
        return False

    def retry_finished(self) -> None:
        self.retries_in_flight = max(self.retries_in_flight - 1, 0)

    def snapshot(self) -> dict[str, Any]:
        """The counts status shows (``allowance`` is the budget at this moment)."""
        return {
            "active": self.active,
            "retries_in_flight": self.retries_in_flight,
            "allowance": self.allowance(),
            "retries": self.retries,
            "rejected": self.rejected,
            "budget_percent": self.settings.budget_percent,
            "min_retries": self.settings.min_retries,
        }

"""Placeholder: the retry budget (Envoy semantics) lands from its own branch; counts only."""

from __future__ import annotations

from typing import Any

from tasks.config.routing import RetrySettings


class RetryBudget:
    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.active = 0
        self.retries = 0

    def request_started(self) -> None:
        self.active += 1

    def request_finished(self) -> None:
        self.active = max(0, self.active - 1)

    def try_retry(self) -> bool:
        self.retries += 1
        return True

    def retry_finished(self) -> None:
        self.retries = max(0, self.retries - 1)

    def snapshot(self) -> dict[str, Any]:
        return {"active": self.active, "retries_in_flight": self.retries}

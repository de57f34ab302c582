"""Placeholder: outlier ejection (Envoy semantics) lands from its own branch; nothing is ejected yet."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tasks.config.routing import EjectionSettings


class OutlierDetector:
    def __init__(self, settings: EjectionSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock

    def record(self, target: str, status: int, pool_size: int) -> float | None:
        return None

    def ejected_until(self, target: str) -> float:
        return 0.0

    def forget(self, target: str) -> None:
        return None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {}

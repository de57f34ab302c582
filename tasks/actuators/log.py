"""The ``log`` actuator: the default, which records decisions and changes nothing.

Why it exists: dry-run is the default everywhere (DESIGN.md), and a target with no real actuator
configured still needs the full contract — a decision applied once, a current count to start the
next decision from — so people can watch what *would* happen before they wire a real system in.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from tasks.actuators.action import ScaleAction
from tasks.actuators.base import ActuatorConfig, CountActuator

__all__ = ["LogActuator", "LogConfig"]

log = logging.getLogger("cortex_perf.actuators.log")


class LogConfig(ActuatorConfig):
    """``initial``: the count a target is assumed to have before any decision was recorded."""

    kind: Literal["log"] = "log"
    initial: int = Field(1, ge=0)


class LogActuator(CountActuator):
    """Records each decision in the ledger and the log; its "reality" is what it recorded last."""

    kind = "log"
    config_model = LogConfig
    config: LogConfig

    def _read(self, target: str) -> int:
        row = self.ledger.last_applied(self.name, target)
        if row is None or row.observed is None:
            return self.config.initial
        return row.observed

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        log.info(
            "scale %s: %s → %d by %s (%s)",
            action.target,
            action.from_ if action.from_ is not None else "?",
            action.to,
            action.policy or "?",
            action.reason,
        )
        detail["recorded_only"] = True
        return action.to

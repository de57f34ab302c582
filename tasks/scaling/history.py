"""Scaling history as people read it: each recorded decision (newest first) with what the actuators
did with it.

Why here and not in the CLI: the rows join the decision records (``scaling.records``) with the
action ledger (``tasks.actuators``) — a query over the state DB that the CLI, a REST API or an MCP
tool should share rather than each re-join.
"""

from __future__ import annotations

from typing import Any

from tasks.actuators import ActionLedger, LedgerRow
from tasks.config import Settings
from tasks.scaling.records import ScalingRecords

__all__ = ["decision_history"]

#: Ledger rows read per decision asked for: a decision has one action per actuator and retries
#: stay in one row, so four per decision covers the decisions shown.
ACTIONS_PER_DECISION = 4


def decision_history(settings: Settings, target: str | None = None, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``limit`` decisions (optionally of one ``target``), newest first, each as its record
    plus an ``actions`` list (actuator, status, observed value, error, attempts, finish time)."""
    decisions = ScalingRecords.from_settings(settings).decisions(target, limit=limit)
    actions: dict[str, list[LedgerRow]] = {}
    for row in ActionLedger.from_settings(settings).history(target, limit=limit * ACTIONS_PER_DECISION):
        actions.setdefault(row.decision_id, []).append(row)
    return [
        {
            **d.to_dict(),
            "actions": [
                {
                    "actuator": a.actuator,
                    "status": a.status,
                    "observed": a.observed,
                    "error": a.error,
                    "attempts": a.attempts,
                    "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                }
                for a in actions.get(d.decision_id, [])
            ],
        }
        for d in decisions
    ]

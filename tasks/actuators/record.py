"""An action's outcome, written to the lake (and to Prefect, where reachable) as an event.

Why only applied and failed: those changed, or tried to change, the world; a dry run or a skip did
not, and the decision that led to them is already recorded by the capability that decided it (for
scaling, its ``scaling.triggered`` event). The resource is ``cortex.<area>.<target>`` (e.g.
``cortex.scaling.api``), so one target's decisions and actions read as one stream, in the lake and
in Prefect automations (``cortex.action.applied`` / ``cortex.action.failed`` on that resource).
"""

from __future__ import annotations

from tasks.actuators.action import ActionResult
from tasks.events import emit
from tasks.lake import Lake
from tasks.lake.schema import Event

__all__ = ["record_result"]


def record_result(lake: Lake, result: ActionResult, *, to_prefect: bool | None = None) -> Event | None:
    """Append ``action.applied`` / ``action.failed`` for ``result`` to the lake; ``None`` for a dry run or skip."""
    if result.event_name is None:
        return None
    return emit(lake, result.event_name, f"{result.area}.{result.target}", result.to_dict(), to_prefect=to_prefect)

"""What an actuator applies (an :class:`Action`) and what came of it (an :class:`ActionResult`).

Why one record for every kind of action: scaling sets a count today; cache warming (these keys),
slot or task moves and routing weights come next. They share what makes an action safe — an id
that is its idempotency key, a target, an absolute desired value (``to``, so re-running converges
instead of adding up), the value it started from, the reason with the numbers behind it, and a
mode — so the ledger, dry runs, read-back and the lake record are written once for all of them.
A kind narrows the record where it needs to (:class:`ScaleAction`: ``to`` is a count ≥ 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tasks.actuators.errors import ActuatorError

__all__ = ["Action", "ActionMode", "ActionResult", "ActionStatus", "ScaleAction"]

ActionMode = Literal["dry-run", "apply"]
ActionStatus = Literal["applied", "dry-run", "skipped", "failed"]


class Action(BaseModel):
    """One decided change: set ``target`` to ``to`` (absolute), once per ``id`` and actuator.

    ``area`` is the capability that decided it (``scaling``, later ``cache``, ``routing``): the
    lake's ``action.*`` events go on the resource ``cortex.<area>.<target>``. ``kind`` says what
    changes (``replicas``, ``keys``, ``slot``, ``weight``); ``params`` holds what an action needs
    beyond its value (the keys to warm, a slot's source node). ``from`` is informative: actuators
    set ``to`` whatever reality is now."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=200)
    to: JsonValue
    from_: JsonValue = Field(None, alias="from")
    kind: str = Field(min_length=1, max_length=100)
    reason: str = ""
    policy: str = ""
    mode: ActionMode = "dry-run"
    area: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)
    params: dict[str, JsonValue] = Field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The action as JSON-ready data, ``from`` spelled as in the design (from → to).

        ``area`` is left out (it is the event's resource) and ``params`` when empty, so a kind
        without params sends exactly its own fields (the webhook actuator's receivers see these)."""
        exclude = {"area"} | (set() if self.params else {"params"})
        return self.model_dump(mode="json", by_alias=True, exclude=exclude)


class ScaleAction(Action):
    """Set ``target`` to ``to`` units: an absolute count, never a delta (scaling's action)."""

    to: int = Field(ge=0)
    from_: int | None = Field(None, alias="from", ge=0)
    kind: str = Field("replicas", min_length=1, max_length=100)
    area: str = Field("scaling", pattern=r"^[a-z][a-z0-9_]*$", max_length=50)


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one ``apply``: what was asked, what happened, what reality reads now.

    ``status``: ``applied`` (set and read back), ``dry-run`` (nothing touched), ``skipped`` (this
    action id was already applied, or another live process is applying it right now) or ``failed``
    (``error`` says why; nothing is marked applied, so retrying the same action runs it again).
    ``decision_id`` is the action's id (every action comes from a decision)."""

    decision_id: str
    actuator: str
    target: str
    to: Any
    status: ActionStatus
    observed: Any = None
    error: str | None = None
    attempt: int = 0
    duration_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    #: the deciding capability, for the event's resource (not part of the record itself)
    area: str = field(kw_only=True)

    @property
    def ok(self) -> bool:
        """True unless the action failed (a skip or a dry run is not a failure)."""
        return self.status != "failed"

    @property
    def event_name(self) -> str | None:
        """The lake event this result deserves (``action.applied`` / ``action.failed``), if any."""
        return {"applied": "action.applied", "failed": "action.failed"}.get(self.status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "actuator": self.actuator,
            "target": self.target,
            "to": self.to,
            "status": self.status,
            "observed": self.observed,
            "error": self.error,
            "attempt": self.attempt,
            "duration_s": round(self.duration_s, 4),
            "detail": dict(self.detail),
        }

    def raise_for_status(self) -> ActionResult:
        """Raise ``ActuatorError`` when the action failed (for callers that retry on exceptions)."""
        if self.status == "failed":
            where = f"{self.actuator} → {self.target}={self.to} (decision {self.decision_id})"
            raise ActuatorError(f"{where}: {self.error}")
        return self

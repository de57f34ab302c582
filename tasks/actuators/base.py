"""The actuator contract: an action in, an action result out, each action applied at most once.

Why one base class with a template ``apply``: the guarantees people rely on — an action id is
applied once, a failure is recorded with its error (never swallowed), a dry run touches nothing,
and every real change is read back before it counts as applied — live here once, so each plug-in
only says how to *read* and how to *set* a value on its system.

How "never half-applied silently" holds: every actuator sets an **absolute** value (not a delta),
so re-running an action after a crash or failure converges on the same state; and ``apply`` reads
the value back after setting it and records a failure when reality disagrees. A failed action is
retried with the same id (the ledger lets it through, since it never reached ``applied``): by the
caller, or by ``apply`` itself with ``retries`` and exponential backoff. While an apply runs, a
heartbeat renews its claim, so no other process takes a slow but live apply over; a claim whose
process died is taken over once its lease has run out (``tasks.actuators.ledger``).
"""

from __future__ import annotations

import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.actuators.action import Action, ActionResult, ScaleAction
from tasks.actuators.errors import ActuatorConfigError, ActuatorError
from tasks.actuators.ledger import ActionLedger
from tasks.config import validation_problems
from tasks.state import ClaimOwner, Heartbeat

__all__ = ["Actuator", "ActuatorConfig", "CountActuator", "validate_config"]

log = logging.getLogger("cortex_perf.actuators")

A = TypeVar("A", bound=Action)
V = TypeVar("V")


class ActuatorConfig(BaseModel):
    """Fields every actuator config has. ``name`` keys the ledger (defaults to the kind)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str | None = Field(None, min_length=1, max_length=100)

    @property
    def label(self) -> str:
        return self.name or self.kind


def validate_config(cls: type[ActuatorConfig], data: Mapping[str, Any], origin: str) -> ActuatorConfig:
    """Validate ``data`` as ``cls``; an error names each bad field (and never echoes a secret)."""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as err:
        lines = validation_problems(err)
        message = "\n".join([f"invalid configuration ({origin}):", *(f"  {ln}" for ln in lines)])
        raise ActuatorConfigError(message, [f"{origin}.{ln}" for ln in lines]) from None


class Actuator(ABC, Generic[A, V]):
    """One system whose values we set. Subclasses implement ``_read`` and ``_set``; nothing else.

    ``current(target)`` reads reality so decisions start from it; ``apply(action, dry_run=…)``
    changes it at most once per action id (see the module docstring for the guarantees).
    ``action_model`` is the action type it applies (:class:`ScaleAction` for counts)."""

    kind: ClassVar[str]
    config_model: ClassVar[type[ActuatorConfig]]
    action_model: ClassVar[type[Action]] = Action

    def __init__(self, config: ActuatorConfig, *, ledger: ActionLedger) -> None:
        if not isinstance(config, self.config_model):
            raise ActuatorConfigError(
                f"{type(self).__name__} needs a {self.config_model.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.ledger = ledger

    @property
    def name(self) -> str:
        return self.config.label

    def close(self) -> None:
        """Release clients this actuator opened (a no-op for most)."""
        return None

    def __enter__(self) -> Actuator[A, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lease_s(self) -> float:
        """How long a claim holds without renewal; its heartbeat renews it every third of this."""
        return 300.0

    def current(self, target: str) -> V:
        """The value ``target`` has now, read from the system itself."""
        return self._read(target)

    def apply(
        self,
        action: A,
        *,
        dry_run: bool = True,
        retries: int = 0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ActionResult:
        """Set ``action.target`` to ``action.to`` once; ``dry_run`` (the default) touches nothing.

        Returns a result instead of raising on failure: the failure is already recorded in the
        ledger with its error. ``retries``: how many more times a failed attempt is tried in this
        call, waiting ``backoff_s`` × 2ⁿ (at most ``max_backoff_s``) before the n-th retry; 0 (the
        default) leaves retrying to the caller."""
        result = self._apply_once(action, dry_run=dry_run)
        for n in range(retries):
            if result.status != "failed":
                break
            sleep(min(backoff_s * 2**n, max_backoff_s))
            result = self._apply_once(action, dry_run=dry_run)
        return result

    def _apply_once(self, action: A, *, dry_run: bool) -> ActionResult:
        t0 = time.monotonic()
        base = functools.partial(
            ActionResult,
            decision_id=action.id,
            actuator=self.name,
            target=action.target,
            to=action.to,
            area=action.area,
        )
        if dry_run:
            log.info("dry-run %s: %s → %s (%s)", self.name, action.target, action.to, action.reason)
            return base(status="dry-run", detail={"would_set": action.to})
        owner = ClaimOwner.me()
        lease_s = self.lease_s
        verdict, row = self.ledger.claim(self.name, action, lease_s=lease_s, owner=owner)
        assert row is not None
        if verdict != "claimed":
            why = "already applied" if verdict == "done" else "being applied by another process"
            return base(
                status="skipped",
                observed=row.observed,
                attempt=row.attempts,
                duration_s=time.monotonic() - t0,
                detail={"reason": why, "since": row.started_at.isoformat()},
            )
        detail: dict[str, Any] = {}
        observed: V | None = None
        error: str | None = None
        with Heartbeat(owner.token, functools.partial(self.ledger.renew, owner.token, lease_s=lease_s), lease_s / 3):
            try:
                observed = self._set(action, detail)
                if not self._matches(action, observed):
                    raise ActuatorError(f"{self.name}: read back {observed} after setting {action.to}")
            except Exception as exc:
                error = _describe(exc)
            self.ledger.finish(self.name, action.id, owner.token, observed=observed, error=error)
        duration = time.monotonic() - t0
        if error is not None:
            log.warning("%s failed to set %s → %s: %s", self.name, action.target, action.to, error)
            return base(
                status="failed",
                observed=observed,
                error=error,
                attempt=row.attempts,
                duration_s=duration,
                detail=detail,
            )
        log.info("%s set %s → %s", self.name, action.target, action.to)
        return base(status="applied", observed=observed, attempt=row.attempts, duration_s=duration, detail=detail)

    def _matches(self, action: A, observed: V) -> bool:
        """Whether the value read back after setting is the one asked for (equality by default)."""
        return bool(observed == action.to)

    @abstractmethod
    def _read(self, target: str) -> V:
        """Read the current value of ``target``; raise ``ActuatorError`` when it cannot."""

    @abstractmethod
    def _set(self, action: A, detail: dict[str, Any]) -> V:
        """Set the value to ``action.to`` and return the value read back afterwards.

        May add facts worth keeping (e.g. status replicas, pids) to ``detail``."""


class CountActuator(Actuator[ScaleAction, int]):
    """An actuator that sets a count (replicas, workers, a concurrency limit): scaling's kind."""

    action_model = ScaleAction

    def _ledger_count(self, target: str, missing: str) -> int:
        """The count this actuator last applied to ``target``: reality for systems we cannot query."""
        row = self.ledger.last_applied(self.name, target)
        if row is None or row.observed is None:
            raise ActuatorError(f"{self.name}: cannot read the count of {target!r}: {missing}")
        return int(row.observed)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ActuatorError) else f"{type(exc).__name__}: {text}"

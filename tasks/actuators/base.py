"""The actuator contract: a decision in, an action result out, each decision applied at most once.

Why one base class with a template ``apply``: the guarantees people rely on — a decision id is
applied once, a failure is recorded with its error (never swallowed), a dry run touches nothing,
and every real change is read back before it counts as applied — live here once, so each plug-in
only says how to *read* and how to *set* a count on its system.

How "never half-applied silently" holds: every actuator sets an **absolute** count (not a delta),
so re-running a decision after a crash or failure converges on the same state; and ``apply`` reads
the count back after setting it and records a failure when reality disagrees. The caller retries a
failed result with the same decision id (the ledger lets it through, since it never reached
``applied``); a claim that crashed mid-way expires after the actuator's lease and is retried too.
"""

from __future__ import annotations

import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks import state as state_db
from tasks.config import format_validation_error

__all__ = [
    "ActionResult",
    "ActionStatus",
    "Actuator",
    "ActuatorConfig",
    "ActuatorConfigError",
    "ActuatorError",
    "Decision",
    "Ledger",
    "record_result",
    "validate_config",
]

log = logging.getLogger("cortex_perf.actuators")

ActionStatus = Literal["applied", "dry-run", "skipped", "failed"]

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS scaling_actions (
    actuator VARCHAR NOT NULL,
    decision_id VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    to_count INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    observed INTEGER,
    error VARCHAR,
    attempts INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (actuator, decision_id)
)
"""
state_db.register_schema("scaling_actions", LEDGER_DDL)


class ActuatorError(RuntimeError):
    """Setting or reading a count failed; the message says what, where and why (never a secret)."""


class ActuatorConfigError(ValueError):
    """An actuator's configuration is invalid; the message names every bad field."""


class Decision(BaseModel):
    """What an actuator applies: set ``target`` to ``to`` units (an absolute count, never a delta).

    ``id`` is the idempotency key: the same id is applied once per actuator. ``from`` is the count
    the decision started from (informative: actuators set ``to`` whatever reality is now)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=200)
    to: int = Field(ge=0)
    from_: int | None = Field(None, alias="from", ge=0)
    kind: str = "replicas"
    reason: str = ""
    policy: str = ""
    mode: Literal["dry-run", "apply"] = "dry-run"

    def payload(self) -> dict[str, Any]:
        """The decision as JSON-ready data, with ``from`` spelled as in the design (from → to)."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one ``apply``: what was asked, what happened, what reality reads now.

    ``status``: ``applied`` (set and read back), ``dry-run`` (nothing touched), ``skipped`` (this
    decision id was already applied, or another process is applying it right now) or ``failed``
    (``error`` says why; nothing is marked applied, so retrying the same decision runs it again)."""

    decision_id: str
    actuator: str
    target: str
    to: int
    status: ActionStatus
    observed: int | None = None
    error: str | None = None
    attempt: int = 0
    duration_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

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


@dataclass(frozen=True)
class LedgerRow:
    actuator: str
    decision_id: str
    target: str
    to: int
    status: str
    observed: int | None
    error: str | None
    attempts: int
    started_at: datetime
    finished_at: datetime | None


class Ledger:
    """Which decisions each actuator applied, in the state DB (table ``scaling_actions``).

    Why the state DB: idempotency must hold across processes and restarts (a retried flow run, the
    CLI and a schedule may all hold the same decision), and the state DB is the one place for
    mutable state, with short lock-retrying transactions (``tasks.state``)."""

    _COLS = "actuator, decision_id, target, to_count, status, observed, error, attempts, started_at, finished_at"

    def __init__(self, path: str, *, timeout_s: float = 30.0) -> None:
        self.state = state_db.State(path, timeout_s=timeout_s)

    @classmethod
    def from_settings(cls, settings: Any) -> Ledger:
        return cls(settings.state.path, timeout_s=settings.state.lock_timeout_s)

    def get(self, actuator: str, decision_id: str) -> LedgerRow | None:
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM scaling_actions WHERE actuator = ? AND decision_id = ?",
                [actuator, decision_id],
            ).fetchall()
        return LedgerRow(*rows[0]) if rows else None

    def claim(self, actuator: str, decision: Decision, *, lease_s: float) -> tuple[str, LedgerRow | None]:
        """Take the right to apply ``decision``: ``("claimed", row)``, ``("done", row)`` or ``("busy", row)``.

        One transaction, so two processes racing on one decision cannot both claim it. A claim
        older than ``lease_s`` belongs to a process that died mid-apply and is taken over."""
        now = datetime.now(UTC)
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM scaling_actions WHERE actuator = ? AND decision_id = ?",
                [actuator, decision.id],
            ).fetchall()
            row = LedgerRow(*rows[0]) if rows else None
            if row is not None and row.status == "applied":
                return "done", row
            if row is not None and row.status == "applying" and now - row.started_at < timedelta(seconds=lease_s):
                return "busy", row
            attempts = (row.attempts if row else 0) + 1
            con.execute(
                "INSERT INTO scaling_actions VALUES (?, ?, ?, ?, 'applying', NULL, NULL, ?, ?, NULL) "
                "ON CONFLICT (actuator, decision_id) DO UPDATE SET target = excluded.target, "
                "to_count = excluded.to_count, status = 'applying', observed = NULL, error = NULL, "
                "attempts = excluded.attempts, started_at = excluded.started_at, finished_at = NULL",
                [actuator, decision.id, decision.target, decision.to, attempts, now],
            )
        return "claimed", LedgerRow(
            actuator, decision.id, decision.target, decision.to, "applying", None, None, attempts, now, None
        )

    def finish(self, actuator: str, decision_id: str, *, observed: int | None, error: str | None) -> None:
        """Mark a claimed decision ``applied`` (no error) or ``failed`` (with the error, retryable)."""
        with self.state.transaction() as con:
            con.execute(
                "UPDATE scaling_actions SET status = ?, observed = ?, error = ?, finished_at = ? "
                "WHERE actuator = ? AND decision_id = ?",
                ["failed" if error else "applied", observed, error, datetime.now(UTC), actuator, decision_id],
            )

    def last_applied(self, actuator: str, target: str) -> LedgerRow | None:
        """The latest decision this actuator applied to ``target`` (what reality was set to last)."""
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM scaling_actions WHERE actuator = ? AND target = ? "
                "AND status = 'applied' ORDER BY finished_at DESC LIMIT 1",
                [actuator, target],
            ).fetchall()
        return LedgerRow(*rows[0]) if rows else None

    def history(self, target: str | None = None, *, limit: int = 100) -> list[LedgerRow]:
        """The latest ledger rows (newest first), optionally for one target."""
        where, params = ("WHERE target = ?", [target]) if target else ("", [])
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM scaling_actions {where} ORDER BY started_at DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [LedgerRow(*r) for r in rows]


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
        raise ActuatorConfigError(format_validation_error(err, origin)) from None


class Actuator(ABC):
    """One system whose counts we set. Subclasses implement ``_read`` and ``_set``; nothing else.

    ``current(target)`` reads reality so decisions start from it; ``apply(decision, dry_run=…)``
    changes it at most once per decision id (see the module docstring for the guarantees)."""

    kind: ClassVar[str]
    config_model: ClassVar[type[ActuatorConfig]]

    def __init__(self, config: ActuatorConfig, *, ledger: Ledger) -> None:
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

    def __enter__(self) -> Actuator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lease_s(self) -> float:
        """How long a claim may stay ``applying`` before another process may take it over."""
        return 300.0

    def current(self, target: str) -> int:
        """The count ``target`` has now, read from the system itself."""
        return self._read(target)

    def apply(self, decision: Decision, *, dry_run: bool = True) -> ActionResult:
        """Set ``decision.target`` to ``decision.to`` once; ``dry_run`` (the default) touches nothing.

        Returns a result instead of raising on failure: the failure is already recorded in the
        ledger with its error, and the caller decides whether and when to retry."""
        t0 = time.monotonic()
        base = functools.partial(
            ActionResult, decision_id=decision.id, actuator=self.name, target=decision.target, to=decision.to
        )
        if dry_run:
            log.info("dry-run %s: %s → %d (%s)", self.name, decision.target, decision.to, decision.reason)
            return base(status="dry-run", detail={"would_set": decision.to})
        verdict, row = self.ledger.claim(self.name, decision, lease_s=self.lease_s)
        if verdict != "claimed":
            assert row is not None
            why = "already applied" if verdict == "done" else "being applied by another process"
            return base(
                status="skipped",
                observed=row.observed,
                attempt=row.attempts,
                duration_s=time.monotonic() - t0,
                detail={"reason": why, "since": row.started_at.isoformat()},
            )
        assert row is not None
        detail: dict[str, Any] = {}
        observed: int | None = None
        try:
            observed = self._set(decision, detail)
            if observed != decision.to:
                raise ActuatorError(f"{self.name}: read back {observed} after setting {decision.to}")
        except Exception as exc:
            error = _describe(exc)
            self.ledger.finish(self.name, decision.id, observed=observed, error=error)
            log.warning("%s failed to set %s → %d: %s", self.name, decision.target, decision.to, error)
            return base(
                status="failed",
                observed=observed,
                error=error,
                attempt=row.attempts,
                duration_s=time.monotonic() - t0,
                detail=detail,
            )
        self.ledger.finish(self.name, decision.id, observed=observed, error=None)
        log.info("%s set %s → %d", self.name, decision.target, decision.to)
        return base(
            status="applied", observed=observed, attempt=row.attempts, duration_s=time.monotonic() - t0, detail=detail
        )

    @abstractmethod
    def _read(self, target: str) -> int:
        """Read the current count of ``target``; raise ``ActuatorError`` when it cannot."""

    @abstractmethod
    def _set(self, decision: Decision, detail: dict[str, Any]) -> int:
        """Set the count to ``decision.to`` and return the count read back afterwards.

        May add facts worth keeping (e.g. status replicas, pids) to ``detail``."""

    def _ledger_count(self, target: str, missing: str) -> int:
        """The count this actuator last applied to ``target``: reality for systems we cannot query."""
        row = self.ledger.last_applied(self.name, target)
        if row is None or row.observed is None:
            raise ActuatorError(f"{self.name}: cannot read the count of {target!r}: {missing}")
        return row.observed


def record_result(lake: Any, result: ActionResult, *, to_prefect: bool | None = None) -> Any:
    """Append ``action.applied`` / ``action.failed`` for ``result`` to the lake (and Prefect, if reachable).

    Dry runs and skips are not actions and record nothing (returns ``None``); the resource is
    ``cortex.scaling.<target>`` so one target's history reads as one stream."""
    if result.event_name is None:
        return None
    from tasks.events import emit

    return emit(lake, result.event_name, f"scaling.{result.target}", result.to_dict(), to_prefect=to_prefect)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ActuatorError) else f"{type(exc).__name__}: {text}"

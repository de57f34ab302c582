"""The action ledger: which actions each actuator applied, in the state DB (table ``actions``).

Why the state DB: idempotency must hold across processes and restarts (a retried flow run, the CLI
and a schedule may all hold the same decision), and the state DB is the one place for mutable
state, with short lock-retrying transactions (``tasks.state``).

Claims. An apply first *claims* its action (status ``applying``) in one transaction, so two
processes racing on one action cannot both claim it. The claim names its holder
(``tasks.state.ClaimOwner``: host, boot, pid, process start, a token) and carries a lease
(``lease_until``, wall-clock time) that the holder renews from a ``tasks.state.Heartbeat`` while
it applies. Another process takes a claim over only when its lease has run out **and** its holder
is gone: on this host, its process no longer exists; on another host the lease alone decides (the
heartbeat keeps it fresh). A live holder is never taken over, however long its apply takes — the
alert outbox's rule (``tasks.alerting.delivery``), for the same reason.

Values (``to``, ``observed``) are JSON, so one table serves every kind of action (a count, a list
of keys, a weight). The ledger was ``scaling_actions`` with integer counts before actions had one
home; its rows are copied into ``actions`` on first use and the old table dropped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tasks.actuators.action import Action
from tasks.config import Settings
from tasks.state import ClaimOwner, State, claim_still_held, register_schema

__all__ = ["ActionLedger", "ClaimVerdict", "LedgerRow"]

log = logging.getLogger("cortex_perf.actuators.ledger")

TABLE = "actions"

register_schema(
    TABLE,
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        actuator VARCHAR NOT NULL,
        decision_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        to_value JSON NOT NULL,
        status VARCHAR NOT NULL,
        observed JSON,
        error VARCHAR,
        attempts INTEGER NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        claim_token VARCHAR,
        claim_owner VARCHAR,
        lease_until TIMESTAMPTZ,
        PRIMARY KEY (actuator, decision_id)
    )""",
)
# The scaling-only ledger this one replaces: its rows (all counts) move over once, then it goes.
register_schema(
    "scaling_actions_moved",
    "CREATE TABLE IF NOT EXISTS scaling_actions (actuator VARCHAR NOT NULL, decision_id VARCHAR NOT NULL,"
    " target VARCHAR NOT NULL, to_count INTEGER NOT NULL, status VARCHAR NOT NULL, observed INTEGER,"
    " error VARCHAR, attempts INTEGER NOT NULL, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,"
    " PRIMARY KEY (actuator, decision_id));"
    f" INSERT INTO {TABLE} SELECT actuator, decision_id, 'replicas', target, to_json(to_count), status,"
    " to_json(observed), error, attempts, started_at, finished_at, NULL, NULL, NULL FROM scaling_actions"
    " ON CONFLICT DO NOTHING;"
    " DROP TABLE scaling_actions",
)

ClaimVerdict = Literal["claimed", "done", "busy"]


@dataclass(frozen=True)
class LedgerRow:
    """One action as the ledger holds it (``to`` and ``observed`` as the actuator gave them)."""

    actuator: str
    decision_id: str
    kind: str
    target: str
    to: Any
    status: str
    observed: Any
    error: str | None
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    claim_token: str | None = None
    claim_owner: str | None = None
    lease_until: datetime | None = None

    @classmethod
    def from_db(cls, row: tuple[Any, ...]) -> LedgerRow:
        values = list(row)
        values[4] = _load(values[4])
        values[6] = _load(values[6])
        return cls(*values)


_COLS = (
    "actuator, decision_id, kind, target, to_value, status, observed, error, attempts, started_at, finished_at, "
    "claim_token, claim_owner, lease_until"
)


def _load(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class ActionLedger:
    """Claims, outcomes and history of actions, per actuator (its config's ``name``, else its kind)."""

    def __init__(self, path: str, *, timeout_s: float = 30.0) -> None:
        self.state = State(path, timeout_s=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionLedger:
        return cls(settings.state.path, timeout_s=settings.state.lock_timeout_s)

    def _select(self, where: str, params: list[Any], tail: str = "") -> list[LedgerRow]:
        with self.state.transaction() as con:
            rows = con.execute(f"SELECT {_COLS} FROM {TABLE} WHERE {where} {tail}", params).fetchall()
        return [LedgerRow.from_db(r) for r in rows]

    def get(self, actuator: str, decision_id: str) -> LedgerRow | None:
        rows = self._select("actuator = ? AND decision_id = ?", [actuator, decision_id])
        return rows[0] if rows else None

    def claim(
        self, actuator: str, action: Action, *, lease_s: float, owner: ClaimOwner | None = None
    ) -> tuple[ClaimVerdict, LedgerRow | None]:
        """Take the right to apply ``action``: ``("claimed", row)``, ``("done", row)`` or ``("busy", row)``.

        One transaction, so two processes racing on one action cannot both claim it. A claim in
        ``applying`` is taken over only when its lease has run out and its holder is gone (see the
        module docstring); a claim from before claims had owners, once ``lease_s`` after its start.
        ``owner`` (default: a new claimant in this process) must keep its lease renewed
        (:meth:`renew`) for as long as it applies."""
        owner = owner or ClaimOwner.me()
        now = datetime.now(UTC)
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {_COLS} FROM {TABLE} WHERE actuator = ? AND decision_id = ?", [actuator, action.id]
            ).fetchall()
            row = LedgerRow.from_db(rows[0]) if rows else None
            if row is not None and row.status == "applied":
                return "done", row
            if row is not None and row.status == "applying" and _held(row, now, lease_s):
                return "busy", row
            attempts = (row.attempts if row else 0) + 1
            lease_until = now + timedelta(seconds=lease_s)
            con.execute(
                f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, 'applying', NULL, NULL, ?, ?, NULL, ?, ?, ?) "
                "ON CONFLICT (actuator, decision_id) DO UPDATE SET kind = excluded.kind, target = excluded.target, "
                "to_value = excluded.to_value, status = 'applying', observed = NULL, error = NULL, "
                "attempts = excluded.attempts, started_at = excluded.started_at, finished_at = NULL, "
                "claim_token = excluded.claim_token, claim_owner = excluded.claim_owner, "
                "lease_until = excluded.lease_until",
                [
                    actuator,
                    action.id,
                    action.kind,
                    action.target,
                    _dump(action.to),
                    attempts,
                    now,
                    owner.token,
                    owner.to_json(),
                    lease_until,
                ],
            )
        return "claimed", LedgerRow(
            actuator,
            action.id,
            action.kind,
            action.target,
            action.to,
            "applying",
            None,
            None,
            attempts,
            now,
            None,
            owner.token,
            owner.to_json(),
            lease_until,
        )

    def renew(self, token: str, *, lease_s: float) -> None:
        """Push the lease of every claim ``token`` still holds ``lease_s`` into the future (heartbeat)."""
        with self.state.transaction() as con:
            con.execute(
                f"UPDATE {TABLE} SET lease_until = ? WHERE claim_token = ? AND status = 'applying'",
                [datetime.now(UTC) + timedelta(seconds=lease_s), token],
            )

    def finish(self, actuator: str, decision_id: str, token: str, *, observed: Any, error: str | None) -> bool:
        """Mark a claimed action ``applied`` (no error) or ``failed`` (with the error, retryable).

        Only while ``token`` still holds the claim: a holder taken over (its lease ran out, on
        another host) must not overwrite its successor's outcome. Returns whether it held."""
        with self.state.transaction() as con:
            mine = con.execute(
                f"UPDATE {TABLE} SET status = ?, observed = ?, error = ?, finished_at = ?, lease_until = NULL "
                "WHERE actuator = ? AND decision_id = ? AND claim_token = ? RETURNING decision_id",
                ["failed" if error else "applied", _dump(observed), error, datetime.now(UTC), actuator, decision_id,
                 token],
            ).fetchall()  # fmt: skip
        if not mine:
            log.warning("action %s (%s): another process took the claim over while this one applied", decision_id,
                        actuator)  # fmt: skip
        return bool(mine)

    def last_applied(self, actuator: str, target: str) -> LedgerRow | None:
        """The latest action this actuator applied to ``target`` (what reality was set to last)."""
        rows = self._select(
            "actuator = ? AND target = ? AND status = 'applied'",
            [actuator, target],
            "ORDER BY finished_at DESC LIMIT 1",
        )
        return rows[0] if rows else None

    def history(self, target: str | None = None, *, limit: int = 100) -> list[LedgerRow]:
        """The latest ledger rows (newest first), optionally for one target."""
        where, params = ("target = ?", [target]) if target else ("true", [])
        return self._select(where, [*params, limit], "ORDER BY started_at DESC LIMIT ?")


def _held(row: LedgerRow, now: datetime, lease_s: float) -> bool:
    """Whether an ``applying`` claim still belongs to its holder (see the module docstring)."""
    if row.lease_until is not None:
        expired = row.lease_until <= now
    else:  # claimed before claims had owners and leases
        expired = row.started_at <= now - timedelta(seconds=lease_s)
    why = claim_still_held(expired, row.claim_owner)
    if why is not None and expired:
        log.warning("action %s (%s): %s: not taken over", row.decision_id, row.actuator, why)
    return why is not None

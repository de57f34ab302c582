"""Decision records and policy state in the state DB: what each scaling tick decided, and what the
policy carries to the next tick.

Why the state DB (beside the lake's ``scaling.triggered`` events): the policy state (stabilisation
window, recent changes, forecast track record) is mutable and must be read back each tick, and a
re-run of the same tick must find the decision it already made instead of deciding again. Both
writes happen in one transaction, so a decision is recorded if and only if the state advanced.

Re-runs: the state row keeps the state from *before* the latest tick too; a tick at the same time
as the latest one starts from that earlier state, so re-deciding a tick cannot double-count it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks import state as state_db
from tasks.config import Settings
from tasks.scaling.guardrails import RailState
from tasks.scaling.policies import PolicyState

__all__ = ["DecisionRow", "ScalingRecords", "decision_id", "state_from_json", "state_to_json"]

DDL = """
CREATE TABLE IF NOT EXISTS scaling_decisions (
    decision_id VARCHAR PRIMARY KEY,
    target VARCHAR NOT NULL,
    tick TIMESTAMPTZ NOT NULL,
    mode VARCHAR NOT NULL,
    from_units INTEGER NOT NULL,
    to_units INTEGER NOT NULL,
    policy VARCHAR NOT NULL,
    emergency BOOLEAN NOT NULL,
    record JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS scaling_policy_state (
    target VARCHAR PRIMARY KEY,
    tick TIMESTAMPTZ NOT NULL,
    state JSON NOT NULL,
    prev_state JSON,
    updated_at TIMESTAMPTZ NOT NULL
)
"""
state_db.register_schema("scaling_records", DDL)


def decision_id(target: str, tick: datetime, mode: str = "apply") -> str:
    """The idempotency key of ``target``'s decision at ``tick`` (whole seconds, UTC).

    Deterministic, so a retried flow run or task for the same tick carries the same id and the
    actuators' ledger applies it once: ``<target>@<YYYYmmddTHHMMSSZ>-<8 hex of a hash>`` (the hash
    keeps ids distinct for target names that differ only in characters the readable part drops).
    A dry run's id ends in ``-dry``: a dry run and a real run in the same second are two decisions,
    so the real one is never a replay of a decision that was only ever meant to be shown."""
    t = tick.astimezone(UTC).replace(microsecond=0)
    stamp = t.strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(f"{target}\0{t.isoformat()}\0{mode}".encode()).hexdigest()[:8]
    return f"{target[:150]}@{stamp}-{digest}" + ("-dry" if mode == "dry-run" else "")


def state_to_json(st: PolicyState) -> dict[str, Any]:
    """A ``PolicyState`` as JSON-ready data (lists of pairs)."""
    return {
        "rails": {
            "recommendations": [list(r) for r in st.rails.recommendations],
            "changes": [list(c) for c in st.rails.changes],
        },
        "checks": [list(c) for c in st.checks],
        "outcomes": list(st.outcomes),
    }


def state_from_json(data: dict[str, Any]) -> PolicyState:
    """Inverse of :func:`state_to_json`; a malformed row is an error naming the part that is wrong."""
    try:
        rails = data.get("rails", {})
        return PolicyState(
            rails=RailState(
                recommendations=tuple((float(t), int(n)) for t, n in rails.get("recommendations", [])),
                changes=tuple((float(t), int(n)) for t, n in rails.get("changes", [])),
            ),
            checks=tuple((float(d), float(b)) for d, b in data.get("checks", [])),
            outcomes=tuple(bool(o) for o in data.get("outcomes", [])),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"stored policy state is malformed: {exc}") from None


@dataclass(frozen=True)
class DecisionRow:
    """One recorded decision (``record`` is the full record, as in the ``scaling.triggered`` event)."""

    decision_id: str
    target: str
    tick: datetime
    mode: str
    from_units: int
    to_units: int
    policy: str
    emergency: bool
    record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.record, "id": self.decision_id, "tick": self.tick.isoformat(), "mode": self.mode}


class ScalingRecords:
    """The scaling tables of the state DB (short transactions, like every state DB user)."""

    _COLS = "decision_id, target, tick, mode, from_units, to_units, policy, emergency, record"

    def __init__(self, path: str, *, timeout_s: float = 30.0) -> None:
        self.state = state_db.State(path, timeout_s=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> ScalingRecords:
        return cls(settings.state.path, timeout_s=settings.state.lock_timeout_s)

    @staticmethod
    def _row(r: tuple[Any, ...]) -> DecisionRow:
        rec = r[8] if isinstance(r[8], dict) else json.loads(r[8])
        return DecisionRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], bool(r[7]), rec)

    def get_decision(self, decision_id: str) -> DecisionRow | None:
        """The decision recorded under ``decision_id``, if any (a re-run of its tick replays it)."""
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM scaling_decisions WHERE decision_id = ?", [decision_id]
            ).fetchall()
        return self._row(rows[0]) if rows else None

    def load_state(self, target: str, tick: datetime) -> PolicyState | None:
        """The policy state to start ``target``'s decision at ``tick`` from (None: no history).

        A tick at or before the latest recorded one (a re-run) starts from the state before it."""
        with self.state.transaction() as con:
            rows = con.execute(
                "SELECT tick, state, prev_state FROM scaling_policy_state WHERE target = ?", [target]
            ).fetchall()
        if not rows:
            return None
        last_tick, st, prev = rows[0]
        raw = st if tick > last_tick else prev
        if raw is None:
            return None
        return state_from_json(raw if isinstance(raw, dict) else json.loads(raw))

    def commit(self, decision_id: str, record: dict[str, Any], tick: datetime, new_state: PolicyState) -> None:
        """Record a decision and advance its target's policy state, in one transaction.

        A decision id already recorded is left alone (first write wins: the decision that may
        already have been applied is the one on record)."""
        target = str(record["target"])
        now = datetime.now(UTC)
        with self.state.transaction() as con:
            if con.execute("SELECT 1 FROM scaling_decisions WHERE decision_id = ?", [decision_id]).fetchall():
                return
            con.execute(
                "INSERT INTO scaling_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    decision_id,
                    target,
                    tick,
                    str(record.get("mode", "dry-run")),
                    int(record["from"]),
                    int(record["to"]),
                    str(record.get("policy", "")),
                    bool(record.get("emergency", False)),
                    json.dumps(record, default=str),
                    now,
                ],
            )
            rows = con.execute("SELECT tick, state FROM scaling_policy_state WHERE target = ?", [target]).fetchall()
            new = json.dumps(state_to_json(new_state))
            if not rows:
                con.execute("INSERT INTO scaling_policy_state VALUES (?, ?, ?, NULL, ?)", [target, tick, new, now])
            elif tick > rows[0][0]:
                con.execute(
                    "UPDATE scaling_policy_state SET tick = ?, state = ?, prev_state = ?, updated_at = ? "
                    "WHERE target = ?",
                    [tick, new, rows[0][1], now, target],
                )
            # a tick older than the latest (a late re-run of an old tick) leaves the state alone

    def decisions(self, target: str | None = None, *, limit: int = 50) -> list[DecisionRow]:
        """The latest recorded decisions, newest first, optionally for one target."""
        where, params = ("WHERE target = ?", [target]) if target else ("", [])
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {self._COLS} FROM scaling_decisions {where} "
                "ORDER BY tick DESC, created_at DESC, target LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [self._row(r) for r in rows]

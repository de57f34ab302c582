"""The alerts as people list them: one row per live (or resolved) alert instance, with its
acknowledgement and manual resolve; the rules whose last evaluation failed; the notification outbox.

Why here and not in the CLI: these rows join the rule side's stored state (``rules.ruler``) with the
notify side's acks (``notify.acks``) — a query over the state DB, which belongs to ``tasks`` so the
CLI, a REST API or an MCP tool list the same thing. Like ``service``, this module composes the two
sides; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypedDict

from tasks.alerting.model import fingerprint
from tasks.alerting.notify.acks import AckStore
from tasks.alerting.notify.delivery import list_outbox
from tasks.alerting.rules.lifecycle import AlertState
from tasks.alerting.rules.ruler import RuleStore, StoredRule
from tasks.state import State

__all__ = ["AlertRow", "alert_rows", "failing_rules", "find_alert", "outbox_rows"]

#: The fewest characters of an alert ID that ``find_alert`` accepts (short prefixes collide).
MIN_ID_PREFIX = 6


class AckInfo(TypedDict):
    by: str
    until: str
    comment: str


class ResolveInfo(TypedDict):
    by: str
    reason: str
    at: str


class AlertRow(TypedDict):
    """One alert instance as ``alerts list --json`` prints it (times as ISO 8601 strings)."""

    id: str
    alertname: str
    state: str  # firing | pending | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: str
    fired_at: str | None
    resolved_at: str | None
    value: float
    rule: str
    ack: AckInfo | None
    manual_resolve: ResolveInfo | None


_ORDER = {"firing": 0, "pending": 1, "resolved": 2}


def alert_rows(state: State, include_resolved: bool, *, now: datetime | None = None) -> list[AlertRow]:
    """Every firing and pending alert (and recently resolved ones with ``include_resolved``), firing
    first, each with its live acknowledgement and a manual resolve made during its current episode."""
    rows: list[AlertRow] = []
    for stored in RuleStore(state).load().values():
        for a in stored.instances:
            if a.state is AlertState.INACTIVE and not include_resolved:
                continue
            rows.append(
                {
                    "id": fingerprint(a.labels),
                    "alertname": a.labels.get("alertname", ""),
                    "state": "resolved" if a.state is AlertState.INACTIVE else a.state.value,
                    "labels": dict(a.labels),
                    "annotations": dict(a.annotations),
                    "active_at": a.active_at.isoformat(),
                    "fired_at": a.fired_at.isoformat() if a.fired_at else None,
                    "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
                    "value": a.last_value,
                    "rule": stored.rule_key,
                    "ack": None,
                    "manual_resolve": None,
                }
            )
    rows.sort(key=lambda r: (_ORDER[r["state"]], r["alertname"], sorted(r["labels"].items())))
    acks_store = AckStore(state)
    acks = {a.fingerprint: a for a in acks_store.acks(t=now or datetime.now(UTC))}
    resolves = {r.fingerprint: r for r in acks_store.resolves()}
    for r in rows:
        ack, m = acks.get(r["id"]), resolves.get(r["id"])
        r["ack"] = {"by": ack.by, "until": ack.expires_at.isoformat(), "comment": ack.comment} if ack else None
        r["manual_resolve"] = (
            {"by": m.by, "reason": m.reason, "at": m.at.isoformat()}
            if m and r["state"] != "resolved" and m.at.isoformat() >= r["active_at"]
            else None
        )
    return rows


def failing_rules(state: State) -> list[StoredRule]:
    """Rules whose last evaluation failed, by group and alert name: their alerts are as they were
    before it (the failure would otherwise only show in the tick's summary)."""
    return sorted(
        (r for r in RuleStore(state).load().values() if r.last_error is not None),
        key=lambda r: (r.group, r.alert),
    )


def find_alert(state: State, alert_id: str) -> AlertRow:
    """The live alert whose ID is ``alert_id`` or starts with it (at least 6 characters, unique).

    Raises ``ValueError`` for a too-short or ambiguous ID and ``LookupError`` when none matches; the
    messages point at ``alerts list``."""
    if len(alert_id) < MIN_ID_PREFIX:
        raise ValueError(f"alert ID {alert_id!r}: give at least {MIN_ID_PREFIX} characters (see `alerts list`)")
    hits = [r for r in alert_rows(state, False) if r["id"].startswith(alert_id)]
    if not hits:
        raise LookupError(f"alert ID {alert_id!r}: no firing or pending alert has it (see `alerts list`)")
    if len(hits) > 1:
        raise ValueError(f"alert ID {alert_id!r} is ambiguous: " + ", ".join(r["id"] for r in hits))
    return hits[0]


def outbox_rows(
    state: State, *, status: Sequence[str] | None = None, receiver: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The notification outbox, newest first, as plain rows (times as ISO 8601 strings)."""
    entries = list_outbox(state, status=status, receiver=receiver, limit=limit)
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(e).items()} for e in entries]

"""The alert as the notification pipeline sees it: one type shared by routing, silences, inhibition,
grouping, escalation and delivery, so each stage is a plain function of alerts and time.

The rule engine (``lifecycle``) owns how an alert comes to be; from there on an alert is only its
label set (its identity), annotations, whether it is firing or resolved, and when it started and
ended — the fields Alertmanager's API carries, so everything downstream can be checked against it.

This module is the one seam between the two sides: ``rules/`` produces alerts and ``notify/``
consumes them, and neither imports the other; what both need goes here (or to a leaf utility such
as ``tasks.timeparse``), never across.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, get_args

__all__ = ["REASONS", "Alert", "AlertStatus", "Notification", "Reason", "fingerprint", "labels_text", "sorted_alerts"]

AlertStatus = Literal["firing", "resolved"]
#: Why a notification goes out: the dispatcher's reasons, and ``test`` for ``alerts test-notify``.
Reason = Literal["initial", "update", "repeat", "escalation", "flapping", "test"]
REASONS: tuple[str, ...] = get_args(Reason)


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (sorted, so label order never matters).

    Why not Prometheus's FNV fingerprint: ours is persisted in the state DB and shown to people as
    the alert ID (``alerts ack ID``), so it must be stable across versions and platforms; a SHA-256
    prefix of the canonical JSON is, and 64 bits make collisions irrelevant at our scale."""
    canon = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def labels_text(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}`` with sorted names and Go-escaped values, as Prometheus prints a label set."""
    parts = []
    for k in sorted(labels):
        v = labels[k].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{k}="{v}"')
    return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Alert:
    """One alert instance handed to the notification pipeline.

    ``labels`` include ``alertname``; ``ends_at`` is set once resolved. ``value`` is the last value of
    the rule's expression (for templates); ``generator`` names the rule (``file:group:alert``)."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    status: AlertStatus = "firing"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    value: float | None = None
    generator: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "status": self.status,
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "value": self.value,
            "generator": self.generator,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        def ts(v: Any) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        status = d.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise ValueError(f"alert status: {status!r} is not firing or resolved")
        return cls(
            labels={str(k): str(v) for k, v in dict(d["labels"]).items()},
            annotations={str(k): str(v) for k, v in dict(d.get("annotations") or {}).items()},
            status=status,
            starts_at=ts(d.get("starts_at")),
            ends_at=ts(d.get("ends_at")),
            value=None if d.get("value") is None else float(d["value"]),
            generator=str(d.get("generator") or ""),
        )


def sorted_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """Firing before resolved, then by label set — Alertmanager's ``AlertSlice`` order, roughly."""
    return sorted(alerts, key=lambda a: (a.resolved, labels_text(a.labels)))


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about one group: what the dispatcher decides and delivery sends.

    One type from decision to wire (the dispatcher builds it, the outbox stores ``to_dict``, the
    templates render it), so nothing is lost converting between stages."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: Sequence[Alert]
    reason: str = "initial"
    notes: Sequence[str] = ()
    t: datetime | None = None
    external_url: str = ""

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if not a.resolved]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.resolved]

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "group_key": self.group_key,
            "group_labels": dict(self.group_labels),
            "alerts": [a.to_dict() for a in self.alerts],
            "reason": self.reason,
            "notes": list(self.notes),
            "t": self.t.isoformat() if self.t else None,
            "external_url": self.external_url,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Notification:
        reason = d.get("reason") or "initial"
        if reason not in REASONS:
            raise ValueError(f"notification.reason: {reason!r} is not one of {', '.join(REASONS)}")
        return cls(
            receiver=str(d["receiver"]),
            group_key=str(d["group_key"]),
            group_labels={str(k): str(v) for k, v in dict(d.get("group_labels") or {}).items()},
            alerts=[Alert.from_dict(a) for a in d.get("alerts") or []],
            reason=reason,
            notes=[str(n) for n in d.get("notes") or []],
            t=datetime.fromisoformat(d["t"]) if d.get("t") else None,
            external_url=str(d.get("external_url") or ""),
        )

    def merged_into(self, newer: Notification) -> Notification:
        """``newer`` carrying this (deferred) message's content too: alerts by fingerprint with the
        newer version winning, notes of both — so a deferral loses nothing."""
        by_fp = {a.fingerprint: a for a in self.alerts}
        by_fp.update({a.fingerprint: a for a in newer.alerts})
        notes = list(self.notes) + [n for n in newer.notes if n not in self.notes]
        reason = self.reason if self.reason == "initial" and newer.reason in ("update", "repeat") else newer.reason
        return replace(newer, alerts=sorted_alerts(by_fp.values()), notes=notes, reason=reason)

"""The alert as the notification pipeline sees it: one type shared by routing, silences, inhibition,
grouping, escalation and delivery, so each stage is a plain function of alerts and time.

The rule engine (``lifecycle``) owns how an alert comes to be; from there on an alert is only its
label set (its identity), annotations, whether it is firing or resolved, and when it started and
ended — the fields Alertmanager's API carries, so everything downstream can be checked against it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["Alert", "AlertStatus", "fingerprint", "labels_text"]

AlertStatus = Literal["firing", "resolved"]


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

"""Flapping detection: an alert that keeps switching firing ↔ resolved is noise until it settles.

Per fingerprint we keep the times of its state changes within a sliding ``window`` (1 h). Like
Nagios's flap detection it has two thresholds, so an alert near the limit does not flap in and out
of "flapping" itself (hysteresis): it **starts** flapping when the changes in the window reach
``start_changes`` (4), and **stops** once they fall below ``stop_changes`` (2) — i.e. after it has
stayed in one state long enough for the old changes to age out of the window.

While an alert flaps the dispatcher holds its notifications and says so once ("flapping: held");
when it settles it says so once more and the alert rejoins its group with its current state.

State changes are observed per tick from the status the alert has in the tick's input. An alert
missing from the input keeps its last status (a resolved alert leaves the input 15 minutes after
resolving; coming back firing later is one change, resolved → firing) until it has been quiet for
a whole window. The state changes only when the status does, so its stored row rarely moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from tasks.alerting.model import AlertStatus
from tasks.timeparse import parse_prometheus_duration

__all__ = ["FlapEvent", "FlapSettings", "FlapState", "observe"]

FlapEvent = Literal["started", "stopped"]


@dataclass(frozen=True)
class FlapSettings:
    window: timedelta = timedelta(hours=1)
    start_changes: int = 4
    stop_changes: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError("flapping.window: must be a positive duration")
        if self.start_changes < 2:
            raise ValueError("flapping.start_changes: must be at least 2")
        if not 1 <= self.stop_changes <= self.start_changes:
            raise ValueError("flapping.stop_changes: must be between 1 and start_changes")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> FlapSettings:
        """From ``{window: 1h, start_changes: 4, stop_changes: 2, enabled: true}``; errors name the field."""
        if not raw:
            return cls()
        unknown = set(raw) - {"window", "start_changes", "stop_changes", "enabled"}
        if unknown:
            raise ValueError(f"flapping: unknown field(s) {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = {}
        if "window" in raw:
            try:
                kw["window"] = timedelta(seconds=parse_prometheus_duration(str(raw["window"])))
            except ValueError as exc:
                raise ValueError(f"flapping.window: {exc}") from None
        for k in ("start_changes", "stop_changes"):
            if k in raw:
                v = raw[k]
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ValueError(f"flapping.{k}: expected an integer, got {v!r}")
                kw[k] = v
        if "enabled" in raw:
            if not isinstance(raw["enabled"], bool):
                raise ValueError(f"flapping.enabled: expected true or false, got {raw['enabled']!r}")
            kw["enabled"] = raw["enabled"]
        return cls(**kw)


@dataclass
class FlapState:
    """One fingerprint's recent history: last status seen, change times in the window, flapping or not."""

    status: AlertStatus
    changes: list[datetime] = field(default_factory=list)
    flapping: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "changes": [c.isoformat() for c in self.changes],
            "flapping": self.flapping,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FlapState:
        return cls(
            status=d["status"],
            changes=[datetime.fromisoformat(c) for c in d.get("changes", [])],
            flapping=bool(d.get("flapping", False)),
        )


def observe(
    prev: FlapState | None, status: AlertStatus | None, t: datetime, settings: FlapSettings
) -> tuple[FlapState | None, FlapEvent | None]:
    """Advance one fingerprint's history to tick ``t`` given its status now (``None``: not in the input).

    Returns the new state (``None`` when there is nothing to remember) and ``"started"`` /
    ``"stopped"`` when it began or ceased flapping at this tick."""
    if prev is None:
        if status is None:
            return None, None
        return FlapState(status=status), None
    st = FlapState(prev.status, [c for c in prev.changes if t - c < settings.window], prev.flapping)
    if status is not None and status != st.status:
        st.changes.append(t)
        st.status = status
    event: FlapEvent | None = None
    n = len(st.changes)
    if not st.flapping and n >= settings.start_changes:
        st.flapping, event = True, "started"
    elif st.flapping and n < settings.stop_changes:
        st.flapping, event = False, "stopped"
    if status is None and not st.flapping and not st.changes:
        return None, event  # gone from the input and quiet for a window: nothing left to remember
    return st, event

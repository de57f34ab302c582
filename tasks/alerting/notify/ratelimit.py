"""Per-receiver rate limits: at most ``max_messages`` per ``per`` (sliding window) to one receiver.

Why a sliding window over the send times rather than a token bucket: the limit people write
("10 messages per 5 minutes") is then exactly what a person on the receiving end can count, and the
state is just the recent send times (JSON-friendly). What exceeds the limit is *deferred*, never
dropped: the dispatcher keeps it per group and merges it into the next message that group is
allowed to send (see ``dispatch``); this module only does the arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tasks.timeparse import parse_prometheus_duration

__all__ = ["RateLimit", "SendWindow", "parse_rate_limits"]


@dataclass(frozen=True)
class RateLimit:
    max_messages: int = 10
    per: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_messages < 1:
            raise ValueError("rate_limit.max_messages: must be at least 1")
        if self.per <= timedelta(0):
            raise ValueError("rate_limit.per: must be a positive duration")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "rate_limit") -> RateLimit:
        """From ``{max_messages: 10, per: 5m}``; errors name the field."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a mapping with max_messages and per")
        unknown = set(raw) - {"max_messages", "per"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        kw: dict[str, Any] = {}
        if "max_messages" in raw:
            m = raw["max_messages"]
            if not isinstance(m, int) or isinstance(m, bool):
                raise ValueError(f"{where}.max_messages: expected an integer, got {m!r}")
            kw["max_messages"] = m
        if "per" in raw:
            try:
                kw["per"] = timedelta(seconds=parse_prometheus_duration(str(raw["per"])))
            except ValueError as exc:
                raise ValueError(f"{where}.per: {exc}") from None
        try:
            return cls(**kw)
        except ValueError as exc:
            raise ValueError(str(exc).replace("rate_limit", where, 1)) from None


def parse_rate_limits(raw: Mapping[str, Any] | None) -> tuple[RateLimit | None, dict[str, RateLimit]]:
    """``{default: {max_messages, per}, receivers: {name: {…}}}`` → (default limit, per-receiver limits).

    No ``default`` means unlimited for receivers without their own limit."""
    if not raw:
        return None, {}
    unknown = set(raw) - {"default", "receivers"}
    if unknown:
        raise ValueError(f"rate_limits: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    default = RateLimit.from_mapping(raw["default"], "rate_limits.default") if raw.get("default") else None
    recv = raw.get("receivers") or {}
    if not isinstance(recv, Mapping):
        raise ValueError("rate_limits.receivers: expected a mapping of receiver name to limit")
    return default, {str(k): RateLimit.from_mapping(v, f"rate_limits.receivers.{k}") for k, v in recv.items()}


@dataclass
class SendWindow:
    """Send times to one receiver within the last ``per`` (what the sliding window counts)."""

    sent: list[datetime]

    def prune(self, t: datetime, limit: RateLimit) -> None:
        self.sent = [s for s in self.sent if t - s < limit.per]

    def allowance(self, t: datetime, limit: RateLimit) -> int:
        """How many more messages may go out at ``t``."""
        self.prune(t, limit)
        return max(0, limit.max_messages - len(self.sent))

    def record(self, t: datetime) -> None:
        self.sent.append(t)

    def to_list(self) -> list[str]:
        return [s.isoformat() for s in self.sent]

    @classmethod
    def from_list(cls, raw: list[str]) -> SendWindow:
        return cls([datetime.fromisoformat(s) for s in raw])

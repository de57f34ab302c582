"""Acknowledgements and manual resolves: what people say about an alert, kept in the state DB.

An **ack** (``alerts ack ID [--for 1h]``) says "someone is on it": the dispatcher stops repeating and
escalating that alert until it resolves or the ack expires (30 minutes by default, as PagerDuty's
re-trigger). When an ack ends while the alert is still firing the dispatcher re-triggers it (a
``repeat`` notification noting "ack expired").

A **manual resolve** (``alerts resolve ID --reason …``) says "this is over even if the rule disagrees":
the alert is sent as resolved, and stays quiet while its rule keeps it firing in the same episode.

Both apply to one *firing episode* of an alert: an ack or resolve given at time ``at`` covers the
alert only if the alert started no later than ``at``. A new episode (the rule resolved and fired
again, so ``starts_at`` is later) is not covered and notifies as usual — no stale ack can hide it.

Pure helpers (:func:`active_acks`, :func:`covering_resolves`) take plain lists so the dispatcher
stays testable without a database; :class:`AckStore` is the persistence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tasks.alerting.model import Alert
from tasks.state import State, register_schema

__all__ = [
    "DEFAULT_ACK_FOR",
    "Ack",
    "AckStore",
    "ManualResolve",
    "active_acks",
    "covering_resolves",
    "utc",
]

#: How long an ack lasts when no duration is given (PagerDuty's default ack timeout).
DEFAULT_ACK_FOR = timedelta(minutes=30)

register_schema(
    "alert_acks",
    """CREATE TABLE IF NOT EXISTS alert_acks (
        fingerprint VARCHAR PRIMARY KEY,
        acked_by VARCHAR NOT NULL,
        comment VARCHAR NOT NULL,
        acked_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_manual_resolves (
        fingerprint VARCHAR PRIMARY KEY,
        resolved_by VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        resolved_at TIMESTAMPTZ NOT NULL
    )""",
)


def utc(t: datetime, what: str = "t") -> datetime:
    """``t`` in UTC; a naive datetime is an error (naming ``what``), since guessing a zone shifts timers."""
    if not isinstance(t, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(t).__name__}")
    if t.tzinfo is None:
        raise ValueError(f"{what}: naive datetime {t.isoformat()}; give a timezone-aware (UTC) time")
    return t.astimezone(UTC)


def _covers_episode(alert: Alert, at: datetime) -> bool:
    """True when ``alert``'s current episode began no later than ``at`` (unknown start: it does)."""
    return alert.starts_at is None or utc(alert.starts_at, "alert.starts_at") <= at


@dataclass(frozen=True)
class Ack:
    """Someone acknowledged alert ``fingerprint`` at ``acked_at``; it lapses at ``expires_at``."""

    fingerprint: str
    by: str
    comment: str
    acked_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        if not self.fingerprint:
            raise ValueError("ack.fingerprint: must not be empty")
        if not self.by:
            raise ValueError("ack.by: say who acknowledged")
        object.__setattr__(self, "acked_at", utc(self.acked_at, "ack.acked_at"))
        object.__setattr__(self, "expires_at", utc(self.expires_at, "ack.expires_at"))
        if self.expires_at <= self.acked_at:
            raise ValueError("ack.expires_at: must be after acked_at")

    @classmethod
    def new(
        cls, fingerprint: str, by: str, *, at: datetime, comment: str = "", for_: timedelta = DEFAULT_ACK_FOR
    ) -> Ack:
        """An ack given at ``at`` lasting ``for_`` (default 30 minutes)."""
        if for_ <= timedelta(0):
            raise ValueError("ack.for: must be a positive duration")
        return cls(fingerprint, by, comment, at, utc(at, "ack.acked_at") + for_)

    def active(self, t: datetime) -> bool:
        return self.acked_at <= t < self.expires_at

    def covers(self, alert: Alert, t: datetime) -> bool:
        """The ack holds for ``alert`` at ``t``: same alert, not expired, same firing episode."""
        return alert.fingerprint == self.fingerprint and self.active(t) and _covers_episode(alert, self.acked_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "by": self.by,
            "comment": self.comment,
            "acked_at": self.acked_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ack:
        return cls(
            str(d["fingerprint"]),
            str(d["by"]),
            str(d.get("comment") or ""),
            datetime.fromisoformat(d["acked_at"]),
            datetime.fromisoformat(d["expires_at"]),
        )


@dataclass(frozen=True)
class ManualResolve:
    """Someone declared alert ``fingerprint`` resolved at ``at`` with a ``reason``."""

    fingerprint: str
    by: str
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        if not self.fingerprint:
            raise ValueError("resolve.fingerprint: must not be empty")
        if not self.by:
            raise ValueError("resolve.by: say who resolved")
        if not self.reason.strip():
            raise ValueError("resolve.reason: give a reason")
        object.__setattr__(self, "at", utc(self.at, "resolve.at"))

    def covers(self, alert: Alert) -> bool:
        """The resolve applies to ``alert``: same alert and the episode began before the resolve."""
        return alert.fingerprint == self.fingerprint and _covers_episode(alert, self.at)

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "by": self.by, "reason": self.reason, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ManualResolve:
        return cls(str(d["fingerprint"]), str(d["by"]), str(d["reason"]), datetime.fromisoformat(d["at"]))


def active_acks(acks: Iterable[Ack], t: datetime) -> dict[str, Ack]:
    """Acks in force at ``t`` by fingerprint (the latest-expiring one when there are several)."""
    out: dict[str, Ack] = {}
    for a in acks:
        if a.active(t) and (a.fingerprint not in out or a.expires_at > out[a.fingerprint].expires_at):
            out[a.fingerprint] = a
    return out


def covering_resolves(resolves: Iterable[ManualResolve]) -> dict[str, ManualResolve]:
    """The latest manual resolve per fingerprint."""
    out: dict[str, ManualResolve] = {}
    for r in resolves:
        if r.fingerprint not in out or r.at > out[r.fingerprint].at:
            out[r.fingerprint] = r
    return out


class AckStore:
    """Acks and manual resolves in the state DB (one short transaction per call, as ``tasks.state`` asks)."""

    def __init__(self, state: State, *, default_for: timedelta = DEFAULT_ACK_FOR) -> None:
        self.state = state
        self.default_for = default_for

    # -- acks
    def ack(self, fingerprint: str, by: str, *, at: datetime, comment: str = "", for_: timedelta | None = None) -> Ack:
        """Acknowledge (or re-acknowledge, replacing the old ack) alert ``fingerprint``."""
        a = Ack.new(fingerprint, by, at=at, comment=comment, for_=for_ or self.default_for)
        with self.state.transaction() as con:
            con.execute(
                "INSERT INTO alert_acks VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
                "acked_by = excluded.acked_by, comment = excluded.comment, acked_at = excluded.acked_at, "
                "expires_at = excluded.expires_at",
                [a.fingerprint, a.by, a.comment, a.acked_at, a.expires_at],
            )
        return a

    def acks(self, *, t: datetime | None = None) -> list[Ack]:
        """All stored acks, or only those in force at ``t``; ordered by fingerprint."""
        with self.state.transaction() as con:
            rows = con.execute(
                "SELECT fingerprint, acked_by, comment, acked_at, expires_at FROM alert_acks ORDER BY fingerprint"
            ).fetchall()
        out = [Ack(fp, by, c, at, exp) for fp, by, c, at, exp in rows]
        return out if t is None else [a for a in out if a.active(utc(t))]

    def unack(self, fingerprint: str) -> bool:
        """Remove an ack by hand; True when there was one."""
        with self.state.transaction() as con:
            n = con.execute(
                "DELETE FROM alert_acks WHERE fingerprint = ? RETURNING fingerprint", [fingerprint]
            ).fetchall()
        return bool(n)

    def expire(self, t: datetime) -> list[Ack]:
        """Delete acks that lapsed by ``t`` and return them (the dispatcher remembers who acked)."""
        t = utc(t)
        gone = [a for a in self.acks() if not a.active(t) and a.expires_at <= t]
        if gone:
            with self.state.transaction() as con:
                con.execute("DELETE FROM alert_acks WHERE expires_at <= ?", [t])
        return gone

    # -- manual resolves
    def resolve(self, fingerprint: str, by: str, reason: str, *, at: datetime) -> ManualResolve:
        """Resolve alert ``fingerprint`` by hand (replaces an earlier resolve of the same alert)."""
        r = ManualResolve(fingerprint, by, reason, at)
        with self.state.transaction() as con:
            con.execute(
                "INSERT INTO alert_manual_resolves VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
                "resolved_by = excluded.resolved_by, reason = excluded.reason, resolved_at = excluded.resolved_at",
                [r.fingerprint, r.by, r.reason, r.at],
            )
        return r

    def resolves(self) -> list[ManualResolve]:
        with self.state.transaction() as con:
            rows = con.execute(
                "SELECT fingerprint, resolved_by, reason, resolved_at FROM alert_manual_resolves ORDER BY fingerprint"
            ).fetchall()
        return [ManualResolve(fp, by, reason, at) for fp, by, reason, at in rows]

    def prune_resolves(self, before: datetime) -> int:
        """Forget manual resolves older than ``before`` (their episodes are long over); returns how many."""
        with self.state.transaction() as con:
            n = con.execute(
                "DELETE FROM alert_manual_resolves WHERE resolved_at < ? RETURNING fingerprint", [utc(before)]
            ).fetchall()
        return len(n)

"""Silences: matchers plus a time window that mute matching alerts, kept in the state DB.

Semantics are Alertmanager 0.25's ``silence/silence.go``: a silence is *pending* before ``starts_at``,
*active* from ``starts_at`` through ``ends_at`` (inclusive), *expired* after; it mutes an alert while
active and all its matchers hold (a missing label is ""). A new silence needs at least one matcher and
not all of them may match the empty string (``=""`` and regexes matching ""; negative matchers never
count), else it would silence everything; a start in the past becomes now; it must end after it starts
and not already be over. Expiring sets ``ends_at`` to now (and ``starts_at`` too if still pending); an
expired silence cannot be expired again. Ids are uuid4 strings, as Alertmanager's.

Storage goes through ``tasks.state`` — one short transaction per call — so the alert flow, the CLI and
the REST API share silences without holding the DB open.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tasks.alerting.notify.matchers import (
    Matcher,
    MatcherError,
    matchers_match,
    matchers_text,
    new_matcher,
    parse_matchers,
)
from tasks.state import State, register_schema

__all__ = [
    "Silence",
    "SilenceError",
    "SilenceState",
    "SilenceStore",
    "new_silence",
    "silenced_by",
    "validate_silence",
]

SilenceState = Literal["pending", "active", "expired"]

register_schema(
    "alerting_silences",
    """
    CREATE TABLE IF NOT EXISTS alert_silences (
        id VARCHAR PRIMARY KEY,
        matchers JSON NOT NULL,
        starts_at TIMESTAMPTZ NOT NULL,
        ends_at TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL,
        comment VARCHAR NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
)


class SilenceError(ValueError):
    """A silence that cannot be created or changed; the message names the field."""


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""
    updated_at: datetime | None = None

    def state(self, t: datetime) -> SilenceState:
        t = _utc(t)
        if t < _utc(self.starts_at):
            return "pending"
        if t > _utc(self.ends_at):
            return "expired"
        return "active"

    def mutes(self, labels: Mapping[str, str], t: datetime) -> bool:
        return self.state(t) == "active" and matchers_match(self.matchers, labels)

    @property
    def matchers_text(self) -> str:
        return matchers_text(self.matchers)

    def to_dict(self, t: datetime | None = None) -> dict[str, object]:
        d: dict[str, object] = {
            "id": self.id,
            "matchers": self.matchers_text,
            "starts_at": _utc(self.starts_at).isoformat(),
            "ends_at": _utc(self.ends_at).isoformat(),
            "created_by": self.created_by,
            "comment": self.comment,
        }
        if t is not None:
            d["state"] = self.state(t)
        return d


def silenced_by(silences: Iterable[Silence], labels: Mapping[str, str], t: datetime) -> list[str]:
    """Ids of the silences that mute ``labels`` at ``t`` (in the order given)."""
    return [s.id for s in silences if s.mutes(labels, t)]


def _matchers(matchers: str | Sequence[Matcher]) -> tuple[Matcher, ...]:
    if isinstance(matchers, str):
        try:
            return tuple(parse_matchers(matchers))
        except MatcherError as exc:
            raise SilenceError(f"matchers: {exc}") from None
    return tuple(matchers)


def validate_silence(s: Silence) -> None:
    """Alertmanager's ``validateSilence`` (plus ``ends_at`` strictly after ``starts_at``)."""
    if not s.id:
        raise SilenceError("id: missing")
    if not s.matchers:
        raise SilenceError("matchers: at least one matcher required")
    if all(m.matches_empty for m in s.matchers):
        raise SilenceError("matchers: at least one matcher must not match the empty string")
    if _utc(s.ends_at) <= _utc(s.starts_at):
        raise SilenceError("ends_at: must be after starts_at")


def new_silence(
    matchers: str | Sequence[Matcher],
    *,
    ends_at: datetime,
    starts_at: datetime | None = None,
    created_by: str = "",
    comment: str = "",
    now: datetime | None = None,
) -> Silence:
    """A validated new silence with a fresh uuid4; ``matchers`` as text (``'alertname="X"'``) or list.

    As Alertmanager: a start in the past (or none) becomes ``now``; an end not after ``now`` is refused."""
    now = _utc(now or datetime.now(UTC))
    start = _utc(starts_at) if starts_at is not None else now
    start = max(start, now)
    end = _utc(ends_at)
    if end <= now:
        raise SilenceError(f"ends_at: {end.isoformat()} is not in the future")
    s = Silence(str(uuid.uuid4()), _matchers(matchers), start, end, created_by, comment, now)
    validate_silence(s)
    return s


class SilenceStore:
    """Silences in the state DB (table ``alert_silences``); every method is one short transaction."""

    def __init__(self, state: State | str) -> None:
        self.state = state if isinstance(state, State) else State(state)

    def add(self, silence: Silence) -> str:
        """Store a (validated) silence; returns its id. A duplicate id is an error."""
        validate_silence(silence)
        with self.state.transaction() as con:
            if con.execute("SELECT 1 FROM alert_silences WHERE id = ?", [silence.id]).fetchall():
                raise SilenceError(f"id: silence {silence.id} already exists")
            con.execute(
                "INSERT INTO alert_silences VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    silence.id,
                    json.dumps([m.to_list() for m in silence.matchers]),
                    _utc(silence.starts_at),
                    _utc(silence.ends_at),
                    silence.created_by,
                    silence.comment,
                    _utc(silence.updated_at or datetime.now(UTC)),
                ],
            )
        return silence.id

    def create(
        self,
        matchers: str | Sequence[Matcher],
        *,
        ends_at: datetime,
        starts_at: datetime | None = None,
        created_by: str = "",
        comment: str = "",
        now: datetime | None = None,
    ) -> Silence:
        """``new_silence`` + ``add`` (what ``alerts silence add`` calls)."""
        s = new_silence(matchers, ends_at=ends_at, starts_at=starts_at, created_by=created_by, comment=comment, now=now)
        self.add(s)
        return s

    def get(self, silence_id: str) -> Silence:
        with self.state.transaction(read_only=True) as con:
            rows = con.execute(_SELECT + " WHERE id = ?", [silence_id]).fetchall()
        if not rows:
            raise SilenceError(f"id: no silence {silence_id!r}")
        return _row(rows[0])

    def list(self, t: datetime | None = None, *, states: Iterable[SilenceState] | None = None) -> list[Silence]:
        """All silences (newest start first), optionally only those in ``states`` at ``t`` (default now)."""
        with self.state.transaction(read_only=True) as con:
            rows = con.execute(_SELECT + " ORDER BY starts_at DESC, id").fetchall()
        out = [_row(r) for r in rows]
        if states is not None:
            at = t or datetime.now(UTC)
            wanted = set(states)
            out = [s for s in out if s.state(at) in wanted]
        return out

    def active(self, t: datetime) -> builtins.list[Silence]:
        """Silences active at ``t`` (what the notification pipeline checks each tick)."""
        return self.list(t, states=("active",))

    def expire(self, silence_id: str, now: datetime | None = None) -> Silence:
        """End a silence now; pending ones end before they start. Expiring an expired one is an error."""
        at = _utc(now or datetime.now(UTC))
        with self.state.transaction() as con:
            rows = con.execute(_SELECT + " WHERE id = ?", [silence_id]).fetchall()
            if not rows:
                raise SilenceError(f"id: no silence {silence_id!r}")
            s = _row(rows[0])
            state = s.state(at)
            if state == "expired":
                raise SilenceError(f"id: silence {silence_id} already expired")
            start = at if state == "pending" else _utc(s.starts_at)
            con.execute(
                "UPDATE alert_silences SET starts_at = ?, ends_at = ?, updated_at = ? WHERE id = ?",
                [start, at, at, silence_id],
            )
        return Silence(s.id, s.matchers, start, at, s.created_by, s.comment, at)


_SELECT = "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at FROM alert_silences"


def _row(r: tuple[object, ...]) -> Silence:
    raw = json.loads(str(r[1]))
    matchers = tuple(new_matcher(str(n), str(op), str(v)) for n, op, v in raw)
    ts = [_utc(x) if isinstance(x, datetime) else None for x in (r[2], r[3], r[6])]
    assert ts[0] is not None and ts[1] is not None
    return Silence(str(r[0]), matchers, ts[0], ts[1], str(r[4]), str(r[5]), ts[2])

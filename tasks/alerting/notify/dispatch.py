"""The notification dispatcher: Alertmanager's aggregation groups and notification log, run per tick.

The alerts flow ticks every minute and hands :meth:`Dispatcher.tick` every alert it knows (firing,
and resolved ones for 15 minutes after resolving). The dispatcher decides which **one message per
group** goes out at this tick, to whom and why, and returns it with the new JSON-serialisable state.
It reproduces Alertmanager 0.25 (``dispatch/dispatch.go``, ``notify/notify.go``) where they overlap:

* **Groups.** Each route match puts the alert in the aggregation group ``(route id, values of the
  route's group_by labels)`` — all labels with ``group_by: ['...']``; the group key is
  ``route_id:{labels}`` as Alertmanager prints it.
* **Timers, honoured to the tick.** A new group first flushes ``group_wait`` after it was created
  (at the first tick at or past that instant: 30 s with minute ticks flushes on the next tick), or at
  once when, before its first flush, one of its alerts started more than ``group_wait`` ago
  (``aggrGroup.insert``). Then it flushes every ``group_interval``, on the group's own schedule
  (the instant it was due + interval), so jitter in the tick times does not drift the schedule.
  **Catch-up**: when ticks were missed the group flushes once and reschedules from now — never once
  per missed interval (a Go timer that fired late does the same).
* **What a flush sends** (``DedupStage.needsUpdate`` against the per-receiver notification log):
  notify when the firing set has an alert the last notification did not (``initial`` if the
  receiver knew of none firing, else ``update``); when everything resolved and the last notification
  had firing alerts (sent only with ``send_resolved``, logged either way); when resolved alerts
  appeared and the receiver has ``send_resolved``; else ``repeat`` once ``repeat_interval`` has
  passed since the last notification (strictly: with 5 m / 4 h that is the flush at 4 h 05 m, as in
  Alertmanager). Resolved alerts leave the group after the flush that saw them; a group left with
  none is destroyed, so a new alert later starts a new group with a fresh ``group_wait``.
* **Suppressed** alerts (silenced or inhibited fingerprints, given by the caller) are left out of
  messages and counted; a route that ``muted(route_match, t)`` says is muted sends nothing at that
  flush (Alertmanager's time-interval stage), its resolved alerts still leave the group.

Beyond Alertmanager (see ``acks``, ``escalation``, ``flapping``, ``ratelimit``): an acked alert does
not make a group repeat or escalate; when its ack ends while it still fires the group re-triggers at
once (reason ``repeat``, note "ack expired"). A manually resolved alert is sent as resolved (even
without ``send_resolved``) and stays quiet for the rest of its episode. Escalation steps go to further
receivers while firing alerts stay unacknowledged. A flapping alert is held out of its group with one
``flapping`` notice when it starts and one when it settles. Per-receiver rate limits defer excess
messages, merged per group into the next allowed one — never dropped.

Routing, silences, inhibition and time intervals are other modules: the dispatcher needs only
``router.match(labels)`` returning objects shaped like :class:`RouteMatchLike`, a set of suppressed
fingerprints and a ``muted`` callable, so the real router plugs in without this module importing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa

from tasks.alerting.model import REASONS, Alert, Notification, Reason, labels_text, sorted_alerts
from tasks.alerting.notify.acks import Ack, ManualResolve, active_acks, covering_resolves, utc
from tasks.alerting.notify.escalation import EscalationPolicy, due_steps, parse_policies
from tasks.alerting.notify.flapping import FlapEvent, FlapSettings, FlapState, observe
from tasks.alerting.notify.ratelimit import RateLimit, SendWindow, parse_rate_limits
from tasks.state import State, register_schema
from tasks.timeparse import format_duration, parse_prometheus_duration

__all__ = [
    "DispatchSettings",
    "DispatchState",
    "DispatchStore",
    "Dispatcher",
    "GroupState",
    "NflogEntry",
    "Notification",
    "Reason",
    "RouteMatchLike",
    "RouteSettings",
    "Router",
    "group_key",
    "group_labels",
]

_REASONS = REASONS

#: How long a per-group notification log entry is kept (Alertmanager's ``--data.retention``).
DEFAULT_NFLOG_RETENTION = timedelta(hours=120)


# ---- what the dispatcher needs from routing ---------------------------------------------------------


class RouteMatchLike(Protocol):
    """The effective settings of one route an alert matched (the router's ``RouteMatch``)."""

    @property
    def route_id(self) -> str: ...
    @property
    def receiver(self) -> str: ...
    @property
    def group_by(self) -> Sequence[str]: ...
    @property
    def group_by_all(self) -> bool: ...
    @property
    def group_wait_s(self) -> float: ...
    @property
    def group_interval_s(self) -> float: ...
    @property
    def repeat_interval_s(self) -> float: ...


class Router(Protocol):
    def match(self, labels: Mapping[str, str]) -> Sequence[RouteMatchLike]: ...


@dataclass(frozen=True)
class RouteSettings:
    """A plain route match (Alertmanager's defaults) for callers and tests without a routing tree."""

    route_id: str
    receiver: str
    group_by: tuple[str, ...] = ()
    group_by_all: bool = False
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 4 * 3600.0
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()


def group_labels(labels: Mapping[str, str], match: RouteMatchLike) -> dict[str, str]:
    """The alert's labels that name its group on this route (``getGroupLabels``)."""
    if match.group_by_all:
        return dict(sorted(labels.items()))
    return {k: labels[k] for k in sorted(set(match.group_by)) if k in labels}


def group_key(match: RouteMatchLike, glabels: Mapping[str, str]) -> str:
    """``route_id:{label="value", …}`` — unique per route and group label values."""
    return f"{match.route_id}:{labels_text(glabels)}"


# ---- notifications ----------------------------------------------------------------------------------


# ---- settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchSettings:
    """Everything beyond the routes: escalation policies by receiver, flapping, rate limits."""

    escalation: Mapping[str, EscalationPolicy] = field(default_factory=dict)
    flapping: FlapSettings = field(default_factory=FlapSettings)
    rate_limit: RateLimit | None = None
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    nflog_retention: timedelta = DEFAULT_NFLOG_RETENTION

    def limit_for(self, receiver: str) -> RateLimit | None:
        return self.rate_limits.get(receiver, self.rate_limit)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> DispatchSettings:
        """From the config's ``alerting.dispatch`` section::

        escalation: {team-db: {name: db, steps: [{after: 0m, receiver: team-db}, {after: 15m, receiver: lead}]}}
        flapping: {window: 1h, start_changes: 4, stop_changes: 2}
        rate_limits: {default: {max_messages: 10, per: 5m}, receivers: {pager: {max_messages: 3, per: 1h}}}
        nflog_retention: 120h
        """
        if not raw:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError("dispatch: expected a mapping")
        unknown = set(raw) - {"escalation", "flapping", "rate_limits", "nflog_retention"}
        if unknown:
            raise ValueError(f"dispatch: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        default, per_receiver = parse_rate_limits(raw.get("rate_limits"))
        retention = DEFAULT_NFLOG_RETENTION
        if raw.get("nflog_retention") is not None:
            try:
                retention = timedelta(seconds=parse_prometheus_duration(str(raw["nflog_retention"])))
            except ValueError as exc:
                raise ValueError(f"dispatch.nflog_retention: {exc}") from None
        return cls(
            escalation=parse_policies(raw.get("escalation"), "dispatch.escalation"),
            flapping=FlapSettings.from_mapping(raw.get("flapping")),
            rate_limit=default,
            rate_limits=per_receiver,
            nflog_retention=retention,
        )


# ---- state ------------------------------------------------------------------------------------------


def _ts(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def _dt(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


@dataclass
class NflogEntry:
    """What a receiver was last told about a group (Alertmanager's ``nflogpb.Entry``)."""

    firing: list[str]
    resolved: list[str]
    ts: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"firing": self.firing, "resolved": self.resolved, "ts": self.ts.isoformat()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NflogEntry:
        return cls(list(d["firing"]), list(d["resolved"]), datetime.fromisoformat(d["ts"]))


@dataclass
class GroupState:
    """One aggregation group between ticks.

    ``next_flush`` is ``None`` while the group has no alerts (inactive: only its notification log,
    deferred messages or held flapping alerts keep the row). ``done`` holds resolved alerts already
    flushed (removed from the group, as Alertmanager deletes them). ``acked`` the acks in force at
    the previous tick (to notice one ending), ``notified`` when each firing alert was first sent to
    the group's receiver (escalation counts from there), ``escalation`` the open episode
    (``start``, last position sent), ``held`` flapping alerts held back, ``deferred`` rate-limited
    messages by receiver."""

    route_id: str
    receiver: str
    labels: dict[str, str]
    next_flush: datetime | None = None
    has_flushed: bool = False
    destroyed: bool = False
    done: list[str] = field(default_factory=list)
    acked: dict[str, dict[str, str]] = field(default_factory=dict)
    notified: dict[str, datetime] = field(default_factory=dict)
    escalation: dict[str, Any] | None = None
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    nflog: dict[str, NflogEntry] = field(default_factory=dict)
    deferred: dict[str, dict[str, Any]] = field(default_factory=dict)

    def deactivate(self) -> None:
        """No alerts left: forget timers and per-alert bookkeeping, keep what must outlive the group."""
        self.next_flush, self.has_flushed, self.destroyed = None, False, False
        self.done, self.acked, self.notified, self.escalation = [], {}, {}, None

    def empty(self) -> bool:
        return self.next_flush is None and not self.nflog and not self.deferred and not self.held

    def to_dict(self) -> dict[str, Any]:
        return {
            "route_id": self.route_id,
            "receiver": self.receiver,
            "labels": self.labels,
            "next_flush": _ts(self.next_flush),
            "has_flushed": self.has_flushed,
            "destroyed": self.destroyed,
            "done": sorted(self.done),
            "acked": self.acked,
            "notified": {k: v.isoformat() for k, v in self.notified.items()},
            "escalation": self.escalation,
            "held": self.held,
            "nflog": {r: e.to_dict() for r, e in self.nflog.items()},
            "deferred": self.deferred,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupState:
        return cls(
            route_id=d["route_id"],
            receiver=d["receiver"],
            labels=dict(d["labels"]),
            next_flush=_dt(d.get("next_flush")),
            has_flushed=bool(d.get("has_flushed")),
            destroyed=bool(d.get("destroyed")),
            done=list(d.get("done") or []),
            acked={k: dict(v) for k, v in (d.get("acked") or {}).items()},
            notified={k: datetime.fromisoformat(v) for k, v in (d.get("notified") or {}).items()},
            escalation=dict(d["escalation"]) if d.get("escalation") else None,
            held={k: dict(v) for k, v in (d.get("held") or {}).items()},
            nflog={r: NflogEntry.from_dict(e) for r, e in (d.get("nflog") or {}).items()},
            deferred={r: dict(n) for r, n in (d.get("deferred") or {}).items()},
        )


@dataclass
class DispatchState:
    """Everything the dispatcher remembers between ticks; JSON round-trips via to_dict/from_dict."""

    groups: dict[str, GroupState] = field(default_factory=dict)
    windows: dict[str, SendWindow] = field(default_factory=dict)
    flaps: dict[str, FlapState] = field(default_factory=dict)
    last_tick: datetime | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": {k: g.to_dict() for k, g in sorted(self.groups.items())},
            "windows": {k: w.to_list() for k, w in sorted(self.windows.items())},
            "flaps": {k: f.to_dict() for k, f in sorted(self.flaps.items())},
            "last_tick": _ts(self.last_tick),
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DispatchState:
        return cls(
            groups={k: GroupState.from_dict(g) for k, g in (d.get("groups") or {}).items()},
            windows={k: SendWindow.from_list(w) for k, w in (d.get("windows") or {}).items()},
            flaps={k: FlapState.from_dict(f) for k, f in (d.get("flaps") or {}).items()},
            last_tick=_dt(d.get("last_tick")),
            stats={str(k): int(v) for k, v in (d.get("stats") or {}).items()},
        )


# ---- the dispatcher ---------------------------------------------------------------------------------


SendResolved = bool | Mapping[str, bool] | Callable[[str], bool]


def _send_resolved_fn(sr: SendResolved) -> Callable[[str], bool]:
    if isinstance(sr, bool):
        return lambda _r: sr
    if isinstance(sr, Mapping):
        return lambda r: bool(sr.get(r, True))
    return sr


def _needs_update(
    entry: NflogEntry | None,
    firing: set[str],
    resolved: set[str],
    *,
    repeat: timedelta,
    send_resolved: bool,
    manual: set[str],
    unacked: set[str],
    t: datetime,
) -> Reason | None:
    """Alertmanager's ``DedupStage.needsUpdate``, plus acks (no repeat for acked alerts) and manual
    resolves (always worth telling)."""
    if entry is None:
        return "initial" if firing else None
    if not firing <= set(entry.firing):
        return "update" if entry.firing else "initial"
    if not firing:
        return "update" if entry.firing else None
    if (send_resolved and not resolved <= set(entry.resolved)) or not manual <= set(entry.resolved):
        return "update"
    if unacked and entry.ts + repeat < t:
        return "repeat"
    return None


class Dispatcher:
    """Turns each tick's alerts into notifications (see the module doc for the semantics)."""

    def __init__(self, routes: Router, settings: DispatchSettings | None = None) -> None:
        self.routes = routes
        self.settings = settings or DispatchSettings()

    def tick(
        self,
        alerts: Iterable[Alert],
        t: datetime,
        state: DispatchState | None = None,
        *,
        suppressed: Collection[str] = frozenset(),
        acks: Iterable[Ack] = (),
        resolves: Iterable[ManualResolve] = (),
        send_resolved: SendResolved = True,
        muted: Callable[[RouteMatchLike, datetime], bool] | None = None,
    ) -> tuple[list[Notification], DispatchState]:
        """One evaluation tick at ``t``: returns the notifications to deliver now and the new state.

        ``state`` is not modified (pass the returned one to the next tick). ``suppressed`` are
        fingerprints silenced or inhibited at ``t``; ``acks``/``resolves`` what people said (expired
        acks may be included, they are ignored); ``send_resolved`` per receiver (a bool, a mapping
        — receivers not in it default to True — or a function)."""
        t = utc(t, "t")
        st = DispatchState.from_dict(state.to_dict()) if state is not None else DispatchState()
        if st.last_tick is not None and t < st.last_tick:
            raise ValueError(f"t: {t.isoformat()} is before the previous tick {st.last_tick.isoformat()}")
        run = _Tick(self, st, t, set(suppressed), active_acks(acks, t), covering_resolves(resolves),
                    _send_resolved_fn(send_resolved), muted)  # fmt: skip
        out = run.go(alerts)
        st.last_tick = t
        return out, st


class _Tick:
    """The work of one tick (kept in one object so the steps share their inputs without globals)."""

    def __init__(
        self,
        d: Dispatcher,
        st: DispatchState,
        t: datetime,
        suppressed: set[str],
        acks: dict[str, Ack],
        resolves: dict[str, ManualResolve],
        send_resolved: Callable[[str], bool],
        muted: Callable[[RouteMatchLike, datetime], bool] | None,
    ) -> None:
        self.d, self.s, self.st, self.t = d, d.settings, st, t
        self.suppressed, self.acks, self.resolves = suppressed, acks, resolves
        self.send_resolved, self.muted_fn = send_resolved, muted
        self.stats = {"groups": 0, "suppressed": 0, "held": 0, "deferred": 0, "sent": 0}

    # -- inputs
    def _manual(self, alerts: Iterable[Alert]) -> tuple[dict[str, Alert], dict[str, ManualResolve]]:
        """Alerts by fingerprint, with manually resolved ones turned resolved (at the resolve time)."""
        by_fp: dict[str, Alert] = {}
        manual: dict[str, ManualResolve] = {}
        for a in alerts:
            if not isinstance(a, Alert):
                raise TypeError(f"alerts: expected Alert, got {type(a).__name__}")
            fp = a.fingerprint
            r = self.resolves.get(fp)
            if r is not None and r.covers(a):
                ends = a.ends_at if a.resolved and a.ends_at and utc(a.ends_at) < r.at else r.at
                a = replace(a, status="resolved", ends_at=ends)
                manual[fp] = r
            by_fp[fp] = a
        return by_fp, manual

    def _flapping(self, by_fp: Mapping[str, Alert]) -> tuple[set[str], dict[str, FlapEvent]]:
        fs = self.s.flapping
        if not fs.enabled:
            self.st.flaps = {}
            return set(), {}
        events: dict[str, FlapEvent] = {}
        for fp in sorted(set(by_fp) | set(self.st.flaps)):
            a = by_fp.get(fp)
            new, ev = observe(self.st.flaps.get(fp), a.status if a else None, self.t, fs)
            if new is None:
                self.st.flaps.pop(fp, None)
            else:
                self.st.flaps[fp] = new
            if ev:
                events[fp] = ev
        return {fp for fp, f in self.st.flaps.items() if f.flapping}, events

    # -- the tick
    def go(self, alerts: Iterable[Alert]) -> list[Notification]:
        by_fp, manual = self._manual(alerts)
        flapping, flap_events = self._flapping(by_fp)
        members: dict[str, dict[str, Alert]] = {}
        matches: dict[str, RouteMatchLike] = {}
        glabels: dict[str, dict[str, str]] = {}
        for fp, a in by_fp.items():
            for m in self.d.routes.match(a.labels):
                gl = group_labels(a.labels, m)
                gk = group_key(m, gl)
                members.setdefault(gk, {})[fp] = a
                matches[gk], glabels[gk] = m, gl
        out: list[Notification] = []
        for gk in sorted(set(self.st.groups) | set(members)):
            g = self.st.groups.get(gk)
            if gk not in members:
                if g is not None:
                    g.deactivate()
                    out += self._flap_notices(gk, g, {}, flapping, flap_events, False)
                continue
            m = matches[gk]
            if g is None:
                g = self.st.groups[gk] = GroupState(m.route_id, m.receiver, glabels[gk])
            g.route_id, g.receiver = m.route_id, m.receiver
            out += self._group(gk, g, m, members[gk], manual, flapping, flap_events)
        sent = self._rate_limit(out)
        for gk in [k for k, g in self.st.groups.items() if g.empty()]:
            del self.st.groups[gk]
        self.stats["groups"] = sum(1 for g in self.st.groups.values() if g.next_flush is not None)
        self.stats["sent"] = len(sent)
        self.st.stats = self.stats
        return sent

    def _group(
        self,
        gk: str,
        g: GroupState,
        m: RouteMatchLike,
        cur: dict[str, Alert],
        manual: Mapping[str, ManualResolve],
        flapping: set[str],
        flap_events: Mapping[str, FlapEvent],
    ) -> list[Notification]:
        t, out = self.t, []
        gw, gi = timedelta(seconds=m.group_wait_s), timedelta(seconds=m.group_interval_s)
        # Resolved alerts already flushed stay out until they fire again (a new episode).
        g.done = [fp for fp in g.done if fp in cur and cur[fp].resolved]
        live = {fp: a for fp, a in cur.items() if fp not in g.done}
        muted = bool(self.muted_fn and self.muted_fn(m, t))
        out += self._flap_notices(gk, g, cur, flapping, flap_events, muted)
        if not live:
            g.escalation = None
            return out
        if g.next_flush is None or g.destroyed:
            g.next_flush, g.has_flushed, g.destroyed = t + gw, False, False
        if not g.has_flushed and any(a.starts_at and utc(a.starts_at) + gw < t for a in live.values()):
            g.next_flush = min(g.next_flush, t)

        firing_live = {fp for fp, a in live.items() if not a.resolved}
        acked_now = {fp: self.acks[fp] for fp in firing_live if fp in self.acks and self.acks[fp].covers(live[fp], t)}
        ended_notes = []
        for fp, info in sorted(g.acked.items()):
            if fp in firing_live and fp not in acked_now and fp not in flapping and fp not in self.suppressed:
                expired = datetime.fromisoformat(info["expires_at"]) <= t
                what = "ack expired" if expired else "ack removed"
                ended_notes.append(f"{what}: {live[fp].name} {fp} (acked by {info['by']}) is still firing")
        g.acked = {fp: {"by": a.by, "expires_at": a.expires_at.isoformat()} for fp, a in acked_now.items()}
        g.notified = {fp: ts for fp, ts in g.notified.items() if fp in firing_live}

        due = t >= g.next_flush
        if due or ended_notes:
            if due:
                nxt = g.next_flush + gi
                g.next_flush = nxt if nxt > t else t + gi
                g.has_flushed = True
            held = {fp for fp in live if fp in flapping}
            content = {fp: a for fp, a in live.items() if fp not in held}
            visible = {fp: a for fp, a in content.items() if fp not in self.suppressed}
            n_sup = len(content) - len(visible)
            self.stats["suppressed"] += n_sup
            self.stats["held"] += len(held)
            if visible and not muted:
                n = self._flush(gk, g, m, visible, manual, set(acked_now), n_sup, len(held), ended_notes)
                if n is not None:
                    out.append(n)
            if due:
                # Alertmanager deletes the resolved alerts a flush saw (muted or suppressed ones too).
                g.done = sorted(set(g.done) | {fp for fp, a in content.items() if a.resolved})
                if all(fp in g.done for fp in live):
                    g.destroyed = True
        if not muted:
            out += self._escalate(gk, g, live, firing_live, set(acked_now), flapping)
        return out

    def _flush(
        self,
        gk: str,
        g: GroupState,
        m: RouteMatchLike,
        visible: dict[str, Alert],
        manual: Mapping[str, ManualResolve],
        acked: set[str],
        n_sup: int,
        n_held: int,
        ended_notes: list[str],
    ) -> Notification | None:
        t, recv = self.t, m.receiver
        firing = {fp for fp, a in visible.items() if not a.resolved}
        resolved = set(visible) - firing
        manual_fps = resolved & set(manual)
        sr = self.send_resolved(recv)
        entry = g.nflog.get(recv)
        reason = _needs_update(
            entry,
            firing,
            resolved,
            repeat=timedelta(seconds=m.repeat_interval_s),
            send_resolved=sr,
            manual=manual_fps,
            unacked=firing - acked,
            t=t,
        )
        if reason is None and ended_notes:
            reason = "repeat"
        if reason is None:
            return None
        g.nflog[recv] = NflogEntry(sorted(firing), sorted(resolved), t)
        for fp in firing:
            g.notified.setdefault(fp, t)
        body = [a for fp, a in visible.items() if fp in firing or sr or fp in manual_fps]
        if not any(not a.resolved for a in body) and not sr and not manual_fps:
            return None  # all resolved and the receiver does not want resolved messages (logged above)
        notes = list(ended_notes)
        for fp in sorted(manual_fps):
            r = manual[fp]
            notes.append(f"resolved by hand: {visible[fp].name} {fp} by {r.by} at {r.at.isoformat()}: {r.reason}")
        for fp in sorted(acked & firing):
            a = self.acks[fp]
            extra = f" ({a.comment})" if a.comment else ""
            notes.append(f"acked: {visible[fp].name} {fp} by {a.by} until {a.expires_at.isoformat()}{extra}")
        if n_sup:
            notes.append(f"{n_sup} alert(s) suppressed (silenced or inhibited)")
        if n_held:
            notes.append(f"{n_held} alert(s) held (flapping)")
        return Notification(recv, gk, dict(g.labels), sorted_alerts(body), reason, notes, t)

    def _escalate(
        self,
        gk: str,
        g: GroupState,
        live: dict[str, Alert],
        firing_live: set[str],
        acked: set[str],
        flapping: set[str],
    ) -> list[Notification]:
        policy = self.s.escalation.get(g.receiver)
        if policy is None:
            return []
        unacked = {
            fp
            for fp in firing_live
            if fp not in acked and fp not in flapping and fp not in self.suppressed and fp in g.notified
        }
        if not unacked:
            g.escalation = None
            return []
        if g.escalation is None:
            first = policy.steps[0]
            covered = first.receiver == g.receiver and first.after == timedelta(0)
            start = min(g.notified[fp] for fp in unacked)
            g.escalation = {"start": start.isoformat(), "pos": 0 if covered else -1}
        start = datetime.fromisoformat(g.escalation["start"])
        steps, pos = due_steps(policy, start, int(g.escalation["pos"]), self.t)
        g.escalation["pos"] = pos
        alerts = sorted_alerts(live[fp] for fp in unacked)
        waited = format_duration(self.t - start)
        return [
            Notification(
                step.receiver,
                gk,
                dict(g.labels),
                alerts,
                "escalation",
                [f"escalation: step {i + 1}/{len(policy.steps)} of policy {policy.name}, unacknowledged for {waited}"],
                self.t,
            )
            for i, step in steps
        ]

    def _flap_notices(
        self,
        gk: str,
        g: GroupState,
        cur: Mapping[str, Alert],
        flapping: set[str],
        events: Mapping[str, FlapEvent],
        muted: bool,
    ) -> list[Notification]:
        """One ``flapping`` message per group for alerts that started flapping, one for those that
        settled (the latter also for a group with no alerts left: the receiver heard "held")."""
        started = sorted(fp for fp in cur if events.get(fp) == "started")
        for fp in cur:
            if fp in flapping:
                g.held[fp] = cur[fp].to_dict()
        stopped = sorted(fp for fp in g.held if fp not in flapping)
        settled = {fp: cur.get(fp) or Alert.from_dict(g.held[fp]) for fp in stopped}
        for fp in stopped:
            del g.held[fp]
        if muted or not g.receiver:
            return []
        out: list[Notification] = []
        window = format_duration(self.s.flapping.window)
        quiet = [fp for fp in started if fp not in self.suppressed]
        if quiet:
            notes = [
                f"flapping: held — {cur[fp].name} {fp} changed state {len(self.st.flaps[fp].changes)} times in "
                f"{window}; its notifications are held until it settles"
                for fp in quiet
            ]
            alerts = sorted_alerts(cur[fp] for fp in quiet)
            out.append(Notification(g.receiver, gk, dict(g.labels), alerts, "flapping", notes, self.t))
        calm = [fp for fp in stopped if fp not in self.suppressed]
        if calm:
            notes = [f"flapping: settled — {settled[fp].name} {fp} is {settled[fp].status}; notifications resume"
                     for fp in calm]  # fmt: skip
            alerts = sorted_alerts(settled[fp] for fp in calm)
            out.append(Notification(g.receiver, gk, dict(g.labels), alerts, "flapping", notes, self.t))
        return out

    # -- rate limits
    def _rate_limit(self, pending: list[Notification]) -> list[Notification]:
        """Send what each receiver's limit allows, deferring the rest per (group, receiver), merged.

        Oldest deferral first, so a busy receiver cannot starve one group's message behind new ones."""
        t = self.t
        queues: dict[str, dict[str, tuple[datetime, Notification]]] = {}
        for gk, g in sorted(self.st.groups.items()):
            for recv, nd in sorted(g.deferred.items()):
                since = datetime.fromisoformat(nd["since"])
                queues.setdefault(recv, {})[gk] = (since, Notification.from_dict(nd["notification"]))
            g.deferred = {}
        for n in pending:
            q = queues.setdefault(n.receiver, {})
            q[n.group_key] = (q[n.group_key][0], q[n.group_key][1].merged_into(n)) if n.group_key in q else (t, n)
        sent: list[Notification] = []
        for recv in sorted(queues):
            limit = self.s.limit_for(recv)
            items = sorted(queues[recv].items(), key=lambda kv: kv[1][0])
            if limit is None:
                sent += [replace(n, t=t) for _, (_, n) in items]
                continue
            window = self.st.windows.setdefault(recv, SendWindow([]))
            allowed = window.allowance(t, limit)
            for gk, (since, n) in items:
                if allowed > 0:
                    window.record(t)
                    allowed -= 1
                    sent.append(replace(n, t=t))
                    continue
                per = format_duration(limit.per)
                note = f"rate limited: receiver {recv} allows {limit.max_messages} per {per}; deferred"
                if note not in n.notes:
                    n = replace(n, notes=[*n.notes, note])
                # (a group whose row went away while its message waited gets a bare row for it)
                holder = self.st.groups.setdefault(gk, GroupState("", "", dict(n.group_labels)))
                holder.deferred[recv] = {"since": since.isoformat(), "notification": n.to_dict()}
                self.stats["deferred"] += 1
        for recv in [r for r, w in self.st.windows.items() if not w.sent]:
            del self.st.windows[recv]
        for g in self.st.groups.values():
            g.nflog = {r: e for r, e in g.nflog.items() if t - e.ts <= self.s.nflog_retention}
        return sent


# ---- persistence ------------------------------------------------------------------------------------

register_schema(
    "alert_dispatch",
    """CREATE TABLE IF NOT EXISTS alert_dispatch (
        kind VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        state JSON NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (kind, key)
    )""",
)


class DispatchStore:
    """The dispatcher's state in the state DB: one row per group key (kind ``group``), plus rows for
    per-receiver send windows (``window``), per-alert flap history (``flap``) and the tick (``meta``).

    Why rows rather than one blob: a group's row changes only when the group does, so a tick with
    thousands of quiet groups rewrites only the few that moved, in one short transaction."""

    def __init__(self, state: State) -> None:
        self.state = state

    @staticmethod
    def _rows(s: DispatchState) -> dict[tuple[str, str], str]:
        d = s.to_dict()
        rows = {("group", k): json.dumps(v, sort_keys=True) for k, v in d["groups"].items()}
        rows |= {("window", k): json.dumps(v) for k, v in d["windows"].items()}
        rows |= {("flap", k): json.dumps(v, sort_keys=True) for k, v in d["flaps"].items()}
        rows[("meta", "tick")] = json.dumps({"last_tick": d["last_tick"], "stats": d["stats"]}, sort_keys=True)
        return rows

    def load(self) -> DispatchState:
        with self.state.transaction() as con:
            rows = con.execute("SELECT kind, key, state FROM alert_dispatch").fetchall()
        d: dict[str, Any] = {"groups": {}, "windows": {}, "flaps": {}}
        section = {"group": "groups", "window": "windows", "flap": "flaps"}
        for kind, key, raw in rows:
            v = json.loads(raw)
            if kind == "meta":
                d.update(v)
            elif kind in section:
                d[section[kind]][key] = v
        return DispatchState.from_dict(d)

    def save(self, s: DispatchState, *, now: datetime | None = None) -> int:
        """Write ``s``: upsert rows that changed, delete rows that are gone. Returns rows written."""
        new = self._rows(s)
        stamp = now or s.last_tick or datetime.now().astimezone()
        with self.state.transaction() as con:
            old = {
                (k, key): raw for k, key, raw in con.execute("SELECT kind, key, state FROM alert_dispatch").fetchall()
            }
            gone = [k for k in old if k not in new]
            changed = [(k, key, raw) for (k, key), raw in new.items() if old.get((k, key)) != raw]
            # Bulk through Arrow: row-by-row executemany costs ~4 ms a row in DuckDB (40 s for 10k alerts).
            if gone:
                con.register("_gone", pa.table({"kind": [k for k, _ in gone], "key": [key for _, key in gone]}))
                con.execute("DELETE FROM alert_dispatch WHERE (kind, key) IN (SELECT (kind, key) FROM _gone)")
                con.unregister("_gone")
            if changed:
                cols = list(zip(*changed, strict=True))
                con.register("_chg", pa.table({"kind": cols[0], "key": cols[1], "state": cols[2]}))
                con.execute(
                    "INSERT OR REPLACE INTO alert_dispatch SELECT kind, key, state::JSON, ?::TIMESTAMPTZ FROM _chg",
                    [stamp],
                )
                con.unregister("_chg")
        return len(changed) + len(gone)

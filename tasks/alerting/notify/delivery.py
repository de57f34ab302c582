"""Delivery of group notifications through Apprise, with an outbox: at-least-once, recorded,
retried, never lost.

The promise (Alertmanager's, made explicit): a send is recorded as *intended* before it goes out
and as *done* after, so only a crash between the two can repeat it — once, marked as a possible
duplicate. The steps, in short state-DB transactions (``tasks.state``); enqueueing and listing
what is due only write intentions, so the alert tick runs them inside its one batched transaction
(``State.batch``), while every claim commits in a transaction of its own before its send:

1. :func:`enqueue` writes the intended send to the outbox (``pending``). It is idempotent: the
   same notification for the same group and receiver (same content hash) enqueued again within
   ``dedupe_window_s`` of the first (a re-run of the same tick) returns the existing entry.
2. :func:`deliver_due` takes due entries (``pending``, or ``failed`` whose retry time has come),
   marks each ``sending`` with its attempt number and commits **before** the network call, sends
   through Apprise, then marks it ``sent``, or ``failed`` with the error and the next attempt time
   (exponential backoff, deterministic, capped), or ``dead`` after ``max_retries`` retries. Dead
   entries stay in the outbox and are listed; nothing is dropped silently.
3. A claim names its holder (host, pid, process start time, a token: ``tasks.state.ClaimOwner``)
   and carries a lease (``lease_until``, wall-clock time) that the holder renews from a heartbeat
   thread while it works — a tick with many slow receivers sends for minutes. An entry found in
   ``sending`` at the start of a run is taken over only when its lease has run out *and* its
   holder is gone (on the same host: its process no longer exists; on another host the lease
   alone decides). It is then sent again once, flagged ``possible_duplicate`` — the message says
   so. A live holder's claim is never taken over, however long its send takes.

Where outcomes are recorded, and why two places: every step appends a row to the state DB's
``alert_notifications`` table *in the same transaction* as the outbox change, so the history can
never disagree with the outbox (the lake cannot share that transaction). When a lake is given the
same rows are appended to the lake's ``notifications`` table (DESIGN.md's append-only table) for
reports and retention; that write is best effort after the state commit, and
:func:`export_to_lake` can replay it, since (id, attempt, status) identifies a row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import apprise
import polars as pl
import pyarrow as pa

from tasks.alerting.model import Alert
from tasks.alerting.notify.notify_templates import (
    Notification,
    NotificationLike,
    NotifyTemplateError,
    Rendered,
    as_notification,
    render,
)
from tasks.alerting.notify.receivers import Receiver, redact_url
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.lake.write import write_partitioned
from tasks.state import ClaimOwner, Heartbeat, State, claim_still_held, register_schema

__all__ = [
    "DeliveryError",
    "DeliveryResult",
    "DueEntry",
    "SendOutcome",
    "apprise_send",
    "build_apprise",
    "content_hash",
    "deliver_due",
    "enqueue",
    "enqueue_many",
    "export_to_lake",
    "list_outbox",
    "list_records",
    "notify_type_for",
    "take_due",
    "test_notify",
]

log = logging.getLogger(__name__)

Status = Literal["pending", "sending", "sent", "failed", "dead"]
OUTBOX = "alert_outbox"
RECORDS = "alert_notifications"

register_schema(
    OUTBOX,
    f"""CREATE TABLE IF NOT EXISTS {OUTBOX} (
        id VARCHAR PRIMARY KEY,
        receiver VARCHAR NOT NULL,
        group_key VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        notification JSON NOT NULL,
        status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        possible_duplicate BOOLEAN NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        next_attempt_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        sent_at TIMESTAMPTZ,
        last_error VARCHAR
    )""",
)
register_schema(
    RECORDS,
    f"""CREATE TABLE IF NOT EXISTS {RECORDS} (
        notification_id VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        receiver VARCHAR NOT NULL,
        group_key VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        possible_duplicate BOOLEAN NOT NULL,
        firing INTEGER NOT NULL,
        resolved INTEGER NOT NULL,
        fingerprints VARCHAR NOT NULL,
        title VARCHAR NOT NULL,
        error VARCHAR,
        next_attempt_at TIMESTAMPTZ
    )""",
)

# Claims, added after the outbox first shipped: existing state DBs gain the columns in place.
register_schema(
    "alert_outbox_claims",
    f"ALTER TABLE {OUTBOX} ADD COLUMN IF NOT EXISTS claim_token VARCHAR;"
    f" ALTER TABLE {OUTBOX} ADD COLUMN IF NOT EXISTS claim_owner VARCHAR;"
    f" ALTER TABLE {OUTBOX} ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ",
)

#: How long a claim holds without renewal (``alerting.delivery_lease``); renewed every third of it.
DEFAULT_LEASE_S = 60.0
Clock = Callable[[], datetime]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


_RECORD_COLS = (
    "notification_id",
    "attempt",
    "status",
    "ts",
    "receiver",
    "group_key",
    "reason",
    "possible_duplicate",
    "firing",
    "resolved",
    "fingerprints",
    "title",
    "error",
    "next_attempt_at",
)
_LAKE_HASH_COLS = ("notification_id", "attempt", "status", "ts", "receiver", "group_key")
_FORMATS = {"markdown": apprise.NotifyFormat.MARKDOWN, "html": apprise.NotifyFormat.HTML, "text": "text"}
#: Used for entries whose receiver is no longer configured, so they still retry and end ``dead``.
_FALLBACK_POLICY = Receiver(name="(unconfigured)", urls=("json://localhost",))


class DeliveryError(RuntimeError):
    """A receiver Apprise cannot be set up for (bad config file, no URL matching the tags)."""


@dataclass(frozen=True)
class SendOutcome:
    """What one send through a channel did: ``ok`` only if every service reported success."""

    ok: bool
    error: str | None = None
    services: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one delivery attempt (or of a ``test_notify``), as shown by the CLI."""

    id: str
    receiver: str
    group_key: str
    reason: str
    status: Status
    attempt: int
    possible_duplicate: bool = False
    title: str = ""
    error: str | None = None
    next_attempt_at: datetime | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "sent"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["next_attempt_at"] = self.next_attempt_at.isoformat() if self.next_attempt_at else None
        return d


Sender = Callable[[Receiver, Rendered, str], SendOutcome]


# ---- helpers ---------------------------------------------------------------------------------------


def _aware(now: datetime, name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{name}: expected a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC)


def _utc(v: Any) -> Any:
    """DuckDB hands TIMESTAMPTZ back in the session's local zone; we show and compare UTC."""
    return v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is not None else v


def _canon_alert(a: Alert) -> dict[str, Any]:
    d = a.to_dict()
    d.pop("value", None)  # the last value drifts between ticks; it is not what makes a message new
    return d


def content_hash(n: Notification) -> str:
    """16 hex digits over what makes a notification a distinct message: receiver, group, reason,
    group labels, notes and each alert (labels, annotations, status, start/end)."""
    canon = {
        "receiver": n.receiver,
        "group_key": n.group_key,
        "reason": n.reason,
        "group_labels": dict(sorted(n.group_labels.items())),
        "notes": list(n.notes),
        "alerts": sorted((_canon_alert(a) for a in n.alerts), key=lambda d: (d["fingerprint"], d["status"])),
    }
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def notify_type_for(n: Notification) -> str:
    """Apprise's message type (colour/icon in most channels): ``success`` when everything has
    resolved, ``warning``/``info`` when every firing alert has that ``severity``, else ``failure``."""
    firing = n.firing
    if not firing:
        return apprise.NotifyType.SUCCESS
    sev = {a.labels.get("severity", "").lower() for a in firing}
    if sev == {"info"}:
        return apprise.NotifyType.INFO
    if sev <= {"warning", "info"}:
        return apprise.NotifyType.WARNING
    return apprise.NotifyType.FAILURE


def _record(
    con: Any,
    *,
    entry_id: str,
    attempt: int,
    status: Status,
    ts: datetime,
    n: Notification,
    possible_duplicate: bool,
    title: str,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> dict[str, Any]:
    row = {
        "notification_id": entry_id,
        "attempt": attempt,
        "status": status,
        "ts": ts,
        "receiver": n.receiver,
        "group_key": n.group_key,
        "reason": n.reason,
        "possible_duplicate": possible_duplicate,
        "firing": len(n.firing),
        "resolved": len(n.resolved),
        "fingerprints": json.dumps(sorted({a.fingerprint for a in n.alerts})),
        "title": title,
        "error": error,
        "next_attempt_at": next_attempt_at,
    }
    con.execute(
        f"INSERT INTO {RECORDS} ({', '.join(_RECORD_COLS)}) VALUES ({', '.join('?' for _ in _RECORD_COLS)})",
        [row[c] for c in _RECORD_COLS],
    )
    return row


# ---- enqueue ---------------------------------------------------------------------------------------


def _prepare(n: Notification, receiver: Receiver) -> Notification | None:
    if n.receiver != receiver.name:
        raise ValueError(f"notification.receiver: {n.receiver!r} is not the receiver given ({receiver.name!r})")
    if receiver.send_resolved:
        return n
    firing = tuple(a for a in n.alerts if not a.resolved)
    if not firing:
        return None
    return replace(n, alerts=firing)


def enqueue_many(
    items: Sequence[tuple[NotificationLike | Mapping[str, Any] | Notification, Receiver]],
    now: datetime,
    *,
    state: State,
    dedupe_window_s: float = 60.0,
) -> list[str | None]:
    """:func:`enqueue` for a whole tick's notifications in one state-DB transaction (each
    transaction costs tens of milliseconds here, so a tick with many groups should use this).
    Returns one id (or ``None``) per item, in order."""
    now = _aware(now)
    prepared: list[Notification | None] = []
    for i, (notification, receiver) in enumerate(items):
        try:
            prepared.append(_prepare(as_notification(notification), receiver))
        except ValueError as e:
            raise ValueError(f"notifications[{i}]: {e}") from None
    lo, hi = now - timedelta(seconds=dedupe_window_s), now + timedelta(seconds=dedupe_window_s)
    out: list[str | None] = []
    with state.transaction() as con:
        for n in prepared:
            if n is None:
                out.append(None)
                continue
            chash = content_hash(n)
            found = con.execute(
                f"SELECT id FROM {OUTBOX} WHERE group_key = ? AND receiver = ? AND content_hash = ? "
                "AND created_at > ? AND created_at < ? ORDER BY created_at LIMIT 1",
                [n.group_key, n.receiver, chash, lo, hi],
            ).fetchall()
            if found:
                out.append(str(found[0][0]))
                continue
            entry_id = hashlib.sha256(f"{chash}\x00{now.isoformat()}".encode()).hexdigest()[:16]
            con.execute(
                f"INSERT INTO {OUTBOX} (id, receiver, group_key, content_hash, reason, notification, status, "
                "attempts, possible_duplicate, created_at, next_attempt_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, false, ?, ?, ?)",
                [entry_id, n.receiver, n.group_key, chash, n.reason, json.dumps(n.to_dict()), now, now, now],
            )
            _record(
                con, entry_id=entry_id, attempt=0, status="pending", ts=now, n=n, possible_duplicate=False, title=""
            )
            out.append(entry_id)
    return out


def enqueue(
    notification: NotificationLike | Mapping[str, Any] | Notification,
    receiver: Receiver,
    now: datetime,
    *,
    state: State,
    dedupe_window_s: float = 60.0,
) -> str | None:
    """Record the intended send of ``notification`` to ``receiver``; returns the outbox id.

    Idempotent per (group key, receiver, content hash) within ``dedupe_window_s`` of ``now`` (one
    tick by default): re-running a tick returns the first entry's id instead of queueing twice,
    while the same content sent again later on purpose (a ``repeat`` after ``repeat_interval``)
    is a new entry. Returns ``None`` — nothing to send — when the receiver has
    ``send_resolved: false`` and every alert has resolved (Alertmanager drops resolved alerts for
    such receivers, and sends nothing when none are left)."""
    n = as_notification(notification)
    return enqueue_many([(n, receiver)], now, state=state, dedupe_window_s=dedupe_window_s)[0]


# ---- sending through Apprise -----------------------------------------------------------------------


def _tune(service: Any, timeout_s: float) -> None:
    """No client-side throttling (mail/ntfy plugins otherwise sleep 5.5 s between sends: our rate
    is one message per group per tick already) and short socket timeouts, so one dead endpoint
    cannot hold up a whole tick."""
    service.request_rate_per_sec = 0
    service.socket_connect_timeout = min(float(getattr(service, "socket_connect_timeout", timeout_s)), timeout_s)
    service.socket_read_timeout = min(float(getattr(service, "socket_read_timeout", timeout_s)), timeout_s)


def build_apprise(receiver: Receiver) -> apprise.Apprise:
    """An ``Apprise`` object holding exactly the services of ``receiver`` (its URLs, or the URLs of
    its config file that carry one of its tags), tuned by :func:`_tune`.

    Persistent storage is kept in memory: a notification flow must not write Apprise caches into
    the user's home directory."""
    asset = apprise.AppriseAsset(storage_mode="memory")
    ap = apprise.Apprise(asset=asset)
    if receiver.urls:
        for i, url in enumerate(receiver.urls):
            inst = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
            if inst is None:
                raise DeliveryError(f"receiver {receiver.name!r}: apprise[{i}]: cannot load {redact_url(url)}")
            ap.add(inst)
    else:
        cfg = apprise.AppriseConfig(asset=asset)
        if not receiver.config_path or not cfg.add(receiver.config_path):
            raise DeliveryError(f"receiver {receiver.name!r}: apprise_config: cannot read {receiver.config_path}")
        loaded = apprise.Apprise(asset=asset)
        loaded.add(cfg)
        tags: Any = list(receiver.tags) if receiver.tags else apprise.common.MATCH_ALL_TAG
        services = list(loaded.find(tag=tags))
        if not services:
            what = f"with tag {' or '.join(receiver.tags)}" if receiver.tags else "at all"
            raise DeliveryError(f"receiver {receiver.name!r}: apprise_config: no URL {what} in {receiver.config_path}")
        for s in services:
            ap.add(s)
    for s in ap:
        _tune(s, receiver.timeout_s)
    return ap


def _detail(entries: Any) -> str:
    """The useful lines of Apprise's captured log: warnings and errors, plus the exception text
    plugins log at debug level (the SMTP server's refusal, the socket error)."""
    keep: list[str] = []
    for e in entries:
        msg = str(getattr(e, "message", "") or "")
        level = str(getattr(e, "level", "")).upper()
        if msg and (level in ("WARNING", "ERROR", "CRITICAL") or "exception" in msg.lower()) and msg not in keep:
            keep.append(msg)
    return "; ".join(keep[-3:]) or "no detail"


def apprise_send(receiver: Receiver, message: Rendered, notify_type: str) -> SendOutcome:
    """Send one message through ``receiver``'s Apprise services.

    Success only when Apprise reports SUCCESS for the call *and* for every service it loaded
    (``PARTIAL`` — some channels got it, some did not — is a failure: the entry is retried, which
    may repeat it on the channels that worked; at-least-once, never at-most-once). The error text
    is Apprise's own per-service log lines, scrubbed of the receiver's secrets."""
    start = time.monotonic()
    try:
        ap = build_apprise(receiver)
    except DeliveryError as e:
        return SendOutcome(False, receiver.redact(str(e)), 0, time.monotonic() - start)
    services = len(ap)
    result = ap.notify(
        body=message.body,
        title=message.title,
        notify_type=notify_type,
        body_format=_FORMATS[message.format],
        timeout=receiver.timeout_s * max(1, services) + 1.0,
        # DEBUG so the plugin's "Socket Exception: 554 …" detail is captured; _detail keeps only
        # warnings and exception lines of it.
        log_level=logging.DEBUG,
    )
    elapsed = time.monotonic() - start
    per = list(result.results)
    ok = result.status == apprise.AppriseResultStatus.SUCCESS and len(per) == services and all(per)
    if ok:
        return SendOutcome(True, None, services, elapsed)
    problems: list[str] = []
    for r in per:
        if not r:
            problems.append(f"{r.name} {r.status.name.lower()}: {_detail(r.logs())}")
    if not problems:
        problems.append(f"apprise {result.status.name.lower()}: {_detail(result.logs())}")
    return SendOutcome(False, receiver.redact(" | ".join(problems)), services, elapsed)


# ---- deliver ---------------------------------------------------------------------------------------


def _load(raw: str) -> Notification:
    return as_notification(json.loads(raw))


def _recover(con: Any, now: datetime, lease_s: float, clock: Clock) -> None:
    """Entries left in ``sending`` by a run that died between send and record become due now,
    once, as possible duplicates: those whose lease has run out and whose holder is gone (see the
    module docstring). Entries claimed before claims had owners expire ``lease_s`` after their claim."""
    wall = clock()
    rows = con.execute(
        f"SELECT id, claim_token, claim_owner, lease_until, updated_at FROM {OUTBOX} WHERE status = 'sending'"
    ).fetchall()
    for entry_id, token, owner_json, lease_until, updated_at in rows:
        expired = lease_until <= wall if lease_until is not None else updated_at <= now - timedelta(seconds=lease_s)
        why = claim_still_held(expired, owner_json)
        if why is not None:
            if expired:
                log.warning("notification %s: %s: not taken over", entry_id, why)
            continue
        con.execute(
            f"UPDATE {OUTBOX} SET status = 'failed', possible_duplicate = true, next_attempt_at = ?, "
            "last_error = 'interrupted after the send was started: re-sent as a possible duplicate' "
            "WHERE id = ? AND status = 'sending' AND claim_token IS NOT DISTINCT FROM ?",
            [now, entry_id, token],
        )


@dataclass
class _Finish:
    """An attempt's outcome, written in the next transaction (together with the next claim)."""

    entry_id: str
    n: Notification
    attempt: int
    status: Status
    dup: bool
    title: str
    error: str | None
    next_at: datetime | None
    #: the claim's token; ``None`` for an attempt that failed before any send (nothing was claimed)
    token: str | None


def _write_finish(con: Any, f: _Finish, now: datetime) -> dict[str, Any]:
    """The attempt's outcome, into the outbox only while this run still holds the claim (a run
    taken over — its lease ran out, on another host — must not overwrite its successor's state)
    or, for an attempt that sent nothing, while no other run has made an attempt since; into the
    records always, since the attempt did happen."""
    params: list[Any]
    if f.token is not None:
        guard, params = "claim_token = ?", [f.token]
    else:
        guard, params = "status IN ('pending', 'failed') AND attempts = ?", [f.attempt - 1]
    mine = con.execute(
        f"UPDATE {OUTBOX} SET status = ?, attempts = ?, updated_at = ?, next_attempt_at = ?, last_error = ?, "
        f"lease_until = NULL, sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ? AND {guard} "
        "RETURNING id",
        [f.status, f.attempt, now, f.next_at, f.error, f.status, now, f.entry_id, *params],
    ).fetchall()
    if not mine:
        log.warning("notification %s: another run took the claim over while this one sent (%s)", f.entry_id, f.status)
    return _record(
        con,
        entry_id=f.entry_id,
        attempt=f.attempt,
        status=f.status,
        ts=now,
        n=f.n,
        possible_duplicate=f.dup,
        title=f.title,
        error=f.error,
        next_attempt_at=f.next_at,
    )


@dataclass(frozen=True)
class DueEntry:
    """An outbox entry due for a send attempt, as :func:`take_due` lists it."""

    id: str
    receiver: str
    notification: str
    attempts: int
    possible_duplicate: bool


def take_due(
    state: State,
    now: datetime,
    *,
    limit: int = 500,
    lease_s: float = DEFAULT_LEASE_S,
    clock: Clock = _wall_clock,
) -> list[DueEntry]:
    """Recover entries a dead run left in ``sending`` and list what is due at ``now`` (oldest
    first). Only reads and the recovery write, so it may run inside a :meth:`State.batch` (the
    alert tick lists due entries in the transaction that enqueued them); the sends are claimed
    one by one later, by :func:`deliver_due`, which skips any another process claimed meanwhile.
    ``clock``: the wall clock leases are judged by (``now`` is the tick's time, which may be far
    behind it once a tick has been sending for a while)."""
    now = _aware(now)
    with state.transaction() as con:
        _recover(con, now, lease_s, clock)
        rows = con.execute(
            f"SELECT id, receiver, notification, attempts, possible_duplicate FROM {OUTBOX} "
            "WHERE status IN ('pending', 'failed') AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?",
            [now, limit],
        ).fetchall()
    return [DueEntry(str(i), str(r), str(raw), int(a), bool(d)) for i, r, raw, a, d in rows]


def deliver_due(
    now: datetime,
    receivers: Mapping[str, Receiver],
    send: Sender = apprise_send,
    *,
    state: State,
    lake: Lake | None = None,
    limit: int = 500,
    lease_s: float = DEFAULT_LEASE_S,
    due: Sequence[DueEntry] | None = None,
    clock: Clock = _wall_clock,
) -> list[DeliveryResult]:
    """Send every outbox entry due at ``now`` (oldest first, at most ``limit``); see the module
    docstring for the state machine. ``send`` is injectable (tests, dry runs); the default goes
    through Apprise. ``lease_s``: each claim's lease, renewed every third of it by a heartbeat
    thread while this run works (``clock`` tells the time for it); another run takes a claim over
    only once its lease has run out and its holder is gone. With ``lake``, the rows recorded are
    also appended to the lake's ``notifications`` table.

    Transactions: one to recover and list what is due, then one per entry that commits the
    previous entry's outcome together with this entry's claim (``sending``) — still before this
    entry's network call, and still after the previous one's — and a last one for the last
    outcome. A crash anywhere leaves at most the entry in flight in ``sending``. ``due``: the entries
    :func:`take_due` listed in an earlier transaction (the first transaction is then skipped).

    ``state`` must not be a :meth:`State.batch`'s: each claim has to commit before its send."""
    now = _aware(now)
    if state.in_batch:
        raise ValueError("state: deliver_due commits each claim before its send; give it a State outside a batch")
    if due is None:
        due = take_due(state, now, limit=limit, lease_s=lease_s, clock=clock)
    if not due:
        return []
    owner = ClaimOwner.me()
    lease = timedelta(seconds=lease_s)

    def renew() -> None:
        with state.transaction() as con:
            con.execute(
                f"UPDATE {OUTBOX} SET lease_until = ? WHERE claim_token = ? AND status = 'sending'",
                [clock() + lease, owner.token],
            )

    with Heartbeat(owner.token, renew, lease_s / 3):
        results, rows = _deliver_entries(due, now, receivers, send, state, owner, lease, clock)
    if lake is not None and rows:
        try:
            _write_lake(lake, rows)
        except Exception as e:  # the state DB holds the record; export_to_lake can replay this
            log.warning("notifications: lake write failed (state DB keeps the records): %s", e)
    return results


def _deliver_entries(
    due: Sequence[DueEntry],
    now: datetime,
    receivers: Mapping[str, Receiver],
    send: Sender,
    state: State,
    owner: ClaimOwner,
    lease: timedelta,
    clock: Clock,
) -> tuple[list[DeliveryResult], list[dict[str, Any]]]:
    """:func:`deliver_due`'s loop, while the heartbeat keeps ``owner``'s claims alive."""
    results: list[DeliveryResult] = []
    rows: list[dict[str, Any]] = []
    finish: _Finish | None = None
    for entry in due:
        entry_id, receiver_name, raw, attempts, dup = (
            entry.id,
            entry.receiver,
            entry.notification,
            entry.attempts,
            entry.possible_duplicate,
        )
        n = _load(raw)
        attempt = int(attempts) + 1
        receiver = receivers.get(receiver_name)
        policy = receiver or _FALLBACK_POLICY
        rendered: Rendered | None = None
        error: str | None = None
        if receiver is None:
            error = f"receiver {receiver_name!r} is not configured"
        else:
            try:
                rendered = render(n, receiver, possible_duplicate=bool(dup))
            except NotifyTemplateError as e:
                error = str(e)
        claimed = True
        if rendered is not None or finish is not None:
            with state.transaction() as con:
                if finish is not None:
                    rows.append(_write_finish(con, finish, now))
                    finish = None
                if rendered is not None:
                    # Intended → in flight, committed before the network call: a crash from here
                    # on leaves the entry in 'sending'; once the lease has run out, the next run
                    # re-sends it once, flagged.
                    claimed = bool(
                        con.execute(
                            f"UPDATE {OUTBOX} SET status = 'sending', attempts = ?, updated_at = ?, "
                            "claim_token = ?, claim_owner = ?, lease_until = ? "
                            "WHERE id = ? AND status IN ('pending', 'failed') AND attempts = ? RETURNING id",
                            [attempt, now, owner.token, owner.to_json(), clock() + lease, entry_id, attempts],
                        ).fetchall()
                    )
                    if claimed:
                        rows.append(
                            _record(
                                con,
                                entry_id=entry_id,
                                attempt=attempt,
                                status="sending",
                                ts=now,
                                n=n,
                                possible_duplicate=bool(dup),
                                title=rendered.title,
                            )
                        )
        if not claimed:
            continue  # another process took it
        outcome: SendOutcome | None = None
        if rendered is not None and receiver is not None:
            try:
                outcome = send(receiver, rendered, notify_type_for(n))
            except Exception as e:  # a sender bug or an unexpected library error: still a recorded failure
                outcome = SendOutcome(False, receiver.redact(f"{type(e).__name__}: {e}"))
            error = None if outcome.ok else (outcome.error or "send failed")
        status: Status
        next_at: datetime | None = None
        if outcome is not None and outcome.ok:
            status = "sent"
        elif attempt > policy.max_retries:
            status = "dead"
        else:
            status = "failed"
            next_at = now + timedelta(seconds=policy.backoff_s(attempt))
        title = rendered.title if rendered else ""
        token = owner.token if rendered is not None else None
        finish = _Finish(entry_id, n, attempt, status, bool(dup), title, error, next_at, token)
        if status != "sent":
            log.warning("notification %s to %s: %s (attempt %d): %s", entry_id, receiver_name, status, attempt, error)
        results.append(
            DeliveryResult(
                id=entry_id,
                receiver=receiver_name,
                group_key=n.group_key,
                reason=n.reason,
                status=status,
                attempt=attempt,
                possible_duplicate=bool(dup),
                title=title,
                error=error,
                next_attempt_at=next_at,
                duration_s=outcome.duration_s if outcome else 0.0,
            )
        )
    if finish is not None:
        with state.transaction() as con:
            rows.append(_write_finish(con, finish, now))
    return results, rows


# ---- test-notify -----------------------------------------------------------------------------------


def test_notify(
    receiver: Receiver,
    *,
    now: datetime | None = None,
    send: Sender = apprise_send,
    state: State | None = None,
) -> DeliveryResult:
    """Send a synthetic firing alert to ``receiver`` right away (``cortex-perf alerts test-notify``),
    bypassing the outbox (a person is watching the result), recorded when ``state`` is given."""
    now = _aware(now or datetime.now(UTC))
    alert = Alert(
        labels={"alertname": "CortexPerfTestNotification", "severity": "info", "receiver": receiver.name},
        annotations={
            "summary": f"Test notification for receiver {receiver.name}",
            "description": "Sent by `cortex-perf alerts test-notify`: if you can read this, delivery works.",
        },
        status="firing",
        starts_at=now,
        generator="cortex-perf:test-notify",
    )
    n = Notification(
        receiver=receiver.name,
        group_key=f"test-notify:{receiver.name}",
        group_labels={"alertname": alert.name},
        alerts=(alert,),
        reason="test",
    )
    entry_id = "test-" + hashlib.sha256(f"{receiver.name}\x00{now.isoformat()}".encode()).hexdigest()[:11]
    error: str | None
    try:
        rendered = render(n, receiver)
    except NotifyTemplateError as e:
        rendered, outcome, error = None, SendOutcome(False, str(e)), str(e)
    if rendered is not None:
        try:
            outcome = send(receiver, rendered, apprise.NotifyType.INFO)
        except Exception as e:
            outcome = SendOutcome(False, receiver.redact(f"{type(e).__name__}: {e}"))
        error = None if outcome.ok else (outcome.error or "send failed")
    status: Status = "sent" if outcome.ok else "failed"
    title = rendered.title if rendered else ""
    if state is not None:
        with state.transaction() as con:
            _record(
                con, entry_id=entry_id, attempt=1, status=status, ts=now, n=n, possible_duplicate=False, title=title
            )
    return DeliveryResult(
        id=entry_id,
        receiver=receiver.name,
        group_key=n.group_key,
        reason="test",
        status=status,
        attempt=1,
        title=title,
        error=error,
        duration_s=outcome.duration_s,
    )


test_notify.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


# ---- listing and the lake --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row as listed by the CLI."""

    id: str
    receiver: str
    group_key: str
    reason: str
    status: Status
    attempts: int
    possible_duplicate: bool
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def list_outbox(
    state: State, *, status: Sequence[str] | None = None, receiver: str | None = None, limit: int = 100
) -> list[OutboxEntry]:
    """Outbox entries, newest first, optionally by status (e.g. ``["failed", "dead"]``) and receiver."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if status:
        where.append("status IN (SELECT unnest(?))")
        params.append(list(status))
    if receiver:
        where.append("receiver = ?")
        params.append(receiver)
    with state.transaction() as con:
        rows = con.execute(
            "SELECT id, receiver, group_key, reason, status, attempts, possible_duplicate, created_at, "
            f"next_attempt_at, sent_at, last_error FROM {OUTBOX} WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id LIMIT ?",
            [*params, limit],
        ).fetchall()
    return [OutboxEntry(*(_utc(v) for v in r)) for r in rows]


def list_records(state: State, *, notification_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Delivery records (every step of every send), oldest first."""
    where, params = "", list[Any]()
    if notification_id:
        where, params = "WHERE notification_id = ?", [notification_id]
    with state.transaction() as con:
        rows = con.execute(
            f"SELECT {', '.join(_RECORD_COLS)} FROM {RECORDS} {where} ORDER BY ts, notification_id, attempt, "
            "CASE status WHEN 'pending' THEN 0 WHEN 'sending' THEN 1 ELSE 2 END LIMIT ?",
            [*params, limit],
        ).fetchall()
    return [dict(zip(_RECORD_COLS, (_utc(v) for v in r), strict=True)) for r in rows]


def _write_lake(lake: Lake, rows: list[dict[str, Any]]) -> None:
    table = pl.from_arrow(pa.Table.from_pylist(rows, schema=S.NOTIFICATIONS_SCHEMA))
    assert isinstance(table, pl.DataFrame)
    # The batch's file name hashes the identity columns (never null), so a replayed batch is skipped.
    write_partitioned(lake.storage, S.NOTIFICATIONS, table, S.NOTIFICATIONS_SCHEMA, _LAKE_HASH_COLS)


def export_to_lake(state: State, lake: Lake, *, since: datetime | None = None) -> int:
    """Append the state DB's delivery records (since ``since``) to the lake's ``notifications``
    table; re-exporting is harmless (identity is id, attempt, status). Returns rows written."""
    rows = [r for r in list_records(state, limit=1_000_000) if since is None or r["ts"] >= _aware(since, "since")]
    if rows:
        _write_lake(lake, rows)
    return len(rows)

"""One alerting tick, composed from the pieces:

rules → alert state → events → silences/inhibition → routing + grouping (dispatcher) → outbox → Apprise.

This is what the ``alerts`` flow, ``cortex-perf alerts …`` and the pipeline call, so the wiring lives
in one place and stays testable without a Prefect server. Each stage is a plain function of the
previous stage's output; the flow only adds a task boundary and an artifact around it.

Crash safety, in order: the rule state, the tick's notifications (into the outbox) and the
dispatcher's state are saved in one state-DB transaction after the evaluation (``State.batch``), so
a crash leaves either all of them or none — a re-run of the tick then evaluates nothing twice, or
everything again, and decides the same messages, which the outbox would also recognise by content
(``DEDUPE_WINDOW``); events follow that commit; delivery then works through the outbox, each send
marked before it goes out and recorded after (see ``tasks.alerting.notify.delivery``). Two ticks at once
(the flow and ``cortex-perf alerts run``) serialise on that transaction: the second reads the
dispatcher state the first saved, and a send either of them lists is claimed by one only.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.alerting.model import Alert, fingerprint, labels_text

# the stores at import time: their tables are registered before the tick's state batch begins
from tasks.alerting.notify.acks import AckStore
from tasks.alerting.notify.delivery import DueEntry, deliver_due, enqueue_many, take_due
from tasks.alerting.notify.dispatch import Dispatcher, DispatchStore
from tasks.alerting.notify.inhibit import inhibited
from tasks.alerting.notify.notify_config import load_notify_config
from tasks.alerting.notify.silences import SilenceStore, silenced_by
from tasks.alerting.notify.timeintervals import muted
from tasks.alerting.rules.rule_files import RuleFileError, RuleSet, load_rule_files
from tasks.alerting.rules.ruler import RuleStore, TickOutcome, failure_samples, run_rules
from tasks.alerting.rules.sqlcompile import evaluate_many
from tasks.config import Settings
from tasks.events import emit_many
from tasks.lake import Lake
from tasks.markdown import md_cell
from tasks.state import State
from tasks.timeparse import parse_duration

__all__ = ["AlertsRunResult", "expand_rule_files", "load_rules", "run_alerts"]

log = logging.getLogger(__name__)


def expand_rule_files(patterns: list[str]) -> list[Path]:
    """Rule files from paths or globs, sorted and de-duplicated; a pattern matching nothing is an error.

    Why an error: a typo in a rule path would otherwise silently switch alerting off."""
    out: list[Path] = []
    missing = []
    for pat in patterns:
        hits = sorted(glob.glob(pat, recursive=True)) if glob.has_magic(pat) else ([pat] if Path(pat).exists() else [])
        if not hits:
            missing.append(pat)
        out.extend(Path(h) for h in hits)
    if missing:
        raise RuleFileError([f"alerting.rule_files: {p!r} matches no file" for p in missing])
    unique: dict[Path, Path] = {}
    for p in out:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def load_rules(settings: Settings) -> RuleSet:
    return load_rule_files(expand_rule_files(list(settings.alerting.rule_files)))


@dataclass
class AlertsRunResult:
    """What a tick did, in the shape the flow's artifact and the CLI print."""

    now: datetime
    rules: int = 0
    evaluations: int = 0
    skipped_evaluations: int = 0
    firing: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    pending: int = 0
    transitions: int = 0
    no_data: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: rules whose newest evaluation failed: rule_group (``file;group``), rule, failures in all, last_error
    failing_rules: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    silenced: int = 0
    inhibited: int = 0
    notify_note: str = ""
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "rules": self.rules,
            "evaluations": self.evaluations,
            "skipped_evaluations": self.skipped_evaluations,
            "firing": [a.to_dict() for a in self.firing],
            "resolved": [a.to_dict() for a in self.resolved],
            "pending": self.pending,
            "transitions": self.transitions,
            "no_data": list(self.no_data),
            "errors": [{"rule": r, "error": e} for r, e in self.errors],
            "failing_rules": list(self.failing_rules),
            "notifications": list(self.notifications),
            "deliveries": list(self.deliveries),
            "silenced": self.silenced,
            "inhibited": self.inhibited,
            "notify_note": self.notify_note,
            "dry_run": self.dry_run,
        }

    def markdown(self) -> str:
        """The flow's artifact: current alerts first, then what went wrong."""
        lines = [
            f"**alerts** at {self.now:%Y-%m-%d %H:%M:%S} UTC: {len(self.firing)} firing, {self.pending} pending, "
            f"{len(self.resolved)} recently resolved; {self.rules} rule(s), {self.evaluations} evaluation(s)"
            + (f", {self.skipped_evaluations} missed evaluation(s) skipped" if self.skipped_evaluations else "")
            + (" (dry run)" if self.dry_run else ""),
            "",
        ]
        if self.firing:
            lines += ["| alert | labels | since | summary |", "|---|---|---|---|"]
            for a in self.firing:
                since = f"{a.starts_at:%Y-%m-%d %H:%M}" if a.starts_at else ""
                summary = md_cell(a.annotations.get("summary", ""))
                labels = labels_text({k: v for k, v in a.labels.items() if k != "alertname"}).replace("|", "\\|")
                lines.append(f"| {a.name} | `{labels}` | {since} | {summary} |")
        else:
            lines.append("No alert is firing.")
        if self.notifications:
            verb = "would go out" if self.dry_run else "this tick"
            lines += ["", f"**{len(self.notifications)} notification(s)** {verb}:", ""]
            lines += [
                f"- {n['receiver']} ← `{n['group_key']}` ({n['reason']}: "
                f"{n['firing']} firing, {n['resolved']} resolved)"
                for n in self.notifications
            ]
        failed = [d for d in self.deliveries if d["status"] != "sent"]
        if self.deliveries:
            lines += ["", f"Deliveries: {len(self.deliveries) - len(failed)} sent, {len(failed)} not (retried later)."]
            lines += [f"- {d['receiver']}: {d['status']} — {d['error']}" for d in failed]
        if self.silenced or self.inhibited:
            lines += ["", f"{self.silenced} alert(s) silenced, {self.inhibited} inhibited."]
        if self.notify_note:
            lines += ["", self.notify_note]
        if self.no_data:
            lines += ["", "No data for: " + ", ".join(f"`{r}`" for r in self.no_data)]
        if self.failing_rules:
            lines += [
                "",
                "**Failing rules** (their alerts keep their last state; "
                "`cortex_perf_rule_evaluation_failures_total` counts the failures)",
                "",
            ]
            lines += [
                f"- `{f['rule_group']}` / `{f['rule']}` ({f['failures']} failure{'s' if f['failures'] != 1 else ''}): "
                + " ".join(str(f["last_error"]).split())
                for f in self.failing_rules
            ]
        if self.errors:
            lines += ["", "**Rule errors**", ""] + [f"- `{r}`: {e}" for r, e in self.errors]
        return "\n".join(lines)


#: How far apart two identical messages to one receiver about one group count as one (a tick re-run
#: after a crash comes one interval later; a genuine repeat comes after ``repeat_interval``).
DEDUPE_WINDOW_S = 180.0


@dataclass
class NotifyOutcome:
    notifications: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    silenced: int = 0
    inhibited: int = 0
    skipped_reason: str = ""
    #: outbox entries due once this tick's notifications are queued (sent after the batch commits)
    due: list[DueEntry] = field(default_factory=list)


def _decide(
    settings: Settings, cfg: Any, state: State, alerts: list[Alert], now: datetime, *, dry_run: bool
) -> NotifyOutcome:
    """Silences, inhibition, acks, the dispatcher, the outbox: everything up to the sends.

    Runs inside the tick's one state-DB batch (``state`` is the batch's): it reads silences, acks and
    the dispatcher's state, decides, queues the tick's notifications, saves the dispatcher's state
    and lists the entries due — one commit for all, so the dispatcher's read-modify-write cannot
    interleave with another tick's, and the outbox and the dispatcher's state are saved together."""
    acks = AckStore(state, default_for=parse_duration(settings.alerting.ack_timeout))
    silences = SilenceStore(state).active(now)
    silenced = {a.fingerprint for a in alerts if silenced_by(silences, a.labels, now)}
    inhibit = inhibited(alerts, cfg.inhibit_rules, now)
    out = NotifyOutcome(silenced=len(silenced), inhibited=len(inhibit - silenced))
    receivers = cfg.parsed_receivers
    dstore = DispatchStore(state)
    if not dry_run:
        acks.expire(now)
    notifications, new_state = Dispatcher(cfg.route, cfg.dispatch).tick(
        alerts,
        now,
        dstore.load(),
        suppressed=silenced | inhibit,
        acks=acks.acks(t=now),
        resolves=acks.resolves(),
        send_resolved={name: r.send_resolved for name, r in receivers.items()},
        muted=lambda rm, t: muted(rm, t, cfg.time_intervals),
    )
    out.notifications = [
        {
            "receiver": n.receiver,
            "group_key": n.group_key,
            "reason": n.reason,
            "firing": len(n.firing),
            "resolved": len(n.resolved),
            "notes": list(n.notes),
        }
        for n in notifications
    ]
    if dry_run:
        return out
    # The outbox before the dispatcher's state (and in the same commit): a tick that dies before the
    # commit leaves neither, and the next tick decides the same messages again.
    enqueue_many(
        [(n, receivers[n.receiver]) for n in notifications],
        now,
        state=state,
        dedupe_window_s=DEDUPE_WINDOW_S,
    )
    dstore.save(new_state, now=now)
    out.due = take_due(state, now, lease_s=_lease_s(settings))
    return out


def _lease_s(settings: Settings) -> float:
    return parse_duration(settings.alerting.delivery_lease).total_seconds()


NO_NOTIFY_CONFIG = "alerting.notify_config is not set: alerts are kept, nobody is told"


def _deliver(out: NotifyOutcome, cfg: Any, state: State, lake: Lake, now: datetime, lease_s: float) -> None:
    """The sends, after the decisions' commit: each claimed in a transaction of its own before it
    goes out (``tasks.alerting.notify.delivery``), never inside the batch; each claim's lease is renewed
    while this run lives, so a tick that sends for minutes is never taken over by the next one."""
    if out.due:
        results = deliver_due(now, cfg.parsed_receivers, state=state, lake=lake, due=out.due, lease_s=lease_s)
        out.deliveries = [r.to_dict() for r in results]


def _events(lake: Lake, outcome: TickOutcome) -> None:
    """``alert.firing`` / ``alert.resolved`` for every such transition (catch-up ones included, with their time)."""
    items = []
    for key, tr in outcome.transitions:
        if tr.kind not in ("firing", "resolved"):
            continue
        a = tr.alert
        payload = {
            "rule": key,
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "value": a.last_value,
            "active_at": a.active_at.isoformat(),
            "tick": outcome.now.isoformat(),  # later than the event's own time for a caught-up transition
        }
        items.append((f"alert.{tr.kind}", f"alert.{fingerprint(a.labels)}", payload, tr.t))
    emit_many(lake, items)


def _failure_counter(lake: Lake, outcome: TickOutcome) -> None:
    """``cortex_perf_rule_evaluation_failures_total`` to the lake, after the rule state's commit (the
    count lives there). Best effort: the tick's summary and the state DB keep the failures anyway."""
    samples = failure_samples(outcome)
    if not samples:
        return
    try:
        res = lake.write_samples(samples)
        if res.rejected:
            log.warning("rule failure counter: %d sample(s) rejected: %s", res.rejected, "; ".join(res.reasons[:2]))
    except Exception as e:
        log.warning("rule failure counter: lake write failed: %s", e)


def run_alerts(
    settings: Settings,
    lake: Lake,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    state: State | None = None,
) -> AlertsRunResult:
    """Evaluate due rules, persist alert state, record events, notify. ``dry_run`` changes nothing anywhere.

    ``state``: the state DB the caller built (a flow run's); by default the one ``settings`` names.

    State-DB transactions (each costs tens of milliseconds here, mostly opening the file): one to
    load the rule state; one, after the evaluation, that saves the rule state together with every
    notification decision (:func:`_decide`); then one per send (claimed before it goes out) and one
    for the last send's outcome. A tick with nothing to send makes two."""
    now = now or datetime.now(UTC)
    ruleset = load_rules(settings)
    state = state or State.from_settings(settings)
    outcome = run_rules(
        ruleset,
        lake,
        RuleStore(state),
        now,
        batch=evaluate_many,
        max_catch_up=parse_duration(settings.alerting.max_catch_up),
        dry_run=dry_run,
        persist=False,
    )
    path = settings.alerting.notify_config
    cfg: Any = None
    cfg_error: Exception | None = None
    if path:
        try:
            cfg = load_notify_config(path)
        except Exception as e:  # a broken notify config must not stop the rules' state from advancing
            cfg_error = e
    sent = NotifyOutcome(skipped_reason="" if path else NO_NOTIFY_CONFIG)
    deciding = False
    decide_error: Exception | None = None
    try:
        with state.batch(read_only=dry_run) as tx:
            if not dry_run:
                RuleStore(tx).save(outcome.stored, prune_except=outcome.configured)
            if cfg is not None:
                deciding = True
                sent = _decide(settings, cfg, tx, outcome.alerts, now, dry_run=dry_run)
    except Exception as e:
        if not deciding or dry_run:
            raise
        # The notification side failed (a receiver missing at decide time, a bug in routing...):
        # the batch rolled back, rule state included. Save the rule state alone, so the rules keep
        # advancing instead of re-evaluating the same times on every tick; the error is raised after.
        RuleStore(state).save(outcome.stored, prune_except=outcome.configured)
        decide_error = e
    if not dry_run:
        _events(lake, outcome)  # after the rule state's commit: a re-run never emits a transition twice
        _failure_counter(lake, outcome)
    if cfg_error is not None:
        raise cfg_error
    if decide_error is not None:
        raise decide_error
    if cfg is not None and not dry_run:
        _deliver(sent, cfg, state, lake, now, _lease_s(settings))
    return AlertsRunResult(
        now=now,
        rules=len(ruleset.alerts),
        evaluations=outcome.evaluations,
        skipped_evaluations=outcome.skipped,
        firing=[a for a in outcome.alerts if a.status == "firing"],
        resolved=[a for a in outcome.alerts if a.status == "resolved"],
        pending=len(outcome.pending),
        transitions=len(outcome.transitions),
        no_data=outcome.no_data,
        errors=outcome.errors,
        failing_rules=[
            {"rule_group": h.rule_group, "rule": h.rule, "failures": h.failures, "last_error": h.last_error}
            for h in outcome.health
            if h.health == "err"
        ],
        notifications=sent.notifications,
        deliveries=sent.deliveries,
        silenced=sent.silenced,
        inhibited=sent.inhibited,
        notify_note=sent.skipped_reason,
        dry_run=dry_run,
    )

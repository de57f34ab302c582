"""One alerting tick, composed from the pieces: rules → alert state → events (→ notifications).

This is what the ``alerts`` flow, ``cortex-perf alerts …`` and the pipeline call, so the wiring lives
in one place and stays testable without a Prefect server. Each stage is a plain function of the
previous stage's output; the flow only adds a task boundary and an artifact around it.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.alerting.model import Alert, fingerprint, labels_text
from tasks.alerting.ruler import RuleStore, TickOutcome, run_rules
from tasks.alerting.rules import RuleFileError, RuleSet, load_rule_files
from tasks.events import emit_many
from tasks.state import State
from tasks.timeparse import parse_duration

__all__ = ["AlertsRunResult", "expand_rule_files", "load_rules", "run_alerts"]


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


def load_rules(settings: Any) -> RuleSet:
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
    notifications: list[dict[str, Any]] = field(default_factory=list)
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
            "notifications": list(self.notifications),
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
                summary = a.annotations.get("summary", "").replace("|", "\\|").replace("\n", " ")
                labels = labels_text({k: v for k, v in a.labels.items() if k != "alertname"}).replace("|", "\\|")
                lines.append(f"| {a.name} | `{labels}` | {since} | {summary} |")
        else:
            lines.append("No alert is firing.")
        if self.notifications:
            lines += ["", f"{len(self.notifications)} notification(s) this tick."]
        if self.no_data:
            lines += ["", "No data for: " + ", ".join(f"`{r}`" for r in self.no_data)]
        if self.errors:
            lines += ["", "**Rule errors**", ""] + [f"- `{r}`: {e}" for r, e in self.errors]
        return "\n".join(lines)


def _events(lake: Any, outcome: TickOutcome) -> None:
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


def run_alerts(settings: Any, lake: Any, *, now: datetime | None = None, dry_run: bool = False) -> AlertsRunResult:
    """Evaluate due rules, persist alert state, record events. ``dry_run`` changes nothing anywhere."""
    now = now or datetime.now(UTC)
    ruleset = load_rules(settings)
    store = RuleStore(State.from_settings(settings))
    outcome = run_rules(
        ruleset,
        lake,
        store,
        now,
        max_catch_up=parse_duration(settings.alerting.max_catch_up),
        dry_run=dry_run,
    )
    if not dry_run:
        _events(lake, outcome)
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
        dry_run=dry_run,
    )

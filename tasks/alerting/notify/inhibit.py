"""Alertmanager inhibition: a firing *source* alert mutes *target* alerts that share the ``equal`` labels.

::

    inhibit_rules:
      - source_matchers: ['severity="critical"']
        target_matchers: ['severity="warning"']
        equal: [cluster, alertname]
      - source_match: {alertname: NodeDown}    # deprecated forms still work
        target_match_re: {alertname: ".+"}
        equal: [instance]

Semantics are Alertmanager 0.25's ``inhibit/inhibit.go``: only unresolved sources inhibit; an ``equal``
label must have the same value on both (a label missing on both counts as equal, both being empty);
and when the target itself matches the source side too, sources that also match the target side are
disregarded — so an alert never inhibits itself, nor do two alerts matching both sides inhibit each
other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.alerting.model import Alert
from tasks.alerting.notify.matchers import LABEL_NAME_RE, ConfigPathError, Matcher, PathPart, matchers_match
from tasks.alerting.notify.routing import legacy_matchers, parse_matcher_list

__all__ = ["InhibitRule", "inhibited", "inhibited_by", "is_unresolved", "parse_inhibit_rule", "parse_inhibit_rules"]

_FIELDS = {
    "name",
    "source_match",
    "source_match_re",
    "source_matchers",
    "target_match",
    "target_match_re",
    "target_matchers",
    "equal",
}


@dataclass(frozen=True)
class InhibitRule:
    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    name: str = ""


def is_unresolved(alert: Alert, t: datetime) -> bool:
    """Alertmanager's ``!Resolved()`` at ``t``: not marked resolved and not past its ``ends_at``."""
    if alert.status == "resolved":
        return False
    return alert.ends_at is None or _aware(alert.ends_at) > _aware(t)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def inhibited_by(alerts: Iterable[Alert], rules: Sequence[InhibitRule], t: datetime) -> dict[str, list[str]]:
    """Target fingerprint → fingerprints of the source alerts that inhibit it (sorted, unique).

    Every given alert is a candidate target (Alertmanager checks each alert it is about to notify);
    only unresolved alerts are sources. Linear in alerts per rule (sources indexed by ``equal`` values)."""
    alerts = list(alerts)
    out: dict[str, set[str]] = defaultdict(set)
    for rule in rules:
        # equal-values → [(source fingerprint, source also matches target side)]
        index: dict[tuple[str, ...], list[tuple[str, bool]]] = defaultdict(list)
        for a in alerts:
            if is_unresolved(a, t) and matchers_match(rule.source_matchers, a.labels):
                key = tuple(a.labels.get(n, "") for n in rule.equal)
                index[key].append((a.fingerprint, matchers_match(rule.target_matchers, a.labels)))
        if not index:
            continue
        for a in alerts:
            if not matchers_match(rule.target_matchers, a.labels):
                continue
            cands = index.get(tuple(a.labels.get(n, "") for n in rule.equal))
            if not cands:
                continue
            two_sided = matchers_match(rule.source_matchers, a.labels)
            for fp, src_matches_target in cands:
                if two_sided and src_matches_target:
                    continue
                out[a.fingerprint].add(fp)
    return {k: sorted(v) for k, v in out.items()}


def inhibited(alerts: Iterable[Alert], rules: Sequence[InhibitRule], t: datetime) -> set[str]:
    """Fingerprints of the alerts muted by inhibition at ``t``."""
    return set(inhibited_by(alerts, rules, t))


def parse_inhibit_rule(d: Any, path: Sequence[PathPart] = ()) -> InhibitRule:
    """One ``inhibit_rules`` entry; errors name the field."""
    if not isinstance(d, Mapping):
        raise ConfigPathError(path, "inhibit rule must be a mapping")
    for k in d:
        if k not in _FIELDS:
            allowed = ", ".join(sorted(_FIELDS))
            raise ConfigPathError((*path, str(k)), f"unknown field {k!r} (allowed: {allowed})", at_key=True)
    sides: dict[str, tuple[Matcher, ...]] = {}
    for side in ("source", "target"):
        ms: list[Matcher] = []
        if d.get(f"{side}_match") is not None:
            ms += legacy_matchers(d[f"{side}_match"], "=", (*path, f"{side}_match"))
        if d.get(f"{side}_match_re") is not None:
            ms += legacy_matchers(d[f"{side}_match_re"], "=~", (*path, f"{side}_match_re"))
        if d.get(f"{side}_matchers") is not None:
            ms += parse_matcher_list(d[f"{side}_matchers"], (*path, f"{side}_matchers"))
        sides[side] = tuple(ms)
    equal: list[str] = []
    if d.get("equal") is not None:
        if not isinstance(d["equal"], list):
            raise ConfigPathError((*path, "equal"), "equal must be a list of label names")
        for i, n in enumerate(d["equal"]):
            if not isinstance(n, str) or not LABEL_NAME_RE.match(n):
                raise ConfigPathError((*path, "equal", i), f"invalid label name {n!r} in equal list")
            equal.append(n)
    name = d.get("name") or ""
    return InhibitRule(sides["source"], sides["target"], tuple(equal), str(name))


def parse_inhibit_rules(seq: Any, path: Sequence[PathPart] = ("inhibit_rules",)) -> list[InhibitRule]:
    if seq is None:
        return []
    if not isinstance(seq, list):
        raise ConfigPathError(path, "inhibit_rules must be a list")
    return [parse_inhibit_rule(r, (*path, i)) for i, r in enumerate(seq)]

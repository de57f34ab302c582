"""The alert state machine of one alerting rule, exactly as Prometheus 2.42 runs it (``rules/alerting.go``).

At every evaluation time ``t`` the rule's expression yields a vector of ``(labels, value)``. For each
series, the alert's label set is the series' labels without ``__name__``, with the rule's labels
(templated) set on top — an empty result deletes the label, as ``labels.Builder.Set`` does — and
``alertname`` last; that rendered label set is the alert's identity. Annotations are templated with
the same ``$labels`` (the series' labels, ``__name__`` included) and ``$value``.

* A series present now with no active alert (none, or only a resolved one kept for retention)
  becomes a new **pending** alert with ``active_at = t``. An alert already pending or firing only
  takes the new value and annotations (its labels are its identity, so they cannot change).
* A pending alert fires once ``t - active_at >= for`` — in the same evaluation, so ``for: 0`` fires
  at once (both a ``pending`` and a ``firing`` transition are reported).
* A pending alert whose series is gone is dropped (it never fired: no resolve).
* A firing alert whose series is gone: with ``keep_firing_for > 0`` it records
  ``keep_firing_since = t`` (the first evaluation it was missing) and stays firing while
  ``t - keep_firing_since < keep_firing_for``; then (or at once without ``keep_firing_for``) it
  becomes **inactive** with ``resolved_at = t`` (a ``resolved`` transition). Its series coming back
  while it is kept firing clears ``keep_firing_since``. Note Prometheus measures ``keep_firing_for``
  from the first evaluation without the series, not from the last one with it.
* A resolved alert is kept while ``t - resolved_at <= 15m`` (``resolvedRetention``; Prometheus
  deletes it on the first evaluation *past* 15 minutes) so it can still be notified as resolved.
* Two series giving the same alert label set is an error (Prometheus: "vector contains metrics with
  the same labelset after applying alert labels") and leaves the state unchanged.
* A template that fails to expand gives ``<error expanding template: …>`` as its value, as Prometheus does.

:func:`step` is pure: it takes the instances from the previous evaluation and returns new ones
plus the transitions of this evaluation. Instances round-trip through JSON (:meth:`AlertInstance.to_dict`,
:func:`dump_instances`/:func:`load_instances`) so they can live in the state DB.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tasks.alerting.rules.evaluate import Labels, evaluate
from tasks.alerting.rules.rule_files import Rule
from tasks.alerting.rules.templating import Template, TemplateError, expansion_error
from tasks.lake import Lake

__all__ = [
    "RESOLVED_RETENTION",
    "AlertInstance",
    "AlertState",
    "LifecycleError",
    "ReplayStep",
    "Transition",
    "alert_labels",
    "dump_instances",
    "load_instances",
    "replay",
    "step",
]

#: How long a resolved alert is kept (Prometheus ``resolvedRetention``).
RESOLVED_RETENTION = timedelta(minutes=15)
ALERTNAME = "alertname"
NAME = "__name__"

LabelKey = tuple[tuple[str, str], ...]


class AlertState(enum.StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class LifecycleError(ValueError):
    """A rule evaluation that cannot produce alerts (e.g. two series with the same alert labels)."""


def _key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _dt(s: Any) -> datetime | None:
    if s is None:
        return None
    t = datetime.fromisoformat(str(s))
    if t.tzinfo is None:
        raise ValueError(f"alert state time {s!r} has no timezone")
    return t


def _float_to_json(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def _float_from_json(v: Any) -> float:
    return float({"NaN": "nan", "+Inf": "inf", "-Inf": "-inf"}.get(v, v) if isinstance(v, str) else v)


@dataclass(frozen=True)
class AlertInstance:
    """One alert of a rule: its identity is ``labels`` (``alertname`` and templated rule labels included)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    active_at: datetime
    last_value: float
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    keep_firing_since: datetime | None = None
    last_seen: datetime | None = None  # last evaluation whose result held this alert's series

    @property
    def key(self) -> LabelKey:
        return _key(self.labels)

    @property
    def resolved(self) -> bool:
        """Fired, then resolved (kept for :data:`RESOLVED_RETENTION` so the resolve can be notified)."""
        return self.state is AlertState.INACTIVE and self.resolved_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(sorted(self.labels.items())),
            "annotations": dict(sorted(self.annotations.items())),
            "state": self.state.value,
            "active_at": _iso(self.active_at),
            "fired_at": _iso(self.fired_at),
            "resolved_at": _iso(self.resolved_at),
            "keep_firing_since": _iso(self.keep_firing_since),
            "last_seen": _iso(self.last_seen),
            "last_value": _float_to_json(self.last_value),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertInstance:
        active_at = _dt(d["active_at"])
        assert active_at is not None
        return cls(
            labels={str(k): str(v) for k, v in dict(d["labels"]).items()},
            annotations={str(k): str(v) for k, v in dict(d.get("annotations") or {}).items()},
            state=AlertState(d["state"]),
            active_at=active_at,
            last_value=_float_from_json(d["last_value"]),
            fired_at=_dt(d.get("fired_at")),
            resolved_at=_dt(d.get("resolved_at")),
            keep_firing_since=_dt(d.get("keep_firing_since")),
            last_seen=_dt(d.get("last_seen")),
        )


@dataclass(frozen=True)
class Transition:
    """A state change at ``t``: ``kind`` is ``pending``, ``firing`` or ``resolved``."""

    kind: str
    t: datetime
    alert: AlertInstance

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "t": self.t.isoformat(), "alert": self.alert.to_dict()}


def dump_instances(instances: Iterable[AlertInstance]) -> list[dict[str, Any]]:
    return [a.to_dict() for a in sorted(instances, key=lambda a: a.key)]


def load_instances(data: Iterable[Mapping[str, Any]]) -> list[AlertInstance]:
    return [AlertInstance.from_dict(d) for d in data]


# ---- templating -------------------------------------------------------------------------------------


_TEMPLATES: dict[str, Template | TemplateError] = {}


def _expand(text: str, labels: Labels, value: float, name: str) -> str:
    if "{{" not in text:
        return text
    tmpl = _TEMPLATES.get(text)
    if tmpl is None:
        try:
            tmpl = Template(text)
        except TemplateError as exc:
            tmpl = exc
        if len(_TEMPLATES) > 10_000:
            _TEMPLATES.clear()
        _TEMPLATES[text] = tmpl
    if isinstance(tmpl, TemplateError):
        return expansion_error(tmpl, name)
    try:
        return tmpl.render(labels, value)
    except TemplateError as exc:
        return expansion_error(exc, name)


def alert_labels(rule: Rule, series: Mapping[str, str], value: float) -> tuple[dict[str, str], dict[str, str]]:
    """The alert's labels and annotations for one result series, as Prometheus builds them."""
    tmpl_labels = dict(series)
    out = {k: v for k, v in series.items() if k != NAME}
    for name, text in rule.labels.items():
        v = _expand(text, tmpl_labels, value, rule.name)
        if v == "":
            out.pop(name, None)
        else:
            out[name] = v
    out[ALERTNAME] = rule.name
    annotations = {name: _expand(text, tmpl_labels, value, rule.name) for name, text in rule.annotations.items()}
    return out, annotations


# ---- the state machine ------------------------------------------------------------------------------


def step(
    rule: Rule,
    active: Sequence[tuple[Mapping[str, str], float]],
    t: datetime,
    instances: Iterable[AlertInstance],
) -> tuple[list[AlertInstance], list[Transition]]:
    """One evaluation of ``rule`` at ``t`` whose expression returned ``active``.

    Returns the instances to keep (sorted by labels) and this evaluation's transitions."""
    if t.tzinfo is None:
        raise ValueError("evaluation time must be timezone-aware")
    hold = timedelta(seconds=rule.for_s)
    keep_for = timedelta(seconds=rule.keep_firing_for_s)

    # 1. the alerts of this result (any error here leaves the state untouched, as in Prometheus)
    current: dict[LabelKey, tuple[dict[str, str], dict[str, str], float]] = {}
    for series, value in active:
        labels, annotations = alert_labels(rule, series, float(value))
        k = _key(labels)
        if k in current:
            raise LifecycleError(
                f"alert {rule.name!r}: vector contains metrics with the same labelset after applying alert labels: "
                + "{"
                + ", ".join(f'{n}="{v}"' for n, v in k)
                + "}"
            )
        current[k] = (labels, annotations, float(value))

    state: dict[LabelKey, AlertInstance] = {a.key: a for a in instances}
    transitions: list[Transition] = []

    # 2. merge: a live (pending/firing) alert takes the new value and annotations; else a new pending one
    for k, (labels, annotations, value) in current.items():
        old = state.get(k)
        if old is not None and old.state is not AlertState.INACTIVE:
            state[k] = replace(old, last_value=value, annotations=annotations, last_seen=t, keep_firing_since=None)
        else:
            new = AlertInstance(labels, annotations, AlertState.PENDING, active_at=t, last_value=value, last_seen=t)
            state[k] = new
            transitions.append(Transition("pending", t, new))

    # 3. alerts whose series is gone; pending ones that are due fire
    out: dict[LabelKey, AlertInstance] = {}
    for k, a in state.items():
        if k not in current:
            keep_firing = False
            if a.state is AlertState.FIRING and keep_for > timedelta(0):
                if a.keep_firing_since is None:
                    a = replace(a, keep_firing_since=t)
                assert a.keep_firing_since is not None
                keep_firing = t - a.keep_firing_since < keep_for
            if a.state is AlertState.PENDING:
                continue  # never fired: dropped without a resolve
            if a.resolved_at is not None and t - a.resolved_at > RESOLVED_RETENTION:
                continue  # forgotten
            if a.state is not AlertState.INACTIVE and not keep_firing:
                a = replace(a, state=AlertState.INACTIVE, resolved_at=t)
                transitions.append(Transition("resolved", t, a))
            out[k] = a
            if not keep_firing:
                continue
        if a.state is AlertState.PENDING and t - a.active_at >= hold:
            a = replace(a, state=AlertState.FIRING, fired_at=t)
            transitions.append(Transition("firing", t, a))
        out[k] = a

    order = {"pending": 0, "firing": 1, "resolved": 2}
    transitions.sort(key=lambda tr: (tr.alert.key, order[tr.kind]))
    return sorted(out.values(), key=lambda a: a.key), transitions


@dataclass(frozen=True)
class ReplayStep:
    t: datetime
    instances: list[AlertInstance]
    transitions: list[Transition] = field(default_factory=list)


def replay(
    rule: Rule,
    lake: Lake,
    start: datetime,
    end: datetime,
    interval: timedelta | float,
    instances: Iterable[AlertInstance] = (),
) -> list[ReplayStep]:
    """Evaluate ``rule`` at ``start``, ``start + interval``, … up to ``end`` (inclusive), stepping the state.

    A scalar result counts as one series with no labels, as Prometheus's rule query does."""
    every = interval if isinstance(interval, timedelta) else timedelta(seconds=interval)
    if every <= timedelta(0):
        raise ValueError("interval must be positive")
    state = list(instances)
    steps: list[ReplayStep] = []
    t = start
    while t <= end:
        result = evaluate(rule.expr_ast, lake, t)
        vector: list[tuple[Mapping[str, str], float]] = [({}, result)] if isinstance(result, float) else list(result)
        state, transitions = step(rule, vector, t, state)
        steps.append(ReplayStep(t, state, transitions))
        t += every
    return steps

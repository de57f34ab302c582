"""The Alertmanager routing tree: which receivers an alert reaches, with which grouping and timers.

A faithful port of Alertmanager 0.25's ``dispatch/route.go`` over its config shape::

    route:
      receiver: default            # required at the root
      group_by: [alertname]        # '...' = group by all labels
      group_wait: 30s              # defaults 30s / 5m / 4h at the root
      routes:
        - matchers: ['team="db"', 'severity=~"crit|page"']
          receiver: db-pager
          continue: true           # keep matching the next siblings
          mute_time_intervals: [offhours]
        - match: {team: web}       # deprecated forms still work
          match_re: {env: "prod.*"}
          receiver: web

Semantics: a child inherits every unset setting (receiver, group_by, timers) from its parent, except
the mute/active time interval lists, which Alertmanager does not inherit. ``Route.match`` is a
depth-first, left-to-right search: a node whose matchers hold tries its children in order, stops after
the first child that matched unless that child has ``continue: true``, and is itself the match when no
child matched. The result is the list of matched nodes in that order, each with its effective settings
— exactly what ``amtool config routes test`` prints (the oracle test checks this).

Config errors raise ``ConfigPathError`` with the path into the document, which ``notify_config`` maps
to ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.alerting.model import labels_text
from tasks.alerting.notify.matchers import (
    LABEL_NAME_RE,
    ConfigPathError,
    Matcher,
    MatcherError,
    PathPart,
    matchers_match,
    matchers_text,
    new_matcher,
    parse_matchers,
)
from tasks.timeparse import parse_prometheus_duration

__all__ = [
    "DEFAULT_GROUP_INTERVAL_S",
    "DEFAULT_GROUP_WAIT_S",
    "DEFAULT_REPEAT_INTERVAL_S",
    "Route",
    "RouteMatch",
    "build_route",
    "group_key",
    "group_labels",
    "legacy_matchers",
    "parse_matcher_list",
    "receivers_for",
]

DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0

_ROUTE_FIELDS = {
    "receiver",
    "group_by",
    "continue",
    "matchers",
    "match",
    "match_re",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "mute_time_intervals",
    "active_time_intervals",
    "routes",
}
_TRUE = {"y", "yes", "true", "on"}
_FALSE = {"n", "no", "false", "off"}


@dataclass(frozen=True)
class RouteMatch:
    """A matched route node with its effective settings (what the notification pipeline needs)."""

    route_id: str
    route_key: str
    path: tuple[int, ...]
    receiver: str
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    continue_: bool


@dataclass(frozen=True)
class Route:
    """One node of the tree with its *effective* (inherited) settings."""

    receiver: str
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    matchers: tuple[Matcher, ...]
    continue_: bool
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    path: tuple[int, ...]
    key: str
    id: str
    routes: tuple[Route, ...] = ()
    _match: RouteMatch | None = field(default=None, compare=False, repr=False)

    def as_match(self) -> RouteMatch:
        if self._match is not None:
            return self._match
        rm = RouteMatch(
            route_id=self.id,
            route_key=self.key,
            path=self.path,
            receiver=self.receiver,
            group_by=self.group_by,
            group_by_all=self.group_by_all,
            group_wait_s=self.group_wait_s,
            group_interval_s=self.group_interval_s,
            repeat_interval_s=self.repeat_interval_s,
            mute_time_intervals=self.mute_time_intervals,
            active_time_intervals=self.active_time_intervals,
            continue_=self.continue_,
        )
        object.__setattr__(self, "_match", rm)
        return rm

    def _match_nodes(self, labels: Mapping[str, str]) -> list[Route] | None:
        if not matchers_match(self.matchers, labels):
            return None
        found: list[Route] = []
        for child in self.routes:
            sub = child._match_nodes(labels)
            if sub is None:
                continue
            found.extend(sub)
            if not child.continue_:
                break
        return found or [self]

    def match(self, labels: Mapping[str, str]) -> list[RouteMatch]:
        """The matched nodes in Alertmanager's order (empty only if this node's matchers fail)."""
        return [r.as_match() for r in self._match_nodes(labels) or []]

    def walk(self) -> Iterator[Route]:
        """Depth-first over the tree, this node first."""
        yield self
        for child in self.routes:
            yield from child.walk()


def receivers_for(route: Route, labels: Mapping[str, str]) -> list[str]:
    """Receiver names in match order (repeats kept, as ``amtool config routes test`` prints them)."""
    return [m.receiver for m in route.match(labels)]


def group_labels(route_match: RouteMatch, labels: Mapping[str, str]) -> dict[str, str]:
    """The alert's labels this route groups by (only those the alert has, as Alertmanager)."""
    if route_match.group_by_all:
        return dict(labels)
    return {k: labels[k] for k in route_match.group_by if k in labels}


def group_key(route_match: RouteMatch, labels: Mapping[str, str]) -> str:
    """``<route id>:{grouping labels}`` — one notification group per route node and label values.

    Alertmanager uses the route *key* (matchers path) here but keys its group map by route object; we
    persist the key, so we use the route *id* (key plus sibling position), which stays unique even when
    two siblings have identical matchers."""
    return f"{route_match.route_id}:{labels_text(group_labels(route_match, labels))}"


# ---- building -------------------------------------------------------------------------------------------


def _bool(v: Any, path: Sequence[PathPart]) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in _TRUE | _FALSE:
        return v.lower() in _TRUE
    raise ConfigPathError(path, f"expected true or false, got {v!r}")


def _str(v: Any, path: Sequence[PathPart]) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ConfigPathError(path, f"expected a string, got {type(v).__name__}")
    return str(v)


def _str_list(v: Any, path: Sequence[PathPart]) -> list[str]:
    if not isinstance(v, list):
        raise ConfigPathError(path, f"expected a list of strings, got {type(v).__name__}")
    return [_str(x, (*path, i)) for i, x in enumerate(v)]


def _duration(v: Any, path: Sequence[PathPart]) -> float:
    try:
        return parse_prometheus_duration(_str(v, path))
    except ValueError as exc:
        raise ConfigPathError(path, str(exc)) from None


def parse_matcher_list(v: Any, path: Sequence[PathPart]) -> list[Matcher]:
    """A ``matchers:`` list: each string may hold several comma-separated matchers (as Alertmanager)."""
    out: list[Matcher] = []
    for i, text in enumerate(_str_list(v, path)):
        try:
            out.extend(parse_matchers(text))
        except MatcherError as exc:
            raise ConfigPathError((*path, i), exc.message, offset=exc.position) from None
    return out


def legacy_matchers(v: Any, op: str, path: Sequence[PathPart]) -> list[Matcher]:
    """The deprecated ``match:`` (``op`` ``=``) / ``match_re:`` (``=~``) maps, label names checked."""
    if not isinstance(v, Mapping):
        raise ConfigPathError(path, f"expected a mapping of label name to value, got {type(v).__name__}")
    out = []
    for name, value in v.items():
        if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
            raise ConfigPathError((*path, str(name)), f"invalid label name {name!r}", at_key=True)
        try:
            out.append(new_matcher(name, op, "" if value is None else _scalar(value, (*path, name))))
        except MatcherError as exc:
            raise ConfigPathError((*path, name), str(exc)) from None
    return out


def _scalar(v: Any, path: Sequence[PathPart]) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _str(v, path)


def build_route(
    cfg: Any,
    *,
    receivers: Collection[str] | None = None,
    time_intervals: Collection[str] | None = None,
    path: Sequence[PathPart] = ("route",),
) -> Route:
    """Validate a ``route:`` mapping and build the tree with inherited settings.

    ``receivers``/``time_intervals``: the defined names; when given, every reference must exist."""
    if not isinstance(cfg, Mapping):
        raise ConfigPathError(path, "route must be a mapping")
    if not cfg.get("receiver"):
        raise ConfigPathError(path, "root route must specify a default receiver")
    for bad in ("matchers", "match", "match_re"):
        if cfg.get(bad):
            raise ConfigPathError((*path, bad), "root route must not have any matchers")
    for bad in ("mute_time_intervals", "active_time_intervals"):
        if cfg.get(bad):
            raise ConfigPathError((*path, bad), f"root route must not have any {bad.replace('_', ' ')}")
    if "continue" in cfg and _bool(cfg["continue"], (*path, "continue")):
        raise ConfigPathError((*path, "continue"), "cannot have continue in root route")
    root = _build(cfg, None, (), "", receivers, time_intervals, tuple(path))
    return root


def _build(
    cfg: Any,
    parent: Route | None,
    position: tuple[int, ...],
    parent_key: str,
    receivers: Collection[str] | None,
    time_intervals: Collection[str] | None,
    path: tuple[PathPart, ...],
) -> Route:
    if not isinstance(cfg, Mapping):
        raise ConfigPathError(path, "route must be a mapping")
    for k in cfg:
        if k not in _ROUTE_FIELDS:
            allowed = ", ".join(sorted(_ROUTE_FIELDS))
            raise ConfigPathError((*path, str(k)), f"unknown field {k!r} (allowed: {allowed})", at_key=True)

    receiver = parent.receiver if parent else ""
    if cfg.get("receiver"):
        receiver = _str(cfg["receiver"], (*path, "receiver"))
        if receivers is not None and receiver not in receivers:
            raise ConfigPathError((*path, "receiver"), f"undefined receiver {receiver!r} used in route")

    group_by = parent.group_by if parent else ()
    group_by_all = parent.group_by_all if parent else False
    if cfg.get("group_by") is not None:
        names = _str_list(cfg["group_by"], (*path, "group_by"))
        wildcard = "..." in names
        labels = [n for n in names if n != "..."]
        if wildcard and labels:
            raise ConfigPathError((*path, "group_by"), "cannot have wildcard group_by (`...`) and other labels")
        seen: set[str] = set()
        for i, n in enumerate(labels):
            if not LABEL_NAME_RE.match(n):
                raise ConfigPathError((*path, "group_by", i), f"invalid label name {n!r} in group_by list")
            if n in seen:
                raise ConfigPathError((*path, "group_by", i), f"duplicated label {n!r} in group_by")
            seen.add(n)
        # As route.go: labels replace the parent's list (and clear '...'); '...' alone sets group-by-all;
        # an empty list changes nothing (Go sees no labels and no wildcard, so the parent's apply).
        if labels:
            group_by, group_by_all = tuple(labels), False
        elif wildcard:
            group_by_all = True

    timers = {
        "group_wait": parent.group_wait_s if parent else DEFAULT_GROUP_WAIT_S,
        "group_interval": parent.group_interval_s if parent else DEFAULT_GROUP_INTERVAL_S,
        "repeat_interval": parent.repeat_interval_s if parent else DEFAULT_REPEAT_INTERVAL_S,
    }
    for name in timers:
        if cfg.get(name) is not None:
            secs = _duration(cfg[name], (*path, name))
            if secs == 0 and name != "group_wait":
                raise ConfigPathError((*path, name), f"{name} cannot be zero")
            timers[name] = secs

    matchers: list[Matcher] = []
    if cfg.get("match") is not None:
        matchers += legacy_matchers(cfg["match"], "=", (*path, "match"))
    if cfg.get("match_re") is not None:
        matchers += legacy_matchers(cfg["match_re"], "=~", (*path, "match_re"))
    if cfg.get("matchers") is not None:
        matchers += parse_matcher_list(cfg["matchers"], (*path, "matchers"))
    matchers.sort(key=lambda m: m.sort_key)

    intervals: dict[str, tuple[str, ...]] = {}
    for name in ("mute_time_intervals", "active_time_intervals"):
        names = _str_list(cfg[name], (*path, name)) if cfg.get(name) is not None else []
        for i, n in enumerate(names):
            if time_intervals is not None and n not in time_intervals:
                raise ConfigPathError((*path, name, i), f"undefined time interval {n!r} used in route")
        intervals[name] = tuple(names)

    cont = _bool(cfg["continue"], (*path, "continue")) if cfg.get("continue") is not None else False
    key = (parent_key + "/" if parent is not None else "") + matchers_text(matchers)
    rid = key + (f"/{position[-1]}" if position else "")
    node = Route(
        receiver=receiver,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait_s=timers["group_wait"],
        group_interval_s=timers["group_interval"],
        repeat_interval_s=timers["repeat_interval"],
        matchers=tuple(matchers),
        continue_=cont,
        mute_time_intervals=intervals["mute_time_intervals"],
        active_time_intervals=intervals["active_time_intervals"],
        path=position,
        key=key,
        id=rid,
    )
    children_cfg = cfg.get("routes")
    if children_cfg is None:
        return node
    if not isinstance(children_cfg, list):
        raise ConfigPathError((*path, "routes"), "routes must be a list of routes")
    children = tuple(
        _build(c, node, (*position, i), key, receivers, time_intervals, (*path, "routes", i))
        for i, c in enumerate(children_cfg)
    )
    object.__setattr__(node, "routes", children)
    return node

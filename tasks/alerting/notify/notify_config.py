"""The notification config file: Alertmanager's top-level shape plus our extensions.

::

    route: {...}                 # routing tree (tasks.alerting.notify.routing)
    receivers:                   # Apprise receivers (tasks.alerting.notify.receivers), validated here
      - name: ops
        apprise: ["json://127.0.0.1:8080/hook"]
        send_resolved: true
    inhibit_rules: [...]         # tasks.alerting.notify.inhibit
    time_intervals: [...]        # tasks.alerting.notify.timeintervals (also the deprecated mute_time_intervals)
    global: {...}                # Alertmanager's, accepted and kept raw
    templates: [...]             # Alertmanager's, accepted and kept raw
    # ours (tasks.alerting.notify.dispatch.DispatchSettings), validated here:
    escalation: {RECEIVER: {name, steps: [{after: 0m, receiver: a}, {after: 15m, receiver: b}], repeat}}
    flapping: {window: 1h, start_changes: 4, stop_changes: 2}
    rate_limits: {default: {max_messages: 10, per: 5m}, receivers: {pager: {max_messages: 3, per: 1h}}}
    nflog_retention: 120h

How long an acknowledgement holds by default is a setting (``alerting.ack_timeout``), not part of
this file: it is about how people work, not about where messages go.

Why compose YAML nodes (as ``rules.rule_files`` does): every error is reported as ``file:line:col: message`` at
its place in the file. The section parsers work on plain data and raise ``ConfigPathError`` with a path
(``route.routes[1].receiver``); this module maps the path back to the node's mark. Errors from
independent sections are all collected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tasks.alerting.notify.dispatch import DispatchSettings
from tasks.alerting.notify.inhibit import InhibitRule, parse_inhibit_rules
from tasks.alerting.notify.matchers import ConfigPathError, PathPart
from tasks.alerting.notify.receivers import Receiver, ReceiverError, parse_receiver
from tasks.alerting.notify.routing import Route, build_route
from tasks.alerting.notify.timeintervals import TimeInterval, parse_named_time_intervals

__all__ = [
    "EXTENSION_SECTIONS",
    "NotifyConfig",
    "NotifyConfigError",
    "alertmanager_config",
    "load_notify_config",
    "parse_notify_config",
]

EXTENSION_SECTIONS = ("escalation", "flapping", "rate_limits", "nflog_retention")
_AM_SECTIONS = ("global", "route", "receivers", "inhibit_rules", "templates", "time_intervals", "mute_time_intervals")
_TOP = set(_AM_SECTIONS) | set(EXTENSION_SECTIONS)
_RECEIVER_NAME_RE = re.compile(r"\S(?:.*\S)?\Z", re.S)


class NotifyConfigError(ValueError):
    """Invalid notification config; ``errors`` holds every problem as ``file:line:col: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class NotifyConfig:
    """A loaded, validated notification config."""

    path: str
    route: Route
    receivers: dict[str, dict[str, Any]]
    inhibit_rules: tuple[InhibitRule, ...] = ()
    time_intervals: dict[str, tuple[TimeInterval, ...]] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    _root: yaml.Node | None = field(default=None, repr=False, compare=False)

    parsed_receivers: dict[str, Receiver] = field(default_factory=dict)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)

    def position(self, path: Sequence[PathPart], *, at_key: bool = False) -> str:
        """``file:line:col`` of the node at ``path`` (the deepest existing part), for later validators."""
        return _where(self.path, self._root, path, at_key)

    def error(self, path: Sequence[PathPart], message: str) -> str:
        """``file:line:col: message`` for a problem a later validator found at ``path``."""
        return f"{self.position(path)}: {message}"


def _where(
    file: str, root: yaml.Node | None, path: Sequence[PathPart], at_key: bool = False, offset: int | None = None
) -> str:
    node = root
    mark = root.start_mark if root is not None else None
    for part in path:
        nxt: yaml.Node | None = None
        key_node: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    key_node, nxt = k, v
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            break
        node = nxt
        mark = key_node.start_mark if at_key and key_node is not None and part == path[-1] else nxt.start_mark
    if mark is None:
        return f"{file}:1:1"
    col = mark.column + 1
    if offset is not None and isinstance(node, yaml.ScalarNode) and node.start_mark.line == node.end_mark.line:
        # a single-line scalar: step over the opening quote to the offending character
        col += offset + (1 if node.style in ("'", '"') else 0)
    return f"{file}:{mark.line + 1}:{col}"


def _check_duplicates(node: yaml.Node, file: str, errors: list[str]) -> None:
    """Repeated mapping keys are errors (PyYAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    errors.append(
                        f"{file}:{k.start_mark.line + 1}:{k.start_mark.column + 1}: field {k.value!r} already set"
                    )
                seen.add(k.value)
            _check_duplicates(v, file, errors)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicates(v, file, errors)


def parse_notify_config(text: str, path: str = "<config>") -> NotifyConfig:
    """Parse and validate the config text; raises ``NotifyConfigError`` with every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else f"{path}:1:1"
        raise NotifyConfigError([f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}"]) from None
    errors: list[str] = []
    if root is None:
        raise NotifyConfigError([f"{path}:1:1: empty config: a route and receivers are required"])
    if not isinstance(root, yaml.MappingNode):
        raise NotifyConfigError([f"{_where(path, root, ())}: the config must be a mapping"])
    _check_duplicates(root, path, errors)
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise NotifyConfigError([f"{path}:1:1: {exc}"]) from None
    finally:
        loader.dispose()

    def fail(exc: ConfigPathError) -> None:
        errors.append(f"{_where(path, root, exc.path, exc.at_key, exc.offset)}: {exc.message}")

    for key in data:
        if key not in _TOP:
            fail(
                ConfigPathError(
                    (str(key),), f"unknown section {key!r} (allowed: {', '.join(sorted(_TOP))})", at_key=True
                )
            )

    receivers: dict[str, dict[str, Any]] = {}
    parsed: dict[str, Receiver] = {}
    base_dir = str(Path(path).parent) if path and not path.startswith("<") else None
    rseq = data.get("receivers")
    if rseq is None:
        fail(ConfigPathError((), "receivers: at least one receiver is required"))
    elif not isinstance(rseq, list):
        fail(ConfigPathError(("receivers",), "receivers must be a list"))
    else:
        for i, r in enumerate(rseq):
            p: tuple[PathPart, ...] = ("receivers", i)
            if not isinstance(r, Mapping):
                fail(ConfigPathError(p, "a receiver must be a mapping with a name"))
                continue
            name = r.get("name")
            if not isinstance(name, str) or not name:
                fail(ConfigPathError((*p, "name") if "name" in r else p, "missing name in receiver"))
                continue
            if not _RECEIVER_NAME_RE.match(name):
                fail(ConfigPathError((*p, "name"), f"receiver name {name!r} must not start or end with blanks"))
                continue
            if name in receivers:
                fail(ConfigPathError((*p, "name"), f"receiver name {name!r} is not unique"))
                continue
            receivers[name] = {k: v for k, v in r.items() if k != "name"}
            try:
                parsed[name] = parse_receiver(r, base_dir=base_dir)
            except ReceiverError as exc:
                fld = next((k for k in r if f": {k}:" in str(exc)), None)
                fail(ConfigPathError((*p, fld) if fld else p, str(exc)))

    intervals: dict[str, tuple[TimeInterval, ...]] = {}
    for section in ("mute_time_intervals", "time_intervals"):
        try:
            intervals.update(parse_named_time_intervals(data.get(section), (section,), seen=intervals))
        except ConfigPathError as exc:
            fail(exc)

    route: Route | None = None
    if data.get("route") is None:
        fail(ConfigPathError((), "route: no route provided in config"))
    else:
        try:
            route = build_route(
                data["route"],
                receivers=receivers if isinstance(rseq, list) else None,
                time_intervals=intervals,
            )
        except ConfigPathError as exc:
            fail(exc)

    inhibit: list[InhibitRule] = []
    try:
        inhibit = parse_inhibit_rules(data.get("inhibit_rules"))
    except ConfigPathError as exc:
        fail(exc)

    dispatch = DispatchSettings()
    try:
        dispatch = DispatchSettings.from_mapping({k: data[k] for k in EXTENSION_SECTIONS if k in data})
    except ValueError as exc:
        msg = str(exc).removeprefix("dispatch.").removeprefix("dispatch: ")
        hit = [k for k in EXTENSION_SECTIONS if msg.startswith(k)]
        fail(ConfigPathError((hit[0],) if hit else (), msg, at_key=bool(hit)))
    for policy_receiver, policy in dispatch.escalation.items():
        for i, step in enumerate(policy.steps):
            if step.receiver not in receivers and isinstance(rseq, list):
                fail(
                    ConfigPathError(
                        ("escalation", policy_receiver, "steps", i, "receiver"),
                        f"escalation step receiver {step.receiver!r} is not a defined receiver",
                    )
                )
        if policy_receiver not in receivers and isinstance(rseq, list):
            fail(
                ConfigPathError(
                    ("escalation", policy_receiver),
                    f"escalation policy for undefined receiver {policy_receiver!r}",
                    at_key=True,
                )
            )

    if errors or route is None:
        raise NotifyConfigError(errors)
    return NotifyConfig(
        path=path,
        route=route,
        receivers=receivers,
        inhibit_rules=tuple(inhibit),
        time_intervals=intervals,
        extensions={k: data[k] for k in EXTENSION_SECTIONS if k in data},
        parsed_receivers=parsed,
        dispatch=dispatch,
        raw=data,
        _root=root,
    )


def load_notify_config(path: str | Path) -> NotifyConfig:
    """Read and validate a notification config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotifyConfigError([f"{p}: cannot read: {exc.strerror}"]) from None
    return parse_notify_config(text, str(p))


def alertmanager_config(cfg: NotifyConfig, *, webhook_url: str = "http://127.0.0.1:9/") -> dict[str, Any]:
    """The Alertmanager-compatible part of ``cfg`` as a dict for ``amtool check-config``/``routes test``.

    Receivers become dummy webhook receivers (amtool only needs them to exist); our extension sections
    and receiver fields are dropped."""
    out: dict[str, Any] = {k: cfg.raw[k] for k in _AM_SECTIONS if k in cfg.raw and k != "receivers"}
    out["receivers"] = [{"name": n, "webhook_configs": [{"url": webhook_url}]} for n in cfg.receivers]
    return out

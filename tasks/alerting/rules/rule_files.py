"""Rule files in the Prometheus rule-file shape, validated like ``promtool check rules``.

::

    groups:
      - name: node
        interval: 1m
        rules:
          - alert: HighCPU
            expr: avg by (instance) (cpu_usage) > 0.9
            for: 5m
            keep_firing_for: 2m
            labels: {team: infra}
            annotations: {summary: "{{ $labels.instance }} at {{ $value | humanizePercentage }}"}
            # our extensions
            resolve_expr: avg by (instance) (cpu_usage) < 0.8
            no_data: keep_last          # nodata | alerting | ok | keep_last
            severity: page
            runbook_url: https://runbooks/cpu
          - record: instance:cpu:avg
            expr: avg by (instance) (cpu_usage)

The YAML is composed into nodes (which keep their marks), so every problem — YAML syntax, unknown
or duplicate fields, a missing ``alert``/``expr``, a bad duration, an invalid label name, a duplicate
group name, a PromQL error inside ``expr``/``resolve_expr``, a template error in a label or
annotation — is reported as ``file:line:col: message`` at its place in the file; an error inside an
expression or template is mapped from its position in the string to the file. All errors are
collected, not just the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import yaml

from tasks.alerting.rules.promql import Expr, PromQLError, parse
from tasks.alerting.rules.templating import TemplateError, check_template
from tasks.lake.schema import LABEL_NAME_RE
from tasks.timeparse import parse_prometheus_duration

__all__ = [
    "DEFAULT_INTERVAL_S",
    "NO_DATA_MODES",
    "Rule",
    "RuleFileError",
    "RuleGroup",
    "RuleSet",
    "check_rule_files",
    "load_rule_files",
    "summarize",
]

#: Prometheus's default ``global.evaluation_interval``.
DEFAULT_INTERVAL_S = 60.0
NO_DATA_MODES = ("nodata", "alerting", "ok", "keep_last")
NoData = Literal["nodata", "alerting", "ok", "keep_last"]

_GROUP_FIELDS = {"name", "interval", "rules", "limit", "query_offset"}
_RULE_FIELDS = {
    "alert",
    "record",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
    "resolve_expr",
    "no_data",
    "severity",
    "runbook_url",
}
_ALERT_ONLY = ("for", "keep_firing_for", "annotations", "resolve_expr", "no_data", "severity", "runbook_url")

_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


# ---- models -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One alerting (``alert`` set) or recording (``record`` set) rule."""

    expr: str
    expr_ast: Expr
    alert: str | None = None
    record: str | None = None
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resolve_expr: str | None = None
    resolve_ast: Expr | None = None
    no_data: NoData = "ok"
    severity: str | None = None
    runbook_url: str | None = None
    file: str = ""
    line: int = 0

    @property
    def name(self) -> str:
        return self.alert or self.record or ""

    @property
    def is_alert(self) -> bool:
        return self.alert is not None


@dataclass(frozen=True)
class RuleGroup:
    name: str
    file: str
    rules: tuple[Rule, ...]
    interval_s: float = DEFAULT_INTERVAL_S
    limit: int = 0
    query_offset_s: float = 0.0


@dataclass(frozen=True)
class RuleSet:
    groups: tuple[RuleGroup, ...]

    @property
    def rules(self) -> list[Rule]:
        return [r for g in self.groups for r in g.rules]

    @property
    def alerts(self) -> list[Rule]:
        return [r for r in self.rules if r.is_alert]


class RuleFileError(ValueError):
    """Invalid rule files; ``errors`` holds every problem as ``file:line:col: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# ---- loading ------------------------------------------------------------------------------------------


class _FileChecker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.errors: list[str] = []

    def error(self, node: yaml.Node | yaml.Mark | None, message: str) -> None:
        mark = node.start_mark if isinstance(node, yaml.Node) else node
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.errors.append(f"{self.path}:{line}:{col}: {message}")

    def error_at(self, line: int, col: int, message: str) -> None:
        self.errors.append(f"{self.path}:{line}:{col}: {message}")

    # -- node helpers

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys → (key node, value node); reports non-mappings, unknown and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.error(k, f"{what}: keys must be strings")
                continue
            key = k.value
            if key in out:
                self.error(k, f"{what}: field {key!r} already set")
                continue
            if key not in allowed:
                self.error(k, f"{what}: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
                continue
            out[key] = (k, v)
        return out

    def string(self, node: yaml.Node, what: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(node, f"{what} must be a string")
            return None
        if not node.value and not allow_empty:
            self.error(node, f"{what} must not be empty")
            return None
        return str(node.value)

    def duration(self, node: yaml.Node, what: str) -> float | None:
        s = self.string(node, what)
        if s is None:
            return None
        try:
            return parse_prometheus_duration(s)
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None

    def value_position(self, node: yaml.ScalarNode, offset: int) -> tuple[int, int]:
        """File line/column (1-based) of character ``offset`` of a scalar's value.

        Walks the raw source and the value in step over non-blank characters, which handles plain,
        quoted (without escapes before the offset), literal and folded scalars alike."""
        value = node.value
        raw_start = node.start_mark.index
        raw_end = node.end_mark.index
        if node.style in ('"', "'"):
            raw_start += 1
        elif node.style in ("|", ">"):
            nl = self.text.find("\n", raw_start, raw_end)
            raw_start = nl + 1 if nl >= 0 else raw_start
        k = sum(1 for c in value[:offset] if not c.isspace())
        at_char = offset < len(value) and not value[offset].isspace()
        target = k if at_char else k - 1
        pos = raw_start
        if target >= 0:
            seen = -1
            for i in range(raw_start, max(raw_end, raw_start)):
                if not self.text[i].isspace():
                    seen += 1
                    if seen == target:
                        pos = i if at_char else i + 1
                        break
            else:
                pos = raw_end
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return line, col

    def expression(self, node: yaml.Node, what: str) -> tuple[str, Expr] | None:
        src = self.string(node, what)
        if src is None:
            return None
        assert isinstance(node, yaml.ScalarNode)
        try:
            return src, parse(src)
        except PromQLError as exc:
            lines = src.split("\n")
            offset = sum(len(x) + 1 for x in lines[: exc.line - 1]) + exc.column - 1
            self.error_at(*self.value_position(node, offset), f"{what}: could not parse expression: {exc.msg}")
            return None

    def template(self, node: yaml.Node, what: str, text: str) -> None:
        assert isinstance(node, yaml.ScalarNode)
        try:
            check_template(text)
        except TemplateError as exc:
            lines = text.split("\n")
            offset = sum(len(x) + 1 for x in lines[: exc.line - 1]) + exc.column - 1
            self.error_at(*self.value_position(node, offset), f"{what}: template: {exc.message}")

    def string_map(self, node: yaml.Node, what: str, kind: str, templates: bool) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                return {}
            self.error(node, f"{what} must be a mapping")
            return {}
        out: dict[str, str] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            if name is None or not LABEL_NAME_RE.match(name):
                self.error(k, f"{what}: invalid {kind} name {name!r} (must match [a-zA-Z_][a-zA-Z0-9_]*)")
                continue
            if kind == "label" and name.startswith("__"):
                self.error(k, f"{what}: label name {name!r} is reserved (names starting with __)")
                continue
            if name in out:
                self.error(k, f"{what}: {kind} {name!r} already set")
                continue
            val = self.string(v, f"{what}.{name}", allow_empty=True)
            if val is None:
                continue
            if templates:
                self.template(v, f"{what}.{name}", val)
            out[name] = val
        return out

    # -- document

    def check(self) -> list[RuleGroup]:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            self.error(exc.problem_mark, f"YAML syntax error: {exc.problem}")
            return []
        except yaml.YAMLError as exc:
            self.error(None, f"YAML error: {exc}")
            return []
        if root is None:
            return []  # an empty file holds no groups, as for promtool
        top = self.mapping(root, "rule file", {"groups"})
        if "groups" not in top:
            return []
        groups_node = top["groups"][1]
        if isinstance(groups_node, yaml.ScalarNode) and groups_node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(groups_node, yaml.SequenceNode):
            self.error(groups_node, "groups must be a list")
            return []
        seen: dict[str, int] = {}
        groups: list[RuleGroup] = []
        for gnode in groups_node.value:
            g = self.group(gnode, seen)
            if g is not None:
                groups.append(g)
        return groups

    def group(self, gnode: yaml.Node, seen: dict[str, int]) -> RuleGroup | None:
        f = self.mapping(gnode, "group", _GROUP_FIELDS)
        if not f:
            if isinstance(gnode, yaml.MappingNode):
                self.error(gnode, "group: field 'name' must be set")
            return None
        name: str | None = None
        if "name" not in f:
            self.error(gnode, "group: field 'name' must be set")
        else:
            name = self.string(f["name"][1], "group name")
            if name is not None:
                if name in seen:
                    self.error(
                        f["name"][1], f"group name {name!r} is repeated in the same file (first at line {seen[name]})"
                    )
                else:
                    seen[name] = f["name"][1].start_mark.line + 1
        where = f"group {name!r}" if name else "group"
        interval = DEFAULT_INTERVAL_S
        if "interval" in f:
            d = self.duration(f["interval"][1], f"{where}: interval")
            if d is not None:
                if d <= 0:
                    self.error(f["interval"][1], f"{where}: interval must be positive")
                else:
                    interval = d
        query_offset = 0.0
        if "query_offset" in f:
            query_offset = self.duration(f["query_offset"][1], f"{where}: query_offset") or 0.0
        limit = 0
        if "limit" in f:
            node = f["limit"][1]
            if isinstance(node, yaml.ScalarNode) and re.fullmatch(r"\d+", node.value):
                limit = int(node.value)
            else:
                self.error(node, f"{where}: limit must be a non-negative integer")
        rules: list[Rule] = []
        if "rules" in f:
            rnode = f["rules"][1]
            if isinstance(rnode, yaml.SequenceNode):
                for i, item in enumerate(rnode.value, 1):
                    r = self.rule(item, f"{where}, rule {i}")
                    if r is not None:
                        rules.append(r)
            elif not (isinstance(rnode, yaml.ScalarNode) and rnode.tag == "tag:yaml.org,2002:null"):
                self.error(rnode, f"{where}: rules must be a list")
        if name is None:
            return None
        return RuleGroup(name, self.path, tuple(rules), interval, limit, query_offset)

    def rule(self, node: yaml.Node, where: str) -> Rule | None:
        f = self.mapping(node, where, _RULE_FIELDS)
        if not isinstance(node, yaml.MappingNode):
            return None
        n_err = len(self.errors)
        alert = record = None
        if "alert" in f and "record" in f:
            self.error(f["record"][0], f"{where}: only one of 'record' and 'alert' must be set")
        elif "alert" not in f and "record" not in f:
            self.error(node, f"{where}: one of 'record' or 'alert' must be set")
        if "alert" in f:
            alert = self.string(f["alert"][1], f"{where}: alert")
            where = f"{where} ({alert!r})" if alert else where
        if "record" in f:
            record = self.string(f["record"][1], f"{where}: record")
            if record is not None and not _METRIC_NAME_RE.match(record):
                self.error(f["record"][1], f"{where}: invalid recording rule name {record!r}")
            where = f"{where} ({record!r})" if record else where
            if alert is None:
                for key in _ALERT_ONLY:
                    if key in f:
                        self.error(f[key][0], f"{where}: invalid field {key!r} in recording rule")
        parsed = None
        if "expr" not in f:
            self.error(node, f"{where}: field 'expr' must be set in rule")
        else:
            parsed = self.expression(f["expr"][1], f"{where}: expr")
        resolve = None
        if "resolve_expr" in f and alert is not None:
            resolve = self.expression(f["resolve_expr"][1], f"{where}: resolve_expr")
        for_s = keep_s = 0.0
        if "for" in f and record is None:
            for_s = self.duration(f["for"][1], f"{where}: for") or 0.0
        if "keep_firing_for" in f and record is None:
            keep_s = self.duration(f["keep_firing_for"][1], f"{where}: keep_firing_for") or 0.0
        is_alert = record is None
        labels = self.string_map(f["labels"][1], f"{where}: labels", "label", is_alert) if "labels" in f else {}
        annotations: dict[str, str] = {}
        if "annotations" in f and is_alert:
            annotations = self.string_map(f["annotations"][1], f"{where}: annotations", "annotation", True)
        no_data: str = "ok"
        if "no_data" in f and is_alert:
            v = self.string(f["no_data"][1], f"{where}: no_data")
            if v is not None and v not in NO_DATA_MODES:
                self.error(f["no_data"][1], f"{where}: no_data must be one of {', '.join(NO_DATA_MODES)}, got {v!r}")
            elif v is not None:
                no_data = v
        severity = runbook = None
        if "severity" in f and is_alert:
            severity = self.string(f["severity"][1], f"{where}: severity")
        if "runbook_url" in f and is_alert:
            runbook = self.string(f["runbook_url"][1], f"{where}: runbook_url")
            if runbook is not None:
                self.template(f["runbook_url"][1], f"{where}: runbook_url", runbook)
        if len(self.errors) != n_err or parsed is None:
            return None
        return Rule(
            expr=parsed[0],
            expr_ast=parsed[1],
            alert=alert,
            record=record,
            for_s=for_s,
            keep_firing_for_s=keep_s,
            labels=labels,
            annotations=annotations,
            resolve_expr=resolve[0] if resolve else None,
            resolve_ast=resolve[1] if resolve else None,
            no_data=cast(NoData, no_data),
            severity=severity,
            runbook_url=runbook,
            file=self.path,
            line=node.start_mark.line + 1,
        )


def _check(paths: Iterable[str | Path]) -> tuple[list[RuleGroup], list[str], dict[str, int]]:
    groups: list[RuleGroup] = []
    errors: list[str] = []
    counts: dict[str, int] = {}
    for p in paths:
        path = str(p)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{path}:1:1: cannot read rule file: {exc}")
            continue
        checker = _FileChecker(path, text)
        file_groups = checker.check()
        errors.extend(checker.errors)
        groups.extend(file_groups)
        counts[path] = sum(len(g.rules) for g in file_groups)
    return groups, errors, counts


def load_rule_files(paths: Sequence[str | Path]) -> RuleSet:
    """Load and validate rule files; raises :class:`RuleFileError` listing every problem."""
    groups, errors, _ = _check(paths)
    if errors:
        raise RuleFileError(errors)
    return RuleSet(tuple(groups))


def check_rule_files(paths: Sequence[str | Path]) -> list[str]:
    """Every problem in ``paths`` as ``file:line:col: message``; empty when all are valid."""
    return _check(paths)[1]


def summarize(paths: Sequence[str | Path]) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Errors plus, per file, ``(groups, rules)`` found — what ``rules check`` prints."""
    groups, errors, _ = _check(paths)
    found: dict[str, tuple[int, int]] = {str(p): (0, 0) for p in paths}
    for g in groups:
        n_groups, n_rules = found[g.file]
        found[g.file] = (n_groups + 1, n_rules + len(g.rules))
    return errors, found

"""Rule unit tests in ``promtool test rules`` format, run with our engine over a real lake.

A test file (Prometheus 2.42's format, so people keep the tests they have)::

    rule_files: [rules.yml]            # relative to the test file; globs allowed
    evaluation_interval: 1m            # default 1m
    group_eval_order: [first, second]  # optional
    tests:
      - interval: 1m                   # input series spacing (default: evaluation_interval)
        name: optional name
        input_series:
          - series: 'up{job="api"}'
            values: '1 1 0x5 stale _ 1'
        alert_rule_test:
          - eval_time: 5m
            alertname: Down
            exp_alerts:
              - exp_labels: {job: api, severity: page}
                exp_annotations: {summary: "api is down"}
        promql_expr_test:
          - expr: up == 0
            eval_time: 3m
            exp_samples:
              - labels: 'up{job="api"}'
                value: 0

How a test group runs (what promtool does, checked against it):

* The input series are expanded (:mod:`tasks.alerting.rules.promtool_series`) with value ``i`` at
  ``1970-01-01T00:00:00Z + i·interval`` and written to a fresh temporary :class:`tasks.lake.Lake`
  (the lake takes 1970 timestamps as they are: no shift). ``stale`` values become
  :class:`~tasks.alerting.rules.evaluate.StaleMarkers`; NaN/±Inf values are refused (the lake stores
  finite floats only).
* Every rule of every group is evaluated at ``0, evaluation_interval, …`` up to the largest
  ``eval_time`` of the group — promtool steps all groups at ``evaluation_interval`` and ignores
  each group's own ``interval``. Groups run in ``group_eval_order`` first, then file order.
  Alerting rules step :func:`tasks.alerting.rules.lifecycle.step`; recording rules and the ``ALERTS`` /
  ``ALERTS_FOR_STATE`` series are written back to the lake (lazily: only before an expression that
  can select them) with staleness markers for series that vanish, as a rule group does.
* An ``alert_rule_test`` at ``eval_time`` is compared with the evaluation at the largest step
  ``<= eval_time``: the *firing* alerts of every rule with that name (labels incl. ``alertname``,
  and annotations), order-insensitive.
* A ``promql_expr_test`` is evaluated after the last step, at ``eval_time``, and compared exactly
  (labels and values, order-insensitive).

The one evaluation call is ``evaluate_fn`` (default :func:`tasks.alerting.rules.evaluate.evaluate`): any
engine with the signature ``(expr, lake, t, *, stale=None)`` can be tested the same way.

Reports read like promtool's: ``Unit Testing:  FILE`` then ``  SUCCESS`` or ``  FAILED:`` and one
message per failure showing expected and got. Differences from promtool 2.42: a test group without
``interval`` uses ``evaluation_interval`` (promtool 2.42 would load every value at time 0); and
``external_labels``/``external_url`` are read but not passed to templates (the lifecycle module
renders without them).
"""

from __future__ import annotations

import glob
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml

from tasks.alerting.model import labels_text
from tasks.alerting.rules.evaluate import EvalError, StaleMarkers, Vector, evaluate
from tasks.alerting.rules.lifecycle import AlertInstance, AlertState, LifecycleError, step
from tasks.alerting.rules.promql import (
    Aggregate,
    Binary,
    Call,
    Expr,
    MatrixSelector,
    PromQLError,
    Unary,
    VectorSelector,
    parse,
)
from tasks.alerting.rules.promtool_series import InputSeries, SeriesNotationError, Stale, expand_input_series
from tasks.alerting.rules.rule_files import Rule, RuleFileError, RuleGroup, load_rule_files
from tasks.lake import Lake, Sample
from tasks.timeparse import format_duration, parse_prometheus_duration

__all__ = [
    "EPOCH",
    "AlertTestCase",
    "EvaluateFn",
    "ExpAlert",
    "ExpSample",
    "FileResult",
    "PromQLTestCase",
    "RuleTestFile",
    "RuleTestFileError",
    "Simulation",
    "TestGroup",
    "alerts_series_labels",
    "eval_times",
    "format_sample_value",
    "load_test_file",
    "run_test_file",
    "run_test_files",
]

#: promtool evaluates unit tests from the Unix epoch.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALERTS = "ALERTS"
ALERTS_FOR_STATE = "ALERTS_FOR_STATE"
NAME = "__name__"

LabelKey = tuple[tuple[str, str], ...]


class EvaluateFn(Protocol):
    """The engine under test: ``evaluate(expr, lake, t, *, stale=None)``."""

    def __call__(
        self, expr: Expr | str, lake: Lake, t: datetime, *, stale: StaleMarkers | None = None
    ) -> float | Vector: ...


class RuleTestFileError(ValueError):
    """A test file that cannot be run; ``errors`` are ``file:line:col: field: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# ---- the test file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpAlert:
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class AlertTestCase:
    eval_time_s: float
    alertname: str
    exp_alerts: list[ExpAlert]
    line: int = 0


@dataclass(frozen=True)
class ExpSample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class PromQLTestCase:
    expr: str
    eval_time_s: float
    exp_samples: list[ExpSample]
    line: int = 0


@dataclass(frozen=True)
class TestGroup:
    interval_s: float
    input_series: list[InputSeries]
    alert_tests: list[AlertTestCase] = field(default_factory=list)
    promql_tests: list[PromQLTestCase] = field(default_factory=list)
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    name: str = ""
    line: int = 0

    __test__ = False  # not a pytest class

    @property
    def max_eval_time_s(self) -> float:
        times = [a.eval_time_s for a in self.alert_tests] + [p.eval_time_s for p in self.promql_tests]
        return max(times, default=0.0)


@dataclass(frozen=True)
class RuleTestFile:
    path: str
    rule_files: list[str]
    evaluation_interval_s: float
    group_eval_order: list[str]
    tests: list[TestGroup]
    warnings: list[str] = field(default_factory=list)


_FILE_FIELDS = {"rule_files", "evaluation_interval", "group_eval_order", "tests"}
_GROUP_FIELDS = {
    "interval",
    "input_series",
    "alert_rule_test",
    "promql_expr_test",
    "external_labels",
    "external_url",
    "name",
}
_ALERT_TEST_FIELDS = {"eval_time", "alertname", "exp_alerts"}
_EXP_ALERT_FIELDS = {"exp_labels", "exp_annotations"}
_PROMQL_TEST_FIELDS = {"expr", "eval_time", "exp_samples"}
_EXP_SAMPLE_FIELDS = {"labels", "value"}
_NULL = "tag:yaml.org,2002:null"


class _Checker:
    """Walks the composed YAML (nodes keep their marks) so every error names its field and place."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []

    def error(self, node: yaml.Node | None, where: str, message: str) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)
        self.errors.append(f"{self.path}:{line}:{col}: {where}: {message}")

    @staticmethod
    def is_null(node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL

    def mapping(self, node: yaml.Node, where: str, allowed: set[str]) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, where, "must be a mapping")
            return None
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is None or key not in allowed:
                self.error(k, where, f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
            elif key in out:
                self.error(k, where, f"field {key!r} already set")
            else:
                out[key] = v
        return out

    def sequence(self, node: yaml.Node | None, where: str) -> list[yaml.Node]:
        if node is None or self.is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, where, "must be a list")
            return []
        return list(node.value)

    def string(self, node: yaml.Node, where: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or self.is_null(node):
            self.error(node, where, "must be a string")
            return None
        return str(node.value)

    def duration(self, node: yaml.Node | None, where: str, default: float | None) -> float | None:
        if node is None or self.is_null(node):
            return default
        text = self.string(node, where)
        if text is None:
            return None
        try:
            d = parse_prometheus_duration(text)
        except ValueError as exc:
            self.error(node, where, str(exc))
            return None
        if d < 0:
            self.error(node, where, "must not be negative")
            return None
        return d

    def string_map(self, node: yaml.Node | None, where: str) -> dict[str, str]:
        if node is None or self.is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.error(node, where, "must be a mapping of names to strings")
            return {}
        out: dict[str, str] = {}
        for k, v in node.value:
            name = self.string(k, where)
            val = self.string(v, f"{where}.{name}") if name is not None else None
            if name is not None and val is not None:
                out[name] = val
        return out

    def number(self, node: yaml.Node | None, where: str) -> float | None:
        if node is None or self.is_null(node):
            return 0.0  # promtool: a missing value is 0
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, where, "must be a number")
            return None
        text = node.value.strip()
        special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
        try:
            return float(special.get(text.lower(), text))
        except ValueError:
            self.error(node, where, f"must be a number, got {text!r}")
            return None


def _parse_metric(text: str) -> dict[str, str]:
    """``'m{a="b"}'`` or ``'{a="b"}'`` → labels with ``__name__`` (promtool's ``parser.ParseMetric``)."""
    t = text.strip()
    if t in ("", "{}"):
        return {}
    node = parse(t)
    if not isinstance(node, VectorSelector):
        raise PromQLError(f'expected a series like metric{{label="value"}}, got {text!r}', 1, 1)
    out: dict[str, str] = {}
    for m in node.selector.matchers:
        if m.op != "=":
            raise PromQLError(f"only '=' may be used in a series, got {m}", 1, 1)
        if m.value != "":
            out[m.name] = m.value
    return out


def load_test_file(path: str | Path) -> RuleTestFile:
    """Parse and validate a promtool test file; raises :class:`RuleTestFileError` naming each bad field."""
    p = str(path)
    try:
        text = Path(p).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleTestFileError([f"{p}:1:1: cannot read test file: {exc}"]) from None
    c = _Checker(p)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise RuleTestFileError([f"{p}:{line}:{col}: YAML syntax error: {exc.problem}"]) from None
    if root is None:
        raise RuleTestFileError([f"{p}:1:1: test file is empty (expected rule_files and tests)"])
    top = c.mapping(root, "test file", _FILE_FIELDS)
    if top is None:
        raise RuleTestFileError(c.errors)
    base = os.path.dirname(p)
    rule_files: list[str] = []
    warnings: list[str] = []
    for i, node in enumerate(c.sequence(top.get("rule_files"), "rule_files")):
        pattern = c.string(node, f"rule_files[{i}]")
        if not pattern:
            continue
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        found = sorted(glob.glob(full))
        if not found:
            warnings.append(f"  WARNING: no file match pattern {full}")
        rule_files.extend(found)
    if "rule_files" not in top:
        c.error(root, "rule_files", "must be set (a list of rule files, relative to the test file)")
    ev = c.duration(top.get("evaluation_interval"), "evaluation_interval", 60.0)
    if ev == 0:
        ev = 60.0  # promtool: 0 means the default
    order: list[str] = []
    for i, node in enumerate(c.sequence(top.get("group_eval_order"), "group_eval_order")):
        name = c.string(node, f"group_eval_order[{i}]")
        if name is None:
            continue
        if name in order:
            c.error(node, f"group_eval_order[{i}]", f"group name repeated in evaluation order: {name}")
        order.append(name)
    tests = [
        g
        for i, node in enumerate(c.sequence(top.get("tests"), "tests"))
        if (g := _test_group(c, node, f"tests[{i}]", ev or 60.0)) is not None
    ]
    if c.errors:
        raise RuleTestFileError(c.errors)
    return RuleTestFile(p, rule_files, ev or 60.0, order, tests, warnings)


def _test_group(c: _Checker, node: yaml.Node, where: str, default_interval: float) -> TestGroup | None:
    f = c.mapping(node, where, _GROUP_FIELDS)
    if f is None:
        return None
    n_err = len(c.errors)
    interval = c.duration(f.get("interval"), f"{where}.interval", default_interval)
    if interval == 0:
        c.error(f["interval"], f"{where}.interval", "must be positive")
    series: list[InputSeries] = []
    for i, item in enumerate(c.sequence(f.get("input_series"), f"{where}.input_series")):
        w = f"{where}.input_series[{i}]"
        fi = c.mapping(item, w, {"series", "values"})
        if fi is None:
            continue
        if "series" not in fi:
            c.error(item, w, "field 'series' must be set")
            continue
        raw = {"series": c.string(fi["series"], f"{w}.series") or "", "values": ""}
        if "values" in fi and not c.is_null(fi["values"]):
            raw["values"] = c.string(fi["values"], f"{w}.values") or ""
        try:
            (s,) = expand_input_series([raw])
        except SeriesNotationError as exc:
            field_name, _, msg = exc.message.partition(": ")
            bad = fi.get(field_name.rpartition(".")[2], item)
            c.error(bad, f"{w}.{field_name.rpartition('.')[2]}", f"column {exc.column}: {msg}")
            continue
        for v in s.values:
            if isinstance(v, float) and not math.isfinite(v):
                c.error(fi.get("values", item), f"{w}.values", f"{v} cannot be stored in the lake (finite values only)")
                break
        else:
            series.append(s)
    alerts: list[AlertTestCase] = []
    for i, item in enumerate(c.sequence(f.get("alert_rule_test"), f"{where}.alert_rule_test")):
        w = f"{where}.alert_rule_test[{i}]"
        fa = c.mapping(item, w, _ALERT_TEST_FIELDS)
        if fa is None:
            continue
        t = c.duration(fa.get("eval_time"), f"{w}.eval_time", 0.0)
        name = c.string(fa["alertname"], f"{w}.alertname") if "alertname" in fa else None
        if "alertname" not in fa or not name:
            c.error(item, w, "field 'alertname' must be set")
        exp: list[ExpAlert] = []
        for j, a in enumerate(c.sequence(fa.get("exp_alerts"), f"{w}.exp_alerts")):
            wa = f"{w}.exp_alerts[{j}]"
            fe = c.mapping(a, wa, _EXP_ALERT_FIELDS)
            if fe is None:
                continue
            labels = c.string_map(fe.get("exp_labels"), f"{wa}.exp_labels")
            ann = c.string_map(fe.get("exp_annotations"), f"{wa}.exp_annotations")
            exp.append(ExpAlert(labels, ann))
        if t is not None and name:
            alerts.append(AlertTestCase(t, name, exp, item.start_mark.line + 1))
    promql: list[PromQLTestCase] = []
    for i, item in enumerate(c.sequence(f.get("promql_expr_test"), f"{where}.promql_expr_test")):
        w = f"{where}.promql_expr_test[{i}]"
        fp = c.mapping(item, w, _PROMQL_TEST_FIELDS)
        if fp is None:
            continue
        expr = c.string(fp["expr"], f"{w}.expr") if "expr" in fp else None
        if "expr" not in fp:
            c.error(item, w, "field 'expr' must be set")
        t = c.duration(fp.get("eval_time"), f"{w}.eval_time", 0.0)
        samples: list[ExpSample] = []
        for j, s_node in enumerate(c.sequence(fp.get("exp_samples"), f"{w}.exp_samples")):
            ws = f"{w}.exp_samples[{j}]"
            fs = c.mapping(s_node, ws, _EXP_SAMPLE_FIELDS)
            if fs is None:
                continue
            text = c.string(fs["labels"], f"{ws}.labels") if "labels" in fs else ""
            value = c.number(fs.get("value"), f"{ws}.value")
            try:
                labels = _parse_metric(text or "")
            except PromQLError as exc:
                c.error(fs.get("labels", s_node), f"{ws}.labels", exc.msg)
                continue
            if value is not None:
                samples.append(ExpSample(labels, value))
        if expr is not None and t is not None:
            promql.append(PromQLTestCase(expr, t, samples, item.start_mark.line + 1))
    ext = c.string_map(f.get("external_labels"), f"{where}.external_labels")
    url = c.string(f["external_url"], f"{where}.external_url") if "external_url" in f else ""
    name = c.string(f["name"], f"{where}.name") if "name" in f else ""
    if len(c.errors) != n_err or interval is None:
        return None
    return TestGroup(interval, series, alerts, promql, ext, url or "", name or "", node.start_mark.line + 1)


# ---- formatting like promtool -------------------------------------------------------------------


def _go_duration(seconds: float) -> str:
    """Go ``time.Duration.String()`` for whole milliseconds: ``0s``, ``1m0s``, ``1h0m0s``, ``2m30.5s``."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "") + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return sign + s


def format_sample_value(v: float) -> str:
    """Go ``strconv.FormatFloat(v, 'E', -1, 64)``: ``1E+00``, ``2.5E-01``, ``+Inf``, ``NaN``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    mant, _, exp = f"{v:.16e}".partition("e")
    for digits in range(16):  # the shortest digits that round-trip, as Go's precision -1
        candidate = f"{v:.{digits}e}"
        if float(candidate) == v:
            mant, _, exp = candidate.partition("e")
            break
    e = int(exp)
    return f"{mant.upper()}E{'-' if e < 0 else '+'}{abs(e):02d}"


def _alerts_text(items: Sequence[ExpAlert]) -> str:
    if not items:
        return "[]"
    parts = []
    for i, a in enumerate(items):
        body = f"Labels:{labels_text(a.labels)}\n  Annotations:{labels_text(a.annotations)}"
        parts.append(f"{i}:\n  {body}")
    inner = ",\n".join(parts)
    return "[\n" + inner + "\n]"


def _indent(text: str, prefix: str) -> str:
    lines = text.split("\n")
    return "\n".join([lines[0]] + [prefix + line for line in lines[1:]])


def _samples_text(samples: Sequence[ExpSample]) -> str:
    if not samples:
        return "nil"
    return ", ".join(f"{labels_text(s.labels)} {format_sample_value(s.value)}" for s in samples)


def _label_sort_key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


# ---- simulation ---------------------------------------------------------------------------------


def _selected_metrics(e: Expr) -> set[str | None]:
    """Metric names an expression can read; ``None`` when a selector names no single metric."""
    if isinstance(e, VectorSelector):
        return {e.selector.metric}
    if isinstance(e, MatrixSelector):
        return {e.vector.selector.metric}
    if isinstance(e, Call):
        return set().union(*(_selected_metrics(a) for a in e.args)) if e.args else set()
    if isinstance(e, Aggregate | Unary):
        return _selected_metrics(e.expr)
    if isinstance(e, Binary):
        return _selected_metrics(e.lhs) | _selected_metrics(e.rhs)
    return set()


class Simulation:
    """One test group's world: a temporary lake with its input series, the rule groups' state, and
    the series the rules write back (``ALERTS``, ``ALERTS_FOR_STATE``, recording rules).

    Use as a context manager (the lake lives in a temporary directory), call :meth:`step` for each
    evaluation time in order, and read :attr:`instances` (alert state per rule) between steps."""

    def __init__(
        self,
        groups: Sequence[RuleGroup],
        series: Sequence[InputSeries],
        interval_s: float,
        *,
        evaluate_fn: EvaluateFn = evaluate,
        root: str | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rule-test-") if root is None else None
        self.lake = Lake(os.path.join(root or self._tmp.name, "lake"))  # type: ignore[union-attr]
        self.groups = list(groups)
        self.evaluate_fn = evaluate_fn
        self.stale = StaleMarkers()
        self.instances: dict[int, list[AlertInstance]] = {}
        self._previous: dict[int, set[LabelKey]] = {}
        self._pending: list[Any] = []
        self._pending_metrics: set[str] = set()
        self._sample = Sample
        every = timedelta(seconds=interval_s)
        samples = []
        last = EPOCH
        for s in series:
            labels = {k: v for k, v in s.labels.items() if v != ""}
            for t, v in s.points(EPOCH, every):
                last = max(last, t)
                if isinstance(v, Stale):
                    self.stale.add({**labels, NAME: s.metric}, t)
                else:
                    samples.append(Sample(s.metric, float(v), t, labels))
        self._now = last + timedelta(days=3650)
        if samples:
            self.lake.write_samples(samples, now=self._now, strict=True)

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _flush_if_needed(self, expr: Expr) -> None:
        if not self._pending:
            return
        wanted = _selected_metrics(expr)
        if None in wanted or wanted & self._pending_metrics:
            self.flush()

    def flush(self) -> None:
        """Write the rules' output series to the lake (done lazily: only before a read that needs them)."""
        if self._pending:
            self.lake.write_samples(self._pending, now=self._now, strict=True)
            self._pending = []
            self._pending_metrics = set()

    def _emit(self, rule_id: int, t: datetime, rows: Iterable[tuple[dict[str, str], float]]) -> None:
        current: set[LabelKey] = set()
        for labels, value in rows:
            current.add(_label_sort_key(labels))
            if not math.isfinite(value):
                continue  # the lake stores finite values only; such a sample is not written back
            metric = labels[NAME]
            self._pending.append(self._sample(metric, value, t, {k: v for k, v in labels.items() if k != NAME}))
            self._pending_metrics.add(metric)
        for gone in self._previous.get(rule_id, set()) - current:
            self.stale.add(dict(gone), t)
        self._previous[rule_id] = current

    def eval(self, expr: Expr | str, t: datetime) -> float | Vector:
        """Evaluate an expression with the engine under test, seeing everything the rules wrote so far."""
        node = parse(expr) if isinstance(expr, str) else expr
        self._flush_if_needed(node)
        return self.evaluate_fn(node, self.lake, t, stale=self.stale)

    def ordered_groups(self, order: Sequence[str]) -> list[tuple[int, RuleGroup]]:
        rank = {name: i for i, name in enumerate(order)}
        return sorted(enumerate(self.groups), key=lambda ig: rank.get(ig[1].name, 0))

    def step(self, t: datetime, order: Sequence[str] = ()) -> list[str]:
        """Evaluate every rule at ``t``; returns errors as promtool prints them (empty when fine)."""
        errors: list[str] = []
        for gi, group in self.ordered_groups(order):
            for ri, rule in enumerate(group.rules):
                rule_id = gi * 1_000_000 + ri
                try:
                    self._step_rule(rule_id, rule, t)
                except (EvalError, LifecycleError, ValueError) as exc:
                    errors.append(
                        f"    rule: {rule.name}, time: {_go_duration((t - EPOCH).total_seconds())}, err: {exc}"
                    )
        return errors

    def _step_rule(self, rule_id: int, rule: Rule, t: datetime) -> None:
        result = self.eval(rule.expr_ast, t)
        vector: list[tuple[dict[str, str], float]] = [({}, result)] if isinstance(result, float) else list(result)
        if not rule.is_alert:
            rows = []
            seen: set[LabelKey] = set()
            for labels, value in vector:
                out = {k: v for k, v in labels.items() if k != NAME}
                for k, v in rule.labels.items():
                    if v == "":
                        out.pop(k, None)
                    else:
                        out[k] = v
                out[NAME] = rule.name
                key = _label_sort_key(out)
                if key in seen:
                    raise EvalError("vector contains metrics with the same labelset after applying rule labels")
                seen.add(key)
                rows.append((out, value))
            self._emit(rule_id, t, rows)
            return
        instances, _ = step(rule, vector, t, self.instances.get(rule_id, []))
        self.instances[rule_id] = instances
        rows = []
        for a in instances:
            if a.state is AlertState.INACTIVE:
                continue
            rows.append((alerts_series_labels(rule, a, ALERTS), 1.0))
            rows.append((alerts_series_labels(rule, a, ALERTS_FOR_STATE), float(int(a.active_at.timestamp()))))
        self._emit(rule_id, t, rows)

    def firing(self, alertname: str) -> list[ExpAlert]:
        """The firing alerts of every alerting rule called ``alertname``, sorted like promtool sorts them."""
        out = []
        for gi, group in enumerate(self.groups):
            for ri, rule in enumerate(group.rules):
                if rule.is_alert and rule.name == alertname:
                    for a in self.instances.get(gi * 1_000_000 + ri, []):
                        if a.state is AlertState.FIRING:
                            out.append(ExpAlert(dict(a.labels), dict(a.annotations)))
        return sorted(out, key=lambda a: (_label_sort_key(a.labels), _label_sort_key(a.annotations)))

    def pending(self, alertname: str | None = None) -> list[AlertInstance]:
        return [
            a
            for gi, group in enumerate(self.groups)
            for ri, rule in enumerate(group.rules)
            if rule.is_alert and (alertname is None or rule.name == alertname)
            for a in self.instances.get(gi * 1_000_000 + ri, [])
            if a.state is AlertState.PENDING
        ]


def alerts_series_labels(rule: Rule, alert: AlertInstance, metric: str = ALERTS) -> dict[str, str]:
    """Labels of the ``ALERTS`` (with ``alertstate``) or ``ALERTS_FOR_STATE`` series of an active alert.

    As Prometheus 2.42 builds them (``AlertingRule.sample``/``forStateSample``): the rule's labels
    *unexpanded*, then the alert's labels on top. So a templated rule label that expanded to ""
    (and was dropped from the alert) shows up here as its raw template text — found by the
    promtool differential test."""
    out = {k: v for k, v in rule.labels.items() if v != ""}
    out.update(alert.labels)
    out[NAME] = metric
    if metric == ALERTS:
        out["alertstate"] = alert.state.value
    return out


def eval_times(until_s: float, evaluation_interval_s: float) -> list[datetime]:
    """``0, interval, …`` up to and including ``until_s`` (as promtool's loop)."""
    out = []
    every_ms = round(evaluation_interval_s * 1000)
    until_ms = round(until_s * 1000)
    ms = 0
    while ms <= until_ms:
        out.append(EPOCH + timedelta(milliseconds=ms))
        ms += every_ms
    return out


# ---- running ------------------------------------------------------------------------------------


@dataclass
class FileResult:
    path: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _run_group(tf: RuleTestFile, groups: Sequence[RuleGroup], tg: TestGroup, evaluate_fn: EvaluateFn) -> list[str]:
    errors: list[str] = []
    test_name = f"    name: {tg.name},\n" if tg.name else ""
    by_time: dict[int, list[AlertTestCase]] = {}
    for a in tg.alert_tests:
        by_time.setdefault(round(a.eval_time_s * 1000), []).append(a)
    check_times = sorted(by_time)
    every_ms = round(tf.evaluation_interval_s * 1000)
    with Simulation(groups, tg.input_series, tg.interval_s, evaluate_fn=evaluate_fn) as sim:
        cur = 0
        for t in eval_times(tg.max_eval_time_s, tf.evaluation_interval_s):
            ts_ms = round((t - EPOCH).total_seconds() * 1000)
            eval_errors = sim.step(t, tf.group_eval_order)
            if eval_errors:
                return errors + eval_errors  # promtool stops a test group at its first failing evaluation
            while cur < len(check_times) and ts_ms <= check_times[cur] < ts_ms + every_ms:
                for case in by_time[check_times[cur]]:
                    got = sim.firing(case.alertname)
                    exp = sorted(
                        (ExpAlert({**a.labels, "alertname": case.alertname}, a.annotations) for a in case.exp_alerts),
                        key=lambda a: (_label_sort_key(a.labels), _label_sort_key(a.annotations)),
                    )
                    if got != exp:
                        when = format_duration(case.eval_time_s, prometheus=True)
                        errors.append(
                            f"{test_name}    alertname: {case.alertname}, time: {when}, \n"
                            f"        exp:{_indent(_alerts_text(exp), ' ' * 12)}, \n"
                            f"        got:{_indent(_alerts_text(got), ' ' * 12)}"
                        )
                cur += 1
        for pc in tg.promql_tests:
            when = format_duration(pc.eval_time_s, prometheus=True)
            try:
                result = sim.eval(pc.expr, EPOCH + timedelta(seconds=pc.eval_time_s))
            except (PromQLError, EvalError, ValueError) as exc:
                errors.append(f"    expr: {_go_quote(pc.expr)}, time: {when}, err: {exc}")
                continue
            vec = [({}, result)] if isinstance(result, float) else result
            got_s = sorted((ExpSample(dict(lab), float(v)) for lab, v in vec), key=lambda s: _label_sort_key(s.labels))
            exp_s = sorted(pc.exp_samples, key=lambda s: _label_sort_key(s.labels))
            same = len(got_s) == len(exp_s) and all(
                g.labels == e.labels and g.value == e.value for g, e in zip(got_s, exp_s, strict=True)
            )  # exact, like promtool's reflect.DeepEqual (so NaN never matches)
            if not same:
                errors.append(
                    f"    expr: {_go_quote(pc.expr)}, time: {when},\n"
                    f"        exp: {_samples_text(exp_s)}\n"
                    f"        got: {_samples_text(got_s)}"
                )
    return errors


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def run_test_file(path: str | Path, *, evaluate_fn: EvaluateFn = evaluate) -> FileResult:
    """Run one promtool test file with ``evaluate_fn``; the result lists every failure as promtool words it."""
    res = FileResult(str(path))
    try:
        tf = load_test_file(path)
    except RuleTestFileError as exc:
        res.errors = list(exc.errors)
        return res
    res.warnings = list(tf.warnings)
    try:
        groups = list(load_rule_files(tf.rule_files).groups) if tf.rule_files else []
    except RuleFileError as exc:
        res.errors = list(exc.errors)
        return res
    for tg in tf.tests:
        res.errors.extend(_run_group(tf, groups, tg, evaluate_fn))
    return res


def run_test_files(
    paths: Sequence[str | Path],
    *,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] | None = None,
    evaluate_fn: EvaluateFn = evaluate,
) -> int:
    """Run test files and print like ``promtool test rules``; returns 0 if all pass, else 1."""
    err = err or out
    failed = False
    for p in paths:
        out(f"Unit Testing:  {p}")
        res = run_test_file(p, evaluate_fn=evaluate_fn)
        for w in res.warnings:
            err(w)
        if res.ok:
            out("  SUCCESS")
        else:
            failed = True
            err("  FAILED:")
            for e in res.errors:
                err(e)
                out("")
        out("")
    return 1 if failed else 0

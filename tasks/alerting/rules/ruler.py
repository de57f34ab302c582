"""The rule manager: evaluates rule groups over the lake at their interval, keeps alert state in the
state DB, catches up on missed evaluations, and applies our extensions to Prometheus's lifecycle.

Why a separate module from :mod:`tasks.alerting.rules.lifecycle`: ``lifecycle.step`` is Prometheus 2.42's
state machine and nothing else (promtool checks it); what Prometheus does not have lives here, on
top of it, so the compatible core stays provable:

* **Catch-up.** Each rule remembers its last evaluation time. A tick evaluates every due time on the
  group's grid (epoch-aligned multiples of ``interval``) since then, oldest first, against the lake's
  history — so a ``for: 10m`` that straddles a 20-minute outage is judged on the data, not restarted —
  and only the final state goes on to notification, so a missed window is neither lost nor double
  sent. More than ``max_catch_up`` behind, the oldest due times are skipped (and counted): an alert
  engine down for a day should not replay the day before telling anyone about now.
* **Hysteresis** (``resolve_expr``): a *firing* alert whose series left ``expr`` stays firing until
  ``resolve_expr`` returns its series (matched on the alert's labels), e.g. fire above 90 %, resolve
  below 80 %. Pending alerts behave as in Prometheus.
* **No data** (``no_data``), when every selector of ``expr`` returns no samples at all (as opposed
  to data that does not cross the threshold):

  - ``ok`` (default, Prometheus): an empty result; alerts resolve.
  - ``keep_last``: nothing changes: alerts keep their state and their ``for`` clock stops.
  - ``alerting``: live alerts stay as they are; with none, one alert with label ``nodata="true"``
    goes through the normal pending/``for``/firing path.
  - ``nodata``: live alerts stay as they are and a separate ``nodata="true"`` alert fires, so
    people see "no data" explicitly instead of a silent recovery.

* ``severity`` and ``runbook_url`` become the ``severity`` label and ``runbook_url`` annotation
  (explicit ``labels``/``annotations`` win).
* **Recording rules** write their result back to the lake at the evaluation time, before the next
  rule of the group runs, as Prometheus does within a group.

A failing rule (an expression error, duplicate alert label sets, or any unexpected exception)
leaves its alert state untouched and is reported; it never stops the other rules. Like Prometheus's
``prometheus_rule_evaluation_failures_total`` and rule ``health``/``lastError``, each rule's failures
are counted in its stored state (``failures``, ``last_error``: ``None`` once an evaluation succeeds
again) and :func:`failure_samples` turns them into the lake series
``cortex_perf_rule_evaluation_failures_total{rule_group, rule}``, so a broken rule can alert.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tasks.alerting.model import Alert
from tasks.alerting.rules.evaluate import Vector, evaluate
from tasks.alerting.rules.lifecycle import (
    AlertInstance,
    AlertState,
    Transition,
    alert_labels,
    dump_instances,
    load_instances,
    step,
)
from tasks.alerting.rules.promql import Aggregate, Binary, Call, Expr, MatrixSelector, Unary, VectorSelector
from tasks.alerting.rules.rule_files import Rule, RuleGroup, RuleSet
from tasks.lake import Lake
from tasks.lake.schema import Sample
from tasks.state import State, register_schema

__all__ = [
    "NODATA_LABEL",
    "RULE_FAILURES_METRIC",
    "Evaluator",
    "RuleHealth",
    "RuleOutcome",
    "RuleStore",
    "StoredRule",
    "TickOutcome",
    "due_times",
    "effective_rule",
    "evaluate_rule",
    "failure_samples",
    "instances_to_alerts",
    "rule_key",
    "run_rules",
]

Evaluator = Callable[[Expr, Any, datetime], "float | Vector"]
#: Many expressions at one time, each slot a value or the exception it raised (``sqlcompile.evaluate_many``).
BatchEvaluator = Callable[[Sequence[Expr], Any, datetime], "list[float | Vector | Exception]"]
NODATA_LABEL = "nodata"
#: Prometheus's ``prometheus_rule_evaluation_failures_total``, per rule: ``{rule_group, rule}``.
RULE_FAILURES_METRIC = "cortex_perf_rule_evaluation_failures_total"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger(__name__)

register_schema(
    "alert_rules",
    "CREATE TABLE IF NOT EXISTS alert_rules ("
    " rule_key VARCHAR PRIMARY KEY, grp VARCHAR, alert VARCHAR, last_eval TIMESTAMPTZ,"
    " instances JSON, updated_at TIMESTAMPTZ)",
)
# Rule health, added after the table first shipped: existing state DBs gain the columns in place.
register_schema(
    "alert_rules_health",
    "ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS failures BIGINT DEFAULT 0;"
    " ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS last_error VARCHAR;"
    " ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS last_error_at TIMESTAMPTZ",
)


# ---- rules ----------------------------------------------------------------------------------------


def effective_rule(rule: Rule) -> Rule:
    """The rule with ``severity``/``runbook_url`` folded into its labels/annotations."""
    labels, annotations = dict(rule.labels), dict(rule.annotations)
    if rule.severity is not None:
        labels.setdefault("severity", rule.severity)
    if rule.runbook_url is not None:
        annotations.setdefault("runbook_url", rule.runbook_url)
    if labels == rule.labels and annotations == rule.annotations:
        return rule
    return replace(rule, labels=labels, annotations=annotations)


def rule_key(group: RuleGroup, rule: Rule) -> str:
    """A stable id for a rule's state: its group and its definition.

    Changing a rule's expression or labels starts it afresh (as reloading Prometheus does for a
    changed rule); moving it within its group does not."""
    definition = json.dumps(
        [group.file, group.name, rule.name, rule.expr, sorted(rule.labels.items()), rule.for_s], sort_keys=True
    )
    return f"{group.name}/{rule.name}/" + hashlib.sha256(definition.encode()).hexdigest()[:12]


def due_times(
    last_eval: datetime | None, now: datetime, interval_s: float, max_catch_up: timedelta
) -> tuple[list[datetime], int]:
    """Evaluation times on the group's grid in ``(last_eval, now]``, oldest first, and how many were skipped.

    The grid is epoch-aligned multiples of the interval, so every process agrees on it. A first
    evaluation (no ``last_eval``) is the newest grid point only."""
    if interval_s <= 0:
        raise ValueError("interval must be positive")
    step_us = round(interval_s * 1_000_000)
    k_now = int((now - _EPOCH) / timedelta(microseconds=1)) // step_us
    if last_eval is None:
        return [_EPOCH + timedelta(microseconds=k_now * step_us)], 0
    k_last = int((last_eval - _EPOCH) / timedelta(microseconds=1)) // step_us
    if k_now <= k_last:
        return [], 0
    max_n = max(1, int(max_catch_up.total_seconds() // interval_s) + 1)
    first = k_last + 1
    skipped = max(0, (k_now - first + 1) - max_n)
    first += skipped
    return [_EPOCH + timedelta(microseconds=k * step_us) for k in range(first, k_now + 1)], skipped


# ---- one rule at one time ---------------------------------------------------------------------------


def _selectors(e: Expr) -> Iterable[Expr]:
    """The selectors an expression reads, as instant-vector expressions that return their data."""
    if isinstance(e, VectorSelector):
        yield e
    elif isinstance(e, MatrixSelector):
        yield Call("count_over_time", (e,))
    elif isinstance(e, Call):
        if e.func == "absent":
            return  # absent() exists to turn no data into a result: its input is not "the data"
        for a in e.args:
            yield from _selectors(a)
    elif isinstance(e, Aggregate | Unary):
        yield from _selectors(e.expr)
    elif isinstance(e, Binary):
        yield from _selectors(e.lhs)
        yield from _selectors(e.rhs)


def has_data(expr: Expr, lake: Lake, t: datetime, evaluator: Evaluator = evaluate) -> bool:
    """Whether any selector of ``expr`` has samples at ``t`` (an expression without selectors always has)."""
    sels = list(_selectors(expr))
    if not sels:
        return True
    for s in sels:
        r = evaluator(s, lake, t)
        if not isinstance(r, float) and r:
            return True
    return False


def _as_vector(result: float | Vector) -> list[tuple[Mapping[str, str], float]]:
    return [({}, result)] if isinstance(result, float) else list(result)


@dataclass
class RuleOutcome:
    instances: list[AlertInstance]
    transitions: list[Transition] = field(default_factory=list)
    no_data: bool = False
    error: str | None = None


def evaluate_rule(
    rule: Rule,
    lake: Lake,
    t: datetime,
    instances: Sequence[AlertInstance],
    evaluator: Evaluator = evaluate,
    *,
    result: float | Vector | Exception | None = None,
) -> RuleOutcome:
    """One evaluation of an alerting rule at ``t`` with our extensions (see the module docstring).

    ``result``: the expression's value when it was already evaluated in a batch (or the exception
    it raised); otherwise ``evaluator`` computes it."""
    rule = effective_rule(rule)
    try:
        if isinstance(result, Exception):
            raise result
        vector = _as_vector(evaluator(rule.expr_ast, lake, t) if result is None else result)
        no_data = False
        live = [a for a in instances if a.state is not AlertState.INACTIVE]
        if not vector and rule.no_data != "ok" and not has_data(rule.expr_ast, lake, t, evaluator):
            no_data = True
            if rule.no_data == "keep_last":
                return RuleOutcome(list(instances), [], no_data=True)
            vector = [(a.labels, a.last_value) for a in live]
            has_marker = any(a.labels.get(NODATA_LABEL) == "true" for a in live)
            if (rule.no_data == "nodata" or not live) and not has_marker:
                vector.append(({NODATA_LABEL: "true"}, math.nan))
        elif rule.resolve_ast is not None:
            vector = _hold_until_resolved(rule, lake, t, vector, live, evaluator)
        new, transitions = step(rule, vector, t, instances)
        return RuleOutcome(new, transitions, no_data=no_data)
    except Exception as exc:  # LifecycleError, PromQL errors, and bugs alike: this rule fails alone
        return RuleOutcome(list(instances), [], error=_describe(exc))


def _describe(exc: BaseException) -> str:
    """One line for a rule's error: its type (an ``OverflowError`` says more than its text) and text."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hold_until_resolved(
    rule: Rule,
    lake: Lake,
    t: datetime,
    vector: list[tuple[Mapping[str, str], float]],
    live: Sequence[AlertInstance],
    evaluator: Evaluator,
) -> list[tuple[Mapping[str, str], float]]:
    """Keep firing alerts that left ``expr`` in the result until ``resolve_expr`` returns their series."""
    assert rule.resolve_ast is not None
    present = {tuple(sorted(alert_labels(rule, s, v)[0].items())) for s, v in vector}
    missing = [a for a in live if a.state is AlertState.FIRING and a.key not in present]
    if not missing:
        return vector
    resolving = {
        tuple(sorted(alert_labels(rule, s, v)[0].items())) for s, v in _as_vector(evaluator(rule.resolve_ast, lake, t))
    }
    held = [(a.labels, a.last_value) for a in missing if a.key not in resolving]
    return vector + held


# ---- state ------------------------------------------------------------------------------------------


@dataclass
class StoredRule:
    rule_key: str
    group: str
    alert: str
    last_eval: datetime | None
    instances: list[AlertInstance]
    #: evaluations that failed since the rule (this definition of it) was first evaluated
    failures: int = 0
    #: the newest evaluation's error, ``None`` when it succeeded (Prometheus's ``lastError``)
    last_error: str | None = None
    last_error_at: datetime | None = None


class RuleStore:
    """Alert state per rule in the state DB: one row per rule, written in one transaction per tick."""

    def __init__(self, state: State) -> None:
        self.state = state

    def load(self) -> dict[str, StoredRule]:
        with self.state.transaction() as con:
            rows = con.execute(
                "SELECT rule_key, grp, alert, last_eval, instances, failures, last_error, last_error_at "
                "FROM alert_rules"
            ).fetchall()
        out: dict[str, StoredRule] = {}
        for key, grp, alert, last_eval, inst, failures, last_error, last_error_at in rows:
            out[key] = StoredRule(
                key,
                grp,
                alert,
                _as_utc(last_eval),
                load_instances(json.loads(inst) if inst else []),
                int(failures or 0),
                last_error,
                _as_utc(last_error_at),
            )
        return out

    def save(self, rows: Iterable[StoredRule], *, prune_except: set[str] | None = None) -> None:
        """Upsert ``rows``; with ``prune_except``, delete rules no longer configured (their alerts end)."""
        data = [
            (
                r.rule_key,
                r.group,
                r.alert,
                r.last_eval,
                json.dumps(dump_instances(r.instances)),
                datetime.now(UTC),
                r.failures,
                r.last_error,
                r.last_error_at,
            )
            for r in rows
        ]
        with self.state.transaction() as con:
            if data:
                con.executemany(
                    "INSERT INTO alert_rules (rule_key, grp, alert, last_eval, instances, updated_at, failures, "
                    "last_error, last_error_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule_key) DO UPDATE "
                    "SET grp = excluded.grp, alert = excluded.alert, last_eval = excluded.last_eval, "
                    "instances = excluded.instances, updated_at = excluded.updated_at, failures = excluded.failures, "
                    "last_error = excluded.last_error, last_error_at = excluded.last_error_at",
                    data,
                )
            if prune_except is not None:
                keep = sorted(prune_except)
                if keep:
                    con.execute("DELETE FROM alert_rules WHERE NOT list_contains(?, rule_key)", [keep])
                else:
                    con.execute("DELETE FROM alert_rules")


def _as_utc(v: datetime | None) -> datetime | None:
    return v.astimezone(UTC) if v is not None else None


# ---- a tick over every group --------------------------------------------------------------------------


def instances_to_alerts(rule: Rule, key: str, instances: Iterable[AlertInstance]) -> list[Alert]:
    """The alerts the notifier sees: firing ones and resolved ones still in retention (not pending)."""
    out = []
    for a in instances:
        if a.state is AlertState.FIRING:
            status = "firing"
        elif a.resolved:
            status = "resolved"
        else:
            continue
        out.append(
            Alert(
                labels=dict(a.labels),
                annotations=dict(a.annotations),
                status=status,  # type: ignore[arg-type]
                starts_at=a.active_at,
                ends_at=a.resolved_at if status == "resolved" else None,
                value=None if math.isnan(a.last_value) else a.last_value,
                generator=key,
            )
        )
    return out


@dataclass(frozen=True)
class RuleHealth:
    """A rule's evaluation health after a tick (Prometheus's rule ``health``, ``lastError`` and
    failure counter), for :func:`failure_samples` and the people reading the tick's summary."""

    rule_key: str
    #: Prometheus's ``rule_group`` label: ``<file>;<group>``
    rule_group: str
    rule: str
    failures: int
    #: failures in this tick (catch-up evaluations included)
    new_failures: int
    #: the group's grid point before this tick's first failing evaluation (where the counter was 0)
    before_first_failure: datetime | None
    #: this tick's newest evaluation time of the rule (``None``: not evaluated this tick)
    evaluated_at: datetime | None
    last_error: str | None

    @property
    def health(self) -> str:
        """``ok`` / ``err`` / ``unknown`` (never evaluated), as Prometheus's rules API says."""
        if self.last_error is not None:
            return "err"
        return "ok" if self.evaluated_at is not None or self.failures else "unknown"


@dataclass
class TickOutcome:
    """What one tick did: the alerts to notify, every transition (catch-up included), counts, errors."""

    now: datetime
    alerts: list[Alert] = field(default_factory=list)
    pending: list[AlertInstance] = field(default_factory=list)
    transitions: list[tuple[str, Transition]] = field(default_factory=list)
    evaluations: int = 0
    skipped: int = 0
    recorded_samples: int = 0
    no_data: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: every configured rule's health after the tick, in rule-file order
    health: list[RuleHealth] = field(default_factory=list)
    #: the rule state to persist (``RuleStore.save(stored, prune_except=configured)``): saved by
    #: ``run_rules`` itself unless ``persist=False`` hands it to the caller's transaction
    stored: list[StoredRule] = field(default_factory=list)
    configured: set[str] = field(default_factory=set)


def run_rules(
    ruleset: RuleSet,
    lake: Lake,
    store: RuleStore,
    now: datetime,
    *,
    evaluator: Evaluator = evaluate,
    batch: BatchEvaluator | None = None,
    max_catch_up: timedelta = timedelta(hours=1),
    dry_run: bool = False,
    persist: bool = True,
) -> TickOutcome:
    """Evaluate every rule group's due times up to ``now`` and persist the new state (unless ``dry_run``).

    ``persist=False``: leave the saving to the caller (``outcome.stored``, ``outcome.configured``),
    who writes it in a transaction it shares with other steps (``run_alerts`` saves it together
    with the tick's notifications: one state-DB transaction instead of several).

    With ``batch`` (the SQL engine's ``evaluate_many``), the alerting rules between two recording
    rules of a group are evaluated together, one query per expression shape, instead of one by one;
    ``evaluator`` still serves ``resolve_expr``, no-data checks and recording rules."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    stored = store.load()
    out = TickOutcome(now=now)
    rows: list[StoredRule] = []
    configured: set[str] = set()
    for group in ruleset.groups:
        keys = [rule_key(group, r) for r in group.rules]
        configured.update(keys)
        prev = [stored.get(k) for k in keys]
        # a group is evaluated as a whole: its due times come from its least recently evaluated rule
        lasts = [p.last_eval if p else None for p in prev]
        known = [x for x in lasts if x is not None]
        last = min(known) if known else None
        times, skipped = due_times(last, now, group.interval_s, max_catch_up)
        out.skipped += skipped
        state = {k: (p.instances if p else []) for k, p in zip(keys, prev, strict=True)}
        done = {k: (p.last_eval if p else None) for k, p in zip(keys, prev, strict=True)}
        health = {k: _Health.of(p) for k, p in zip(keys, prev, strict=True)}
        for t in times:
            due = [i for i, k in enumerate(keys) if _is_due(done[k], t, times[-1])]
            batches = _Batches(group, due, lake, t, batch) if batch is not None else None
            for i in due:
                rule, k = group.rules[i], keys[i]
                out.evaluations += 1
                err: str | None
                if not rule.is_alert:
                    n, err = _record(rule, lake, t, evaluator, Sample, dry_run)
                    out.recorded_samples += n
                else:
                    pre = batches.get(i) if batches is not None else None
                    res = evaluate_rule(rule, lake, t, state[k], evaluator, result=pre)
                    state[k] = res.instances
                    out.transitions.extend((k, tr) for tr in res.transitions)
                    if res.no_data and t == times[-1]:
                        out.no_data.append(k)
                    err = res.error
                if err:
                    out.errors.append((k, err))
                    log.warning("rule %s at %s failed: %s", k, t.isoformat(), err)
                health[k].evaluated(t, err, group.interval_s)
                done[k] = t
        for rule, k in zip(group.rules, keys, strict=True):
            if rule.is_alert:
                out.alerts.extend(instances_to_alerts(effective_rule(rule), k, state[k]))
                out.pending.extend(a for a in state[k] if a.state is AlertState.PENDING)
            h = health[k]
            rows.append(StoredRule(k, group.name, rule.name, done[k], state[k], h.failures, h.error, h.error_at))
            out.health.append(
                RuleHealth(
                    k,
                    f"{group.file};{group.name}",
                    rule.name,
                    h.failures,
                    h.new,
                    h.before_first,
                    h.at,
                    h.error,
                )
            )
    out.stored, out.configured = rows, configured
    if persist and not dry_run:
        store.save(rows, prune_except=configured)
    out.alerts.sort(key=lambda a: (a.name, sorted(a.labels.items())))
    return out


@dataclass
class _Health:
    """A rule's failure count and last error while a tick runs (see :class:`RuleHealth`)."""

    failures: int = 0
    error: str | None = None
    error_at: datetime | None = None
    new: int = 0
    before_first: datetime | None = None
    at: datetime | None = None

    @classmethod
    def of(cls, stored: StoredRule | None) -> _Health:
        if stored is None:
            return cls()
        return cls(stored.failures, stored.last_error, stored.last_error_at)

    def evaluated(self, t: datetime, error: str | None, interval_s: float) -> None:
        self.at = t
        if error is None:
            self.error = None  # healthy again; the count stays, as a counter does
            return
        if self.new == 0:
            self.before_first = t - timedelta(seconds=interval_s)
        self.failures += 1
        self.new += 1
        self.error, self.error_at = error, t


def failure_samples(outcome: TickOutcome) -> list[Any]:
    """``cortex_perf_rule_evaluation_failures_total{rule_group, rule}`` samples for the lake.

    Only rules that ever failed have the series (10 k healthy rules would otherwise add 10 k samples
    a minute), written at each of their evaluations so it stays fresh; a rule's first failure also
    writes a 0 one interval before it, so ``increase()``/``rate()`` see that first failure (a
    counter that appears at 1 shows no increase). Rules sharing a group and name add up."""
    totals: dict[tuple[str, str], list[Any]] = {}
    for h in outcome.health:
        if h.failures == 0 or h.evaluated_at is None:
            continue
        agg = totals.setdefault((h.rule_group, h.rule), [0, 0, h.evaluated_at, h.before_first_failure])
        agg[0] += h.failures
        agg[1] += h.new_failures
        agg[2] = max(agg[2], h.evaluated_at)
        if h.before_first_failure is not None and (agg[3] is None or h.before_first_failure < agg[3]):
            agg[3] = h.before_first_failure
    out = []
    for (group, rule), (total, new, at, before) in totals.items():
        labels = {"rule_group": group, "rule": rule}
        if total == new and before is not None:
            out.append(Sample(RULE_FAILURES_METRIC, 0.0, before, labels))
        out.append(Sample(RULE_FAILURES_METRIC, float(total), at, labels))
    return out


def _is_due(last: datetime | None, t: datetime, newest: datetime) -> bool:
    """Whether a rule last evaluated at ``last`` runs at ``t`` (``newest``: the tick's last grid point).

    Not when it already ran at ``t``; a rule new to its group (never evaluated) starts at the newest
    grid point only, as a new rule does in Prometheus, while its group's other rules catch up."""
    if last is None:
        return t == newest
    return last < t


class _Batches:
    """The group's due alerting rules' results at one time, computed per *segment* on first use.

    A segment is a run of alerting rules between recording rules: a recording rule writes samples
    the rules after it may read, so a segment is evaluated (one batch call) only when its first rule
    asks — after the recording rules before it have run."""

    def __init__(self, group: RuleGroup, due: Sequence[int], lake: Lake, t: datetime, batch: BatchEvaluator) -> None:
        self.segment_of: dict[int, list[int]] = {}
        current: list[int] = []
        wanted = set(due)
        for i, r in enumerate(group.rules):
            if not r.is_alert:
                current = []
            elif i in wanted:
                current.append(i)
                self.segment_of[i] = current
        self.group, self.lake, self.t, self.batch = group, lake, t, batch
        self.results: dict[int, float | Vector | Exception] = {}

    def get(self, i: int) -> float | Vector | Exception | None:
        seg = self.segment_of.get(i)
        if seg is None:
            return None
        if i not in self.results:
            exprs = [self.group.rules[j].expr_ast for j in seg]
            try:
                self.results.update(zip(seg, self.batch(exprs, self.lake, self.t), strict=True))
            except Exception:
                # the batch promises per-slot errors; should it break that promise, one call per
                # rule finds the culprit instead of failing the whole segment
                for j, e in zip(seg, exprs, strict=True):
                    self.results[j] = self._one(e)
        return self.results[i]

    def _one(self, expr: Expr) -> float | Vector | Exception:
        try:
            return self.batch([expr], self.lake, self.t)[0]
        except Exception as exc:
            return exc


def _record(rule: Rule, lake: Lake, t: datetime, evaluator: Evaluator, sample: Any, dry_run: bool) -> tuple[int, str]:
    """A recording rule: its result becomes samples of ``record`` at ``t`` (labels: result's + rule's).
    Any error (evaluating, writing) is returned, never raised: it fails this rule alone."""
    try:
        vector = _as_vector(evaluator(rule.expr_ast, lake, t))
        samples = []
        for labels, v in vector:
            lab = {k: v2 for k, v2 in labels.items() if k != "__name__"}
            lab.update(rule.labels)
            if not math.isnan(v):
                samples.append(sample(metric=rule.name, value=float(v), ts=t, labels=lab))
        if samples and not dry_run:
            res = lake.write_samples(samples)
            if res.rejected:
                return res.accepted, f"recording rule wrote {res.accepted}, rejected {res.rejected}: " + "; ".join(
                    res.reasons[:2]
                )
            return res.accepted, ""
        return len(samples), ""
    except Exception as exc:
        return 0, _describe(exc)

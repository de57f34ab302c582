"""Instant evaluation of a parsed PromQL expression at time ``t`` over the lake (Prometheus 2.x).

Semantics (the oracle is Prometheus 2.42, the version Debian ships with ``promtool``):

- An instant selector returns, per series, the newest sample in ``[t - 5m, t]`` (lookback closed on
  both ends, as in 2.x; 3.x made it left-open). A series whose newest sample is older than 5 minutes
  gives nothing. ``__name__`` is kept.
- A range selector ``m[w]`` takes every sample in ``[t - w, t]`` (closed on both ends, 2.x).
- ``*_over_time`` (except ``last_over_time``, which keeps it in 2.x), ``rate``, ``increase``,
  arithmetic, unary minus and aggregations drop ``__name__``;
  comparisons without ``bool`` filter and keep the series (with ``__name__``) and its value; with
  ``bool`` they return 0/1 and drop ``__name__``.
- ``rate``/``increase`` follow 2.42's ``extrapolatedRate`` exactly: at least two samples; counter
  resets add the value before the drop; extrapolate to the window's edges when the first/last sample
  is within 1.1× the average sample interval of the edge, else by half an interval; the start-side
  extrapolation never goes past the counter's zero point.
- Vector–vector binary operations match one-to-one on all labels except ``__name__``.
- ``sum_over_time``/``avg_over_time`` use 2.42's compensated (Kahan–Neumaier) summation; the
  ``sum``/``avg`` aggregations do not (plain sum, incremental mean), exactly as 2.42.
- ``sum``/``avg`` accumulate in order: samples in time order, series in
  label order. Prometheus accumulates series in the order its TSDB created them, so with series
  created out of label order the two can differ in the last bit (avg's incremental mean, 2.42).

Staleness markers (promtool's ``stale``, Prometheus's ``StaleNaN``) are handed to :func:`evaluate` as a
:class:`StaleMarkers` set beside the lake, not stored in it; see that class for why and how they act.

Values are fetched with ``Lake.raw`` (parameterised DuckDB inside the lake; no user text becomes SQL)
and computed in Python. The result of ``evaluate`` is a ``float`` for a scalar expression and a list
of ``(labels, value)`` for an instant vector, sorted by labels.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tasks.alerting.promql import (
    COMPARISONS,
    Aggregate,
    Binary,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    Unary,
    VectorSelector,
    parse,
)

__all__ = [
    "LOOKBACK",
    "EvalError",
    "Labels",
    "StaleMarkers",
    "Vector",
    "evaluate",
    "extrapolated_rate",
    "format_value",
    "quantile",
]

LOOKBACK = timedelta(minutes=5)
NAME = "__name__"

Labels = dict[str, str]
Vector = list[tuple[Labels, float]]
LabelKey = tuple[tuple[str, str], ...]


class EvalError(ValueError):
    """An expression that parses but cannot be evaluated (e.g. duplicate series in a match group)."""


@dataclass(frozen=True, slots=True)
class _Series:
    labels: Labels
    ts: list[int]  # epoch milliseconds, ascending
    values: list[float]


class StaleMarkers:
    """Prometheus staleness markers: per series (``__name__`` included), the times it was marked ended.

    Semantics (2.42 ``promql/engine.go``): a marker is a sample whose value is the special
    ``StaleNaN``. An instant selector takes the newest sample in the lookback window; when that
    newest sample is a marker the series gives nothing, so a marker ends the series at once
    instead of 5 minutes later. Range selectors drop markers (``*_over_time``, ``rate`` and
    ``increase`` only ever see real samples), so a marker never changes their result.

    Why a separate set of times, not a value in the lake: the lake stores finite floats only
    (NaN and ±Inf are refused on write, which keeps rollups, compaction and every aggregate
    honest), and a marker is not a value but the *end* of a series — the same fact a scrape source
    knows when a target disappears. Kept apart, markers cost nothing when there are none, cannot
    leak into ``sum``/``avg`` or rollups, and give exactly the two rules above: only the instant
    lookback consults them (is there a marker newer than the newest sample, at or before ``t``?),
    and range functions ignore them because they read the lake alone. promtool's ``stale`` values
    and the ``ALERTS`` series a rule test writes both arrive here as ``(labels, time)`` pairs.
    """

    __slots__ = ("_times",)

    def __init__(self, markers: Iterable[tuple[Mapping[str, str], datetime]] = ()) -> None:
        self._times: dict[LabelKey, list[int]] = {}
        for labels, t in markers:
            self.add(labels, t)

    def add(self, labels: Mapping[str, str], t: datetime) -> None:
        """Mark the series ``labels`` (with ``__name__``) stale at ``t``."""
        if NAME not in labels or not labels[NAME]:
            raise ValueError(f"stale marker: labels {dict(labels)} need a metric name (__name__)")
        bisect.insort(self._times.setdefault(_key(dict(labels)), []), _ms(t))

    def __len__(self) -> int:
        return sum(len(v) for v in self._times.values())

    def __bool__(self) -> bool:
        return bool(self._times)

    def ends(self, labels: Labels, newest_sample_ms: int, t_ms: int) -> bool:
        """True if a marker lies after the newest sample and at or before ``t`` (the series is stale)."""
        times = self._times.get(_key(labels))
        if not times:
            return False
        i = bisect.bisect_right(times, t_ms)  # markers at or before t: times[:i]
        return i > 0 and times[i - 1] > newest_sample_ms


def _ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("evaluation time must be timezone-aware")
    return round(t.timestamp() * 1000)


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _drop_name(labels: Labels) -> Labels:
    return {k: v for k, v in labels.items() if k != NAME}


def _fetch(lake: Any, vs: VectorSelector, start_ms: int, end_ms: int) -> list[_Series]:
    """Samples of the series ``vs`` selects with ``start_ms <= ts <= end_ms``, grouped per series."""
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    end = datetime.fromtimestamp((end_ms + 1) / 1000, UTC)  # raw() is [start, end)
    df = lake.raw(vs.selector, start, end)
    out: list[_Series] = []
    if df.height == 0:
        return out
    cur: _Series | None = None
    cur_id = None
    for series, metric, labels, ts, value in df.select("series", "metric", "labels", "ts", "value").iter_rows():
        if series != cur_id:
            lab = json.loads(labels) if labels else {}
            lab[NAME] = metric
            cur = _Series(lab, [], [])
            out.append(cur)
            cur_id = series
        assert cur is not None
        cur.ts.append(_ms(ts))
        cur.values.append(float(value) if value is not None else math.nan)
    return out


# ---- range functions ------------------------------------------------------------------------------


def _avg(vals: list[float]) -> float:
    # Prometheus 2.42 funcAvgOverTime / avg aggregation: incremental mean with Inf handling.
    mean, count = 0.0, 0.0
    for v in vals:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean += v / count - mean / count
    return mean


def _kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """2.42 ``kahanSumInc``: Neumaier's compensated addition (``c`` collects the lost low bits)."""
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def _sum_over_time(vals: list[float]) -> float:
    # 2.42 funcSumOverTime: compensated sum (the ``sum`` aggregation is a plain sum)
    total, c = 0.0, 0.0
    for v in vals:
        total, c = _kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def _avg_over_time(vals: list[float]) -> float:
    # 2.42 funcAvgOverTime: incremental mean with compensated steps (the ``avg`` aggregation is not
    # compensated); found by the promtool differential test: 10, 7.87, 3.5, 4.5 → 6.467499999999999
    mean, count, c = 0.0, 0.0, 0.0
    for v in vals:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean, c = _kahan_inc(v / count - mean / count, mean, c)
    return mean if math.isinf(mean) else mean + c


def _min(vals: list[float]) -> float:
    out = vals[0]
    for v in vals:
        if v < out or math.isnan(out):
            out = v
    return out


def _max(vals: list[float]) -> float:
    out = vals[0]
    for v in vals:
        if v > out or math.isnan(out):
            out = v
    return out


def _sum(vals: list[float]) -> float:
    total = 0.0
    for v in vals:
        total += v
    return total


def quantile(q: float, vals: list[float]) -> float:
    """Prometheus's quantile: linear interpolation between the closest ranks (q outside [0,1] → ±Inf)."""
    if not vals or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    s = sorted(vals)
    n = len(s)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return s[lower] * (1 - weight) + s[upper] * weight


_OVER_TIME: dict[str, Callable[[list[float]], float]] = {
    "avg_over_time": _avg_over_time,
    "min_over_time": _min,
    "max_over_time": _max,
    "sum_over_time": _sum_over_time,
    "count_over_time": lambda v: float(len(v)),
    "last_over_time": lambda v: v[-1],
}


def extrapolated_rate(
    ts: list[int], vals: list[float], range_start_ms: int, range_end_ms: int, range_s: float, *, is_rate: bool
) -> float | None:
    """Prometheus 2.42 ``extrapolatedRate`` for a counter; ``None`` with fewer than two samples."""
    if len(vals) < 2:
        return None
    result = vals[-1] - vals[0]
    last = 0.0
    for v in vals:
        if v < last:  # counter reset: the counter restarted from 0, so add what it had reached
            result += last
        last = v
    duration_to_start = (ts[0] - range_start_ms) / 1000
    duration_to_end = (range_end_ms - ts[-1]) / 1000
    sampled = (ts[-1] - ts[0]) / 1000
    avg_between = sampled / (len(vals) - 1)
    if result > 0 and vals[0] >= 0:
        duration_to_zero = sampled * (vals[0] / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    threshold = avg_between * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else avg_between / 2
    interval += duration_to_end if duration_to_end < threshold else avg_between / 2
    # 2.42 scales by one factor (interval/sampled, divided by the range for rate): (23 * (1/120)) is
    # 0.19166666666666665 where 23 / 120 is ...68 — the promtool differential test tells them apart
    factor = interval / sampled
    if is_rate:
        factor /= range_s
    return result * factor


# ---- binary operators -----------------------------------------------------------------------------


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                if a == 0 or math.isnan(a):
                    return math.nan
                return math.copysign(math.inf, a) * math.copysign(1.0, b)
            return a / b
        if op == "%":
            if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
                return math.nan
            return math.fmod(a, b)  # Go's math.Mod: sign of the dividend
        if op == "^":
            try:
                return math.pow(a, b)
            except (OverflowError, ValueError):
                if a == 0 and b < 0:
                    return math.inf
                return math.nan if a < 0 else math.inf
    except OverflowError:
        return math.inf
    raise EvalError(f"unknown operator {op!r}")


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "==": a == b,
        "!=": a != b,
        ">": a > b,
        "<": a < b,
        ">=": a >= b,
        "<=": a <= b,
    }[op]


# ---- evaluator ------------------------------------------------------------------------------------


class _Evaluator:
    def __init__(self, lake: Any, t_ms: int, stale: StaleMarkers | None = None) -> None:
        self.lake = lake
        self.t = t_ms
        self.stale = stale

    def eval(self, e: Expr) -> float | Vector:
        if isinstance(e, NumberLiteral):
            return e.value
        if isinstance(e, VectorSelector):
            return self.instant(e)
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, Aggregate):
            return self.aggregate(e)
        if isinstance(e, Unary):
            v = self.eval(e.expr)
            if isinstance(v, float):
                return -v
            return [(_drop_name(lab), -x) for lab, x in v]
        if isinstance(e, Binary):
            return self.binary(e)
        if isinstance(e, StringLiteral | MatrixSelector):
            raise EvalError(f"cannot evaluate a {e.type} as a rule expression")
        raise EvalError(f"unsupported node {type(e).__name__}")

    def instant(self, vs: VectorSelector) -> Vector:
        lookback = int(LOOKBACK.total_seconds() * 1000)
        out: Vector = []
        for s in _fetch(self.lake, vs, self.t - lookback, self.t):
            if self.stale and self.stale.ends(s.labels, s.ts[-1], self.t):
                continue  # the newest point in the lookback is a staleness marker: the series ended
            out.append((s.labels, s.values[-1]))
        return out

    def matrix(self, ms: MatrixSelector) -> list[_Series]:
        return _fetch(self.lake, ms.vector, self.t - round(ms.range_s * 1000), self.t)

    def call(self, c: Call) -> Vector:
        name = c.func
        if name in _OVER_TIME:
            arg = c.args[0]
            assert isinstance(arg, MatrixSelector)
            fn = _OVER_TIME[name]
            # 2.42 keeps __name__ for last_over_time only (engine.go: dropName unless last_over_time)
            keep = name == "last_over_time"
            return [(s.labels if keep else _drop_name(s.labels), fn(s.values)) for s in self.matrix(arg) if s.values]
        if name == "quantile_over_time":
            q = self.eval(c.args[0])
            assert isinstance(q, float)
            arg = c.args[1]
            assert isinstance(arg, MatrixSelector)
            return [(_drop_name(s.labels), quantile(q, s.values)) for s in self.matrix(arg) if s.values]
        if name in ("rate", "increase"):
            arg = c.args[0]
            assert isinstance(arg, MatrixSelector)
            start = self.t - round(arg.range_s * 1000)
            out: Vector = []
            for s in self.matrix(arg):
                r = extrapolated_rate(s.ts, s.values, start, self.t, arg.range_s, is_rate=name == "rate")
                if r is not None:
                    out.append((_drop_name(s.labels), r))
            return out
        if name == "absent":
            v = self.eval(c.args[0])
            assert isinstance(v, list)
            if v:
                return []
            return [(_absent_labels(c.args[0]), 1.0)]
        raise EvalError(f"unknown function {name!r}")

    def aggregate(self, a: Aggregate) -> Vector:
        v = self.eval(a.expr)
        assert isinstance(v, list)
        groups: dict[tuple[tuple[str, str], ...], tuple[Labels, list[float]]] = {}
        for lab, x in v:
            if a.without:
                drop = set(a.grouping) | {NAME}
                glab = {k: val for k, val in lab.items() if k not in drop}
            else:
                glab = {k: lab[k] for k in a.grouping if lab.get(k, "") != ""}
            k = _key(glab)
            if k not in groups:
                groups[k] = (glab, [])
            groups[k][1].append(x)
        fn: Callable[[list[float]], float] = {
            "sum": _sum,
            "avg": _avg,
            "min": _min,
            "max": _max,
            "count": lambda xs: float(len(xs)),
        }[a.op]
        return [(glab, fn(xs)) for glab, xs in groups.values()]

    def binary(self, b: Binary) -> float | Vector:
        lhs, rhs = self.eval(b.lhs), self.eval(b.rhs)
        op = b.op
        cmp = op in COMPARISONS
        if isinstance(lhs, float) and isinstance(rhs, float):
            if cmp:
                return 1.0 if _compare(op, lhs, rhs) else 0.0
            return _arith(op, lhs, rhs)
        if isinstance(lhs, list) and isinstance(rhs, list):
            return self.vector_vector(b, lhs, rhs)
        swap = isinstance(lhs, float)
        vec = rhs if swap else lhs
        scalar = lhs if swap else rhs
        assert isinstance(vec, list) and isinstance(scalar, float)
        out: Vector = []
        for lab, x in vec:
            a_, b_ = (scalar, x) if swap else (x, scalar)
            if cmp:
                keep = _compare(op, a_, b_)
                if b.bool_modifier:
                    out.append((_drop_name(lab), 1.0 if keep else 0.0))
                elif keep:
                    out.append((lab, x))  # the vector's value, even when it is on the right
            else:
                out.append((_drop_name(lab), _arith(op, a_, b_)))
        return out

    def vector_vector(self, b: Binary, lhs: Vector, rhs: Vector) -> Vector:
        op = b.op
        cmp = op in COMPARISONS
        right: dict[tuple[tuple[str, str], ...], float] = {}
        for lab, x in rhs:
            sig = _key(_drop_name(lab))
            if sig in right:
                raise EvalError(
                    f"found duplicate series for the match group {dict(sig)} on the right hand-side of the "
                    "operation; many-to-many matching not allowed: matching labels must be unique on one side"
                )
            right[sig] = x
        seen: set[tuple[tuple[str, str], ...]] = set()
        out: Vector = []
        for lab, x in lhs:
            sig = _key(_drop_name(lab))
            if sig not in right:
                continue
            if sig in seen:
                raise EvalError(
                    f"multiple matches for labels {dict(sig)}: many-to-one matching must be explicit "
                    "(group_left/group_right), which is not supported"
                )
            seen.add(sig)
            y = right[sig]
            if cmp:
                keep = _compare(op, x, y)
                if b.bool_modifier:
                    out.append((_drop_name(lab), 1.0 if keep else 0.0))
                elif keep:
                    out.append((lab, x))
            else:
                out.append((_drop_name(lab), _arith(op, x, y)))
        return out


def _absent_labels(arg: Expr) -> Labels:
    """Prometheus's labels for ``absent``: the equality matchers of a plain selector (not __name__)."""
    if not isinstance(arg, VectorSelector):
        return {}
    out: Labels = {}
    repeated: set[str] = set()
    for m in arg.selector.matchers:
        if m.name == NAME or m.op != "=":
            continue
        if m.name in out:
            repeated.add(m.name)
        out[m.name] = m.value
    for name in repeated:
        del out[name]
    return out


def evaluate(expr: Expr | str, lake: Any, t: datetime, *, stale: StaleMarkers | None = None) -> float | Vector:
    """Evaluate ``expr`` at ``t``: a float for a scalar expression, else ``[(labels, value)]`` sorted by labels.

    ``stale`` holds staleness markers that end series for instant selectors (see :class:`StaleMarkers`)."""
    node = parse(expr) if isinstance(expr, str) else expr
    result = _Evaluator(lake, _ms(t), stale).eval(node)
    if isinstance(result, list):
        return sorted(result, key=lambda r: _key(r[0]))
    return result


def format_value(v: float) -> str:
    """A float as Prometheus prints it (Go ``strconv.FormatFloat(v, 'g', -1, 64)``): 1e+06, 0.5, 3, +Inf."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign = "-" if v < 0 else ""
    d = Decimal(repr(abs(v)))  # repr is the shortest round-trip form, like Go's -1 precision
    _, digits_t, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    all_digits = "".join(map(str, digits_t))
    dp = len(all_digits) + exponent  # value = 0.<digits> × 10^dp
    digits = all_digits.lstrip("0")
    dp -= len(all_digits) - len(digits)
    digits = digits.rstrip("0") or "0"
    exp = dp - 1
    if exp < -4 or exp >= 6:  # Go: with the shortest precision, %e when the exponent is < -4 or >= 6
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"

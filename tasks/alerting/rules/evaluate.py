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
- Vector–vector operations match as 2.42's ``VectorBinop``: one-to-one on all labels but
  ``__name__`` by default, ``on``/``ignoring`` choose the labels, ``group_left``/``group_right`` allow
  many-to-one (copying the listed labels from the one side), with 2.42's errors for duplicate
  matches; ``and``/``or``/``unless`` are many-to-many and keep samples as they are. A result with two
  equal label sets is 2.42's "vector cannot contain metrics with the same labelset" error.
- ``offset`` moves the lookback and range windows back (negative: forward).
- Functions follow 2.42's ``functions.go``; ``exp``/``ln``/``log2``/``log10`` are Go's algorithms
  (not the C library's, which differ in the last bit), ``stddev_over_time``/``stdvar_over_time``/
  ``deriv``/``predict_linear`` use its compensated sums, ``topk``/``bottomk`` replay Go's heap.
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
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from tasks.alerting.rules.lake_functions import anomaly_vector, forecast_vector
from tasks.alerting.rules.promql import (
    ARITHMETIC,
    COMPARISONS,
    FUNCTIONS,
    SET_OPERATORS,
    Aggregate,
    Binary,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
    parse,
)
from tasks.goregex import GoRegexError, compile_go_regex
from tasks.lake import Lake

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


def _fetch(lake: Lake, vs: VectorSelector, start_ms: int, end_ms: int) -> list[_Series]:
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
    "stddev_over_time": lambda v: go_sqrt(_stdvar_over_time(v)),
    "stdvar_over_time": lambda v: _stdvar_over_time(v),
    "present_over_time": lambda v: 1.0,
    "changes": lambda v: _changes(v),
    "resets": lambda v: _resets(v),
}


def extrapolated_rate(
    ts: list[int],
    vals: list[float],
    range_start_ms: int,
    range_end_ms: int,
    range_s: float,
    *,
    is_rate: bool,
    is_counter: bool = True,
) -> float | None:
    """Prometheus 2.42 ``extrapolatedRate`` (``rate``/``increase``; ``delta`` with ``is_counter=False``:
    no reset correction, no zero-point clip); ``None`` with fewer than two samples."""
    if len(vals) < 2:
        return None
    result = vals[-1] - vals[0]
    last = 0.0
    for v in vals if is_counter else ():
        if v < last:  # counter reset: the counter restarted from 0, so add what it had reached
            result += last
        last = v
    duration_to_start = (ts[0] - range_start_ms) / 1000
    duration_to_end = (range_end_ms - ts[-1]) / 1000
    sampled = (ts[-1] - ts[0]) / 1000
    avg_between = sampled / (len(vals) - 1)
    if is_counter and result > 0 and vals[0] >= 0:
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


# ---- Go's float functions (promtool is a Go program: results must agree to the bit) ----------------


def go_floor(v: float) -> float:
    """Go ``math.Floor``: NaN/±Inf unchanged, the sign of zero kept (``floor(-0)`` is ``-0``)."""
    if not math.isfinite(v):
        return v
    r = float(math.floor(v))
    return math.copysign(0.0, v) if r == 0 else r


def go_ceil(v: float) -> float:
    """Go ``math.Ceil``: ``ceil(-0.5)`` is ``-0``."""
    if not math.isfinite(v):
        return v
    r = float(math.ceil(v))
    return math.copysign(0.0, v) if r == 0 else r


def go_max(a: float, b: float) -> float:
    """Go ``math.Max``: NaN wins, +0 beats -0 (``clamp``/``clamp_min``)."""
    if (math.isinf(a) and a > 0) or (math.isinf(b) and b > 0):
        return math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == 0 and a == b:
        return b if math.copysign(1.0, a) < 0 else a
    return a if a > b else b


def go_min(a: float, b: float) -> float:
    """Go ``math.Min``: NaN wins, -0 beats +0."""
    if (math.isinf(a) and a < 0) or (math.isinf(b) and b < 0):
        return -math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == 0 and a == b:
        return a if math.copysign(1.0, a) < 0 else b
    return a if a < b else b


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)


def go_log(x: float) -> float:
    """Go ``math.Log`` (FreeBSD's algorithm, as Go computes it), not the C library's: the two can
    differ in the last bit, and ``ln``/``log2``/``log10`` results are printed by ``$value``."""
    if math.isnan(x) or (math.isinf(x) and x > 0):
        return x
    if x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    f1, ki = math.frexp(x)
    if f1 < math.sqrt(2) / 2:
        f1 *= 2
        ki -= 1
    f = f1 - 1
    k = float(ki)
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_LG[0] + s4 * (_LG[2] + s4 * (_LG[4] + s4 * _LG[6])))
    t2 = s4 * (_LG[1] + s4 * (_LG[3] + s4 * _LG[5]))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


# Go folds ``1/Ln2`` and ``1/Ln10`` from exact constants: correctly rounded, unlike 1 / math.log(10)
_INV_LN2 = float("1.44269504088896340735992468100189213742664595415298593413544940693110921918118507988552662")
_INV_LN10 = float("0.434294481903251827651128918916605082294397005803666566114453783165864649208870774729224949")


def go_log2(x: float) -> float:
    """Go ``math.Log2``: exact for powers of two, else ``Log(frac) * (1/Ln2) + exp``."""
    if math.isnan(x) or math.isinf(x) or x <= 0:
        return go_log(x)
    frac, exp = math.frexp(x)
    if frac == 0.5:
        return float(exp - 1)
    return go_log(frac) * _INV_LN2 + float(exp)


def go_log10(x: float) -> float:
    """Go ``math.Log10``: ``Log(x) * (1/Ln10)``."""
    return go_log(x) * _INV_LN10


_EXP_C = (
    0.5,
    1.0,
    1.6666666666666666667e-1,
    4.1666666666666666667e-2,
    8.3333333333333333333e-3,
    1.3888888888888888889e-3,
    1.9841269841269841270e-4,
    2.4801587301587301587e-5,
)
_LOG2E = 1.4426950408889634073599246810018920
_LN2U = 0.69314718055966295651160180568695068359375
_LN2L = 0.28235290563031577122588448175013436025525412068e-12


def _fnmadd(a: float, b: float, c: float) -> float:
    """``c - a*b`` rounded once (the FMA instruction Go's amd64 ``Exp`` uses)."""
    return float(Fraction(c) - Fraction(a) * Fraction(b))


def go_exp(x: float) -> float:
    """Go's amd64 ``math.Exp`` (Shibata's method: reduce by ln 2, Taylor series of e^(r/16), square 4×).

    Not the C library's ``exp``: the two differ in the last bit (promtool: ``exp(30)`` is
    1.068647458152446e+13, glibc's 1.0686474581524463e+13), and ``$value`` prints every bit."""
    if math.isnan(x) or x == math.inf:
        return x
    if x == -math.inf:
        return 0.0
    if x > 7.09782712893384e02:
        return math.inf
    k = int(x * _LOG2E)  # CVTTSD2SL: truncation toward zero
    fk = float(k)
    r = _fnmadd(_LN2L, fk, _fnmadd(_LN2U, fk, x)) * 0.0625
    p = _EXP_C[7] * r
    for c in (_EXP_C[6], _EXP_C[5], _EXP_C[4], _EXP_C[3], _EXP_C[2], _EXP_C[0], _EXP_C[1]):
        p += c
        p *= r
    for _ in range(4):  # (e^y - 1)(e^y + 1) = e^2y - 1
        p = (2.0 + p) * p
    p += 1.0
    if k + 0x3FF >= 0x7FF:
        return math.inf
    if k < -1074:
        return 0.0
    return math.ldexp(p, k)


def go_sqrt(x: float) -> float:
    return math.nan if x < 0 else math.sqrt(x)


def _sgn(v: float) -> float:
    return -1.0 if v < 0 else 1.0 if v > 0 else v


_SIMPLE: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": go_ceil,
    "floor": go_floor,
    "exp": go_exp,
    "ln": go_log,
    "log2": go_log2,
    "log10": go_log10,
    "sqrt": go_sqrt,
    "sgn": _sgn,
}


def format_float_f(v: float) -> str:
    """Go ``strconv.FormatFloat(v, 'f', -1, 64)`` (``count_values``'s label): no exponent, shortest digits."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = format(Decimal(repr(v)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "-0" if text in ("-0", "-0.0") else text


def labels_str(labels: Mapping[str, str]) -> str:
    """Prometheus's ``Labels.String()``: ``{__name__="m", a="b"}`` (sorted, Go-quoted values)."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: ``[0-9]+(?:\.[0-9]*)?``, not ``[0-9]+\.?[0-9]*``: the ambiguous split backtracks quadratically
#: on a long digit run, and ``le`` is a label value (data).
_GO_FLOAT_RE = re.compile(r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)", re.I)


def _parse_go_float(text: str) -> float | None:
    """Go ``strconv.ParseFloat`` for bucket bounds (``le``); None where Go reports an error."""
    if not _GO_FLOAT_RE.fullmatch(text):
        return None
    return float(text)


def _bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """2.42 ``bucketQuantile`` over (upper bound, cumulative count) pairs of a classic histogram."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda b: b[0])
    if not (math.isinf(buckets[-1][0]) and buckets[-1][0] > 0):
        return math.nan
    merged: list[list[float]] = []  # coalesceBuckets: equal bounds add up
    for ub, count in buckets:
        if merged and merged[-1][0] == ub:
            merged[-1][1] += count
        else:
            merged.append([ub, count])
    top = -math.inf  # ensureMonotonic
    for bucket in merged:
        if bucket[1] > top:
            top = bucket[1]
        elif bucket[1] < top:
            bucket[1] = top
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    bucket_start, bucket_end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        bucket_start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def _stdvar_over_time(vals: list[float]) -> float:
    """2.42 ``funcStdvarOverTime``: Welford's running mean and squares, both compensated (Kahan)."""
    count = mean = c_mean = aux = c_aux = 0.0
    for v in vals:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = _kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _changes(vals: list[float]) -> float:
    n, prev = 0, vals[0]
    for cur in vals[1:]:
        if cur != prev and not (math.isnan(cur) and math.isnan(prev)):
            n += 1
        prev = cur
    return float(n)


def _resets(vals: list[float]) -> float:
    n, prev = 0, vals[0]
    for cur in vals[1:]:
        if cur < prev:
            n += 1
        prev = cur
    return float(n)


def linear_regression(ts: list[int], vals: list[float], intercept_ms: int) -> tuple[float, float]:
    """2.42 ``linearRegression`` (``deriv``, ``predict_linear``): compensated sums, x in seconds from
    ``intercept_ms``; a constant series has slope 0 (NaN when the constant is infinite)."""
    n = sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    init_y, const_y = vals[0], True
    for i, (t, v) in enumerate(zip(ts, vals, strict=True)):
        if const_y and i > 0 and v != init_y:
            const_y = False
        n += 1.0
        x = (t - intercept_ms) / 1e3
        sum_x, c_x = _kahan_inc(x, sum_x, c_x)
        sum_y, c_y = _kahan_inc(v, sum_y, c_y)
        sum_xy, c_xy = _kahan_inc(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = _kahan_inc(x * x, sum_x2, c_x2)
    if const_y:
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    sum_x += c_x
    sum_y += c_y
    sum_xy += c_xy
    sum_x2 += c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = _arith("/", cov_xy, var_x)
    return slope, sum_y / n - slope * sum_x / n


def instant_value(ts: list[int], vals: list[float], *, is_rate: bool) -> float | None:
    """2.42 ``instantValue`` (``irate``/``idelta``): the last two samples; None with fewer than two."""
    if len(vals) < 2:
        return None
    last, prev = vals[-1], vals[-2]
    result = last if is_rate and last < prev else last - prev  # irate: a counter reset restarts at 0
    interval = ts[-1] - ts[-2]
    if interval == 0:
        return None
    if is_rate:
        result /= interval / 1000
    return result


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

_DUP_LABELSET = "vector cannot contain metrics with the same labelset"


def _check_unique(v: Vector) -> Vector:
    """2.42 ``ContainsSameLabelset``: a function, operator or aggregation result whose rows share a
    label set is an error (e.g. ``label_replace`` making two series one, or ``-{__name__=~"a|b"}``)."""
    if len(v) > 1 and len({_key(lab) for lab, _ in v}) != len(v):
        raise EvalError(_DUP_LABELSET)
    return v


def _signature(labels: Labels, matching: VectorMatching | None) -> LabelKey:
    """The match-group key of a series: ``on`` labels only, else all but ``ignoring`` and ``__name__``."""
    if matching is not None and matching.on:
        return tuple((k, labels[k]) for k in sorted(set(matching.labels)) if k in labels)
    drop = {NAME, *matching.labels} if matching is not None else {NAME}
    return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))


def _result_labels(lhs: Labels, rhs: Labels, op: str, matching: VectorMatching | None) -> Labels:
    """2.42 ``resultMetric``: the many side's labels; arithmetic drops ``__name__``; one-to-one keeps
    only the ``on`` labels (or drops the ``ignoring`` ones); ``group_x (…)`` copies labels from the one side."""
    out = dict(lhs)
    if op in ARITHMETIC:
        out.pop(NAME, None)
    if matching is None:
        return out
    if matching.card == "one-to-one":
        if matching.on:
            out = {k: v for k, v in out.items() if k in matching.labels}
        else:
            for k in matching.labels:
                out.pop(k, None)
    for k in matching.include:
        if rhs.get(k, ""):
            out[k] = rhs[k]
        else:
            out.pop(k, None)
    return out


class _Evaluator:
    def __init__(self, lake: Lake, t_ms: int, stale: StaleMarkers | None = None) -> None:
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
            return _check_unique([(_drop_name(lab), -x) for lab, x in v])
        if isinstance(e, Binary):
            return self.binary(e)
        if isinstance(e, StringLiteral | MatrixSelector):
            raise EvalError(f"cannot evaluate a {e.type} as a rule expression")
        raise EvalError(f"unsupported node {type(e).__name__}")

    def scalar(self, e: Expr) -> float:
        v = self.eval(e)
        assert isinstance(v, float)
        return v

    def vector(self, e: Expr) -> Vector:
        v = self.eval(e)
        assert isinstance(v, list)
        return v

    def instant_samples(self, vs: VectorSelector) -> list[tuple[Labels, float, int]]:
        """Per series, the newest sample in the lookback before ``t - offset``: (labels, value, its ms)."""
        lookback = int(LOOKBACK.total_seconds() * 1000)
        ref = self.t - round(vs.offset_s * 1000)
        out: list[tuple[Labels, float, int]] = []
        for s in _fetch(self.lake, vs, ref - lookback, ref):
            if self.stale and self.stale.ends(s.labels, s.ts[-1], ref):
                continue  # the newest point in the lookback is a staleness marker: the series ended
            out.append((s.labels, s.values[-1], s.ts[-1]))
        return out

    def instant(self, vs: VectorSelector) -> Vector:
        return [(lab, v) for lab, v, _ in self.instant_samples(vs)]

    def window(self, ms: MatrixSelector) -> tuple[int, int]:
        """The range ``[start, end]`` (ms, closed) of a range selector: ``offset`` shifts both ends."""
        end = self.t - round(ms.vector.offset_s * 1000)
        return end - round(ms.range_s * 1000), end

    def matrix(self, ms: MatrixSelector) -> list[_Series]:
        return _fetch(self.lake, ms.vector, *self.window(ms))

    def call(self, c: Call) -> float | Vector:
        name = c.func
        if name == "time":
            return self.t / 1000
        if name == "scalar":
            v = self.vector(c.args[0])
            return v[0][1] if len(v) == 1 else math.nan
        if name == "vector":
            return [({}, self.scalar(c.args[0]))]
        if name in ("anomaly", "forecast", "forecast_quantile"):
            return self.lake_function(c)
        if "matrix" in FUNCTIONS[name]:
            return self.range_call(c)
        if name == "absent":
            v = self.vector(c.args[0])
            if v:
                return []
            return [(_absent_labels(c.args[0]), 1.0)]
        return _check_unique(self.vector_call(c))

    def range_call(self, c: Call) -> Vector:
        """Functions of a range vector: one value per series that has samples in the window."""
        name = c.func
        ms = c.args[1] if name == "quantile_over_time" else c.args[0]
        assert isinstance(ms, MatrixSelector)
        series = [s for s in self.matrix(ms) if s.values]
        if name == "absent_over_time":
            return [] if series else [(_absent_labels(ms.vector), 1.0)]
        start, end = self.window(ms)
        out: Vector = []
        fn: Callable[[_Series], float | None]
        if name in _OVER_TIME:
            over = _OVER_TIME[name]
            fn = lambda s: over(s.values)  # noqa: E731
        elif name == "quantile_over_time":
            q = self.scalar(c.args[0])
            fn = lambda s: quantile(q, s.values)  # noqa: E731
        elif name in ("rate", "increase", "delta"):
            counter, is_rate = name != "delta", name == "rate"
            fn = lambda s: extrapolated_rate(  # noqa: E731
                s.ts, s.values, start, end, ms.range_s, is_rate=is_rate, is_counter=counter
            )
        elif name in ("irate", "idelta"):
            is_rate = name == "irate"
            fn = lambda s: instant_value(s.ts, s.values, is_rate=is_rate)  # noqa: E731
        elif name == "deriv":
            fn = lambda s: None if len(s.values) < 2 else linear_regression(s.ts, s.values, s.ts[0])[0]  # noqa: E731
        elif name == "predict_linear":
            horizon = self.scalar(c.args[1])

            def fn(s: _Series) -> float | None:
                if len(s.values) < 2:
                    return None
                slope, intercept = linear_regression(s.ts, s.values, self.t)
                return slope * horizon + intercept

        else:
            raise EvalError(f"unknown function {name!r}")
        keep = name == "last_over_time"  # 2.42 keeps __name__ for last_over_time only
        for s in series:
            r = fn(s)
            if r is not None:
                out.append((s.labels if keep else _drop_name(s.labels), r))
        return _check_unique(out)

    def vector_call(self, c: Call) -> Vector:
        """Functions of an instant vector (and scalars/strings after it)."""
        name, args = c.func, c.args
        if name in _SIMPLE:
            f = _SIMPLE[name]
            return [(_drop_name(lab), f(x)) for lab, x in self.vector(args[0])]
        if name == "round":
            v = self.vector(args[0])
            # 2.42: "invert as it seems to cause fewer floating point accuracy issues"
            inverse = _arith("/", 1.0, self.scalar(args[1]) if len(args) > 1 else 1.0)
            return [(_drop_name(lab), _arith("/", go_floor(x * inverse + 0.5), inverse)) for lab, x in v]
        if name in ("clamp", "clamp_min", "clamp_max"):
            v = self.vector(args[0])
            if name == "clamp":
                lo, hi = self.scalar(args[1]), self.scalar(args[2])
                if hi < lo:
                    return []
                return [(_drop_name(lab), go_max(lo, go_min(hi, x))) for lab, x in v]
            bound = self.scalar(args[1])
            f2 = go_max if name == "clamp_min" else go_min
            return [(_drop_name(lab), f2(bound, x)) for lab, x in v]
        if name == "timestamp":
            arg = args[0]
            if isinstance(arg, VectorSelector):  # the samples' own times (2.42 special-cases selectors)
                return [(_drop_name(lab), ts / 1000) for lab, _, ts in self.instant_samples(arg)]
            return [(_drop_name(lab), self.t / 1000) for lab, _ in self.vector(arg)]
        if name in ("sort", "sort_desc"):
            v = self.vector(args[0])
            nan_last = [x for x in v if not math.isnan(x[1])]
            ordered = sorted(nan_last, key=lambda r: r[1], reverse=name == "sort_desc")
            return ordered + [x for x in v if math.isnan(x[1])]
        if name == "label_replace":
            return self.label_replace(c)
        if name == "label_join":
            return self.label_join(c)
        if name == "histogram_quantile":
            return self.histogram_quantile(c)
        raise EvalError(f"unknown function {name!r}")

    def string_arg(self, e: Expr) -> str:
        assert isinstance(e, StringLiteral)
        return e.value

    def label_replace(self, c: Call) -> Vector:
        v = self.vector(c.args[0])
        dst, repl, src, regex = (self.string_arg(a) for a in c.args[1:])
        try:
            rx = compile_go_regex(regex)  # Go RE2 run by RE2: linear time, fullmatch is ^(?:re)$
        except GoRegexError:
            raise EvalError(f"invalid regular expression in label_replace(): {regex}") from None
        if not _LABEL_NAME_RE.fullmatch(dst):
            raise EvalError(f"invalid destination label name in label_replace(): {dst}")
        out: Vector = []
        for lab, x in v:
            value = lab.get(src, "")
            m = rx.fullmatch(value)
            if m is None:
                out.append((lab, x))
                continue
            res = rx.expand(repl, m)
            new = {k: val for k, val in lab.items() if k != dst}
            if res:
                new[dst] = res
            out.append((new, x))
        return out

    def label_join(self, c: Call) -> Vector:
        v = self.vector(c.args[0])
        dst, sep, *srcs = (self.string_arg(a) for a in c.args[1:])
        for src in srcs:
            if not _LABEL_NAME_RE.fullmatch(src):
                raise EvalError(f"invalid source label name in label_join(): {src}")
        if not _LABEL_NAME_RE.fullmatch(dst):
            raise EvalError(f"invalid destination label name in label_join(): {dst}")
        out: Vector = []
        for lab, x in v:
            joined = sep.join(lab.get(s, "") for s in srcs)
            new = {k: val for k, val in lab.items() if k != dst}
            if joined:
                new[dst] = joined
            out.append((new, x))
        return out

    def histogram_quantile(self, c: Call) -> Vector:
        q = self.scalar(c.args[0])
        groups: dict[LabelKey, tuple[Labels, list[tuple[float, float]]]] = {}
        for lab, x in self.vector(c.args[1]):
            ub = _parse_go_float(lab.get("le", ""))
            if ub is None:
                continue  # no bucket label or a malformed one: skipped, as Prometheus does
            sig = _key({k: v for k, v in lab.items() if k != "le"})
            if sig not in groups:
                groups[sig] = ({k: v for k, v in lab.items() if k not in ("le", NAME)}, [])
            groups[sig][1].append((ub, x))
        return [(lab, _bucket_quantile(q, b)) for lab, b in groups.values() if b]

    def lake_function(self, c: Call) -> Vector:
        """Ours: read stored anomaly scores / forecasts (``tasks.alerting.rules.lake_functions``)."""
        t = datetime.fromtimestamp(self.t / 1000, tz=UTC)
        if c.func == "anomaly":
            ms = c.args[0]
            assert isinstance(ms, MatrixSelector)
            return anomaly_vector(self.lake, ms.vector.selector, t, ms.range_s)
        args = list(c.args)
        q = 0.5
        if c.func == "forecast_quantile":
            q = self.scalar(args.pop(0))
        sel, horizon = args
        assert isinstance(sel, VectorSelector)
        return forecast_vector(self.lake, sel.selector, t, self.scalar(horizon), q)

    def aggregate(self, a: Aggregate) -> Vector:
        """2.42 ``aggregation``: groups in order of first appearance, values folded in vector order."""
        op = a.op
        k = 0
        q = 0.0
        value_label = ""
        grouping = a.grouping
        if op in ("topk", "bottomk"):
            assert a.param is not None
            f = self.scalar(a.param)
            if math.isnan(f) or not -(2.0**63) <= f < 2.0**63:
                raise EvalError(f"Scalar value {format_value(f)} overflows int64")
            k = int(f)
            if k < 1:
                self.vector(a.expr)  # still evaluated (its errors still count)
                return []
        elif op == "quantile":
            assert a.param is not None
            q = self.scalar(a.param)
        elif op == "count_values":
            assert a.param is not None
            value_label = self.string_arg(a.param)
            if not _LABEL_NAME_RE.fullmatch(value_label):
                raise EvalError(f'invalid label name "{value_label}"')
            if not a.without:
                grouping = (*grouping, value_label)
        v = self.vector(a.expr)
        groups: dict[LabelKey, _Group] = {}
        for lab, x in v:
            if op == "count_values":
                lab = {**lab, value_label: format_float_f(x)}
            if a.without:
                drop = set(grouping) | {NAME}
                glab = {kk: val for kk, val in lab.items() if kk not in drop}
            else:
                glab = {kk: lab[kk] for kk in grouping if lab.get(kk, "") != ""}
            key = _key(glab)
            g = groups.get(key)
            if g is None:
                groups[key] = _Group(glab, (lab, x), op)
            else:
                g.add(lab, x, op, k)
        out: Vector = []
        for g in groups.values():
            out.extend(g.result(op, q))
        return out

    def binary(self, b: Binary) -> float | Vector:
        lhs, rhs = self.eval(b.lhs), self.eval(b.rhs)
        op = b.op
        cmp = op in COMPARISONS
        if isinstance(lhs, float) and isinstance(rhs, float):
            if cmp:
                return 1.0 if _compare(op, lhs, rhs) else 0.0
            return _arith(op, lhs, rhs)
        if isinstance(lhs, list) and isinstance(rhs, list):
            if op in SET_OPERATORS:
                return self.set_operation(op, lhs, rhs, b.matching)
            return _check_unique(self.vector_vector(b, lhs, rhs))
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
        return _check_unique(out)

    @staticmethod
    def set_operation(op: str, lhs: Vector, rhs: Vector, matching: VectorMatching | None) -> Vector:
        """``and``/``or``/``unless`` (2.42 ``VectorAnd``/``VectorOr``/``VectorUnless``): many-to-many,
        samples kept as they are (``__name__`` included)."""
        if op == "and":
            if not lhs or not rhs:
                return []
            right = {_signature(lab, matching) for lab, _ in rhs}
            return [(lab, x) for lab, x in lhs if _signature(lab, matching) in right]
        if op == "unless":
            if not lhs or not rhs:
                return list(lhs)
            right = {_signature(lab, matching) for lab, _ in rhs}
            return [(lab, x) for lab, x in lhs if _signature(lab, matching) not in right]
        if not lhs or not rhs:
            return _check_unique(list(lhs or rhs))
        left = {_signature(lab, matching) for lab, _ in lhs}
        return _check_unique(list(lhs) + [(lab, x) for lab, x in rhs if _signature(lab, matching) not in left])

    @staticmethod
    def vector_vector(b: Binary, lhs: Vector, rhs: Vector) -> Vector:
        """2.42 ``VectorBinop``: one-to-one, many-to-one (``group_left``) or one-to-many (``group_right``)."""
        op, matching = b.op, b.matching
        card = matching.card if matching is not None else "one-to-one"
        if not lhs or not rhs:
            return []  # nothing can match (and no duplicate check either, as 2.42)
        if card == "one-to-many":
            lhs, rhs = rhs, lhs
        right: dict[LabelKey, tuple[Labels, float]] = {}
        for lab, x in rhs:
            sig = _signature(lab, matching)
            if sig in right:
                side = "left" if card == "one-to-many" else "right"
                if matching is not None and matching.on:
                    matched = {k: lab[k] for k in matching.labels if k in lab}
                else:
                    drop = {NAME, *(matching.labels if matching else ())}
                    matched = {k: v for k, v in lab.items() if k not in drop}
                raise EvalError(
                    f"found duplicate series for the match group {labels_str(matched)} on the {side} hand-side of "
                    f"the operation: [{labels_str(lab)}, {labels_str(right[sig][0])}];many-to-many matching not "
                    "allowed: matching labels must be unique on one side"
                )
            right[sig] = (lab, x)
        cmp = op in COMPARISONS
        matched_sigs: dict[LabelKey, set[LabelKey]] = {}
        out: Vector = []
        for lab, x in lhs:
            sig = _signature(lab, matching)
            hit = right.get(sig)
            if hit is None:
                continue
            rlab, y = hit
            fl, fr = (y, x) if card == "one-to-many" else (x, y)
            if cmp:
                keep = _compare(op, fl, fr)
                value = fl
                if b.bool_modifier:
                    value = 1.0 if keep else 0.0
                elif not keep:
                    continue
            else:
                value = _arith(op, fl, fr)
            metric = _result_labels(lab, rlab, op, matching)
            if b.bool_modifier:
                metric = _drop_name(metric)
            if card == "one-to-one":
                if sig in matched_sigs:
                    raise EvalError(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                    )
                matched_sigs[sig] = set()
            else:
                inserted = matched_sigs.setdefault(sig, set())
                mk = _key(metric)
                if mk in inserted:
                    raise EvalError(
                        "multiple matches for matching labels; many-to-one matching must be explicit "
                        "(group_left/group_right)"
                    )
                inserted.add(mk)
            out.append((metric, value))
        return out


class _Group:
    """One group of 2.42's ``aggregation``: its labels and running state per operator."""

    __slots__ = ("count", "heap", "labels", "mean", "value", "values")

    def __init__(self, labels: Labels, first: tuple[Labels, float], op: str) -> None:
        x = first[1]
        self.labels = labels
        self.count = 1
        self.mean = x
        self.value = 0.0 if op in ("stddev", "stdvar") else 1.0 if op == "group" else x
        self.values: list[float] = [x]  # sum/avg fold in order (the reference's existing helpers)
        self.heap: list[tuple[Labels, float]] = [first]

    def add(self, lab: Labels, x: float, op: str, k: int) -> None:
        self.count += 1
        if op in ("sum", "avg", "min", "max"):
            self.values.append(x)
        elif op in ("stddev", "stdvar"):
            delta = x - self.mean
            self.mean += delta / self.count
            self.value += delta * (x - self.mean)
        elif op == "quantile":
            self.heap.append((lab, x))
        elif op in ("topk", "bottomk"):
            top = op == "topk"
            h0 = self.heap[0][1]
            if len(self.heap) < k or (h0 < x if top else h0 > x) or math.isnan(h0):
                less = _topk_less if top else _bottomk_less
                if len(self.heap) == k:
                    if k == 1:
                        self.heap[0] = (lab, x)
                        return
                    _heap_pop(self.heap, less)
                _heap_push(self.heap, (lab, x), less)

    def result(self, op: str, q: float) -> Vector:
        if op in ("topk", "bottomk"):
            # output order: the heap sorted best first (NaN last), as 2.42's sort.Reverse(heap)
            real = [r for r in self.heap if not math.isnan(r[1])]
            ordered = sorted(real, key=lambda r: r[1], reverse=op == "topk")
            return ordered + [r for r in self.heap if math.isnan(r[1])]
        if op == "sum":
            value = _sum(self.values)
        elif op == "avg":
            value = _avg(self.values)
        elif op == "min":
            value = _min(self.values)
        elif op == "max":
            value = _max(self.values)
        elif op in ("count", "count_values"):
            value = float(self.count)
        elif op == "stdvar":
            value = self.value / self.count
        elif op == "stddev":
            value = go_sqrt(self.value / self.count)
        elif op == "quantile":
            value = quantile(q, [x for _, x in self.heap])
        else:  # group
            value = 1.0
        return [(self.labels, value)]


def _topk_less(a: float, b: float) -> bool:  # 2.42 vectorByValueHeap.Less
    return math.isnan(a) or a < b


def _bottomk_less(a: float, b: float) -> bool:  # 2.42 vectorByReverseValueHeap.Less
    return math.isnan(a) or a > b


def _heap_up(h: list[tuple[Labels, float]], j: int, less: Callable[[float, float], bool]) -> None:
    while True:  # Go container/heap.up
        i = (j - 1) // 2
        if i == j or j <= 0 or not less(h[j][1], h[i][1]):
            break
        h[i], h[j] = h[j], h[i]
        j = i


def _heap_down(h: list[tuple[Labels, float]], i: int, n: int, less: Callable[[float, float], bool]) -> None:
    while True:  # Go container/heap.down
        j1 = 2 * i + 1
        if j1 >= n:
            break
        j = j1
        j2 = j1 + 1
        if j2 < n and less(h[j2][1], h[j1][1]):
            j = j2
        if not less(h[j][1], h[i][1]):
            break
        h[i], h[j] = h[j], h[i]
        i = j


def _heap_push(h: list[tuple[Labels, float]], item: tuple[Labels, float], less: Callable[[float, float], bool]) -> None:
    h.append(item)
    _heap_up(h, len(h) - 1, less)


def _heap_pop(h: list[tuple[Labels, float]], less: Callable[[float, float], bool]) -> None:
    n = len(h) - 1
    h[0], h[n] = h[n], h[0]
    _heap_down(h, 0, n, less)
    h.pop()


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


def evaluate(expr: Expr | str, lake: Lake, t: datetime, *, stale: StaleMarkers | None = None) -> float | Vector:
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

"""Rule expressions compiled to parameterised DuckDB SQL, evaluated many rules per query.

Why: the reference evaluator (``tasks.alerting.rules.evaluate``) fetches per selector and computes in
Python, which is exact but far too slow for thousands of rules per tick. Here every expression is
compiled into SQL *text that depends only on its shape* (node kinds, operators, functions,
by/without) and a row of *parameters* (numbers, selectors, windows, grouping labels). Rules of one
shape are evaluated by ONE query: their parameters form a table ``P`` (one row per rule, ``rid`` is
the rule's index) joined against the tick's samples. So a tick runs one query per distinct shape,
not per rule, and no user string (label value, regex, metric name, label name) is ever pasted into
SQL: they travel as data.

A tick:

1. compile every expression (cached per expression);
2. resolve every distinct selector to its series in one SQL query over the catalogue (matchers as a
   table; regexes fully anchored Go RE2, matched as ``tasks.lake.selector`` does (``tasks.goregex``), on the
   distinct label values only); cached while the catalogue does not change;
3. read the samples of all matched series in ``[t - widest window, t]`` once (``Lake.window_samples``),
   with each sample's predecessor (for counter resets);
4. run one query per shape; rules whose query fails, or which hit a many-to-many match, and
   expressions that cannot be compiled, go to the reference evaluator one by one (counted).

Semantics are those of the reference (Prometheus 2.42): read its docstring. Values agree to the
bit, not only approximately: sums and means fold with ``list_reduce`` in the reference's order
(samples by time, series by their text form) and with its compensation, so ``$value`` prints the
same. Staleness markers (``StaleMarkers``) end instant selectors as in the reference (as of
``t - offset`` for offset selectors).

Compiled: selectors with positive ``offset``; ``*_over_time`` (avg min max sum count last quantile
present), ``absent_over_time``, ``rate increase changes resets``; ``sum avg min max count group``;
arithmetic and comparisons (``bool``) with scalars and between vectors one-to-one, with
``on``/``ignoring``; ``and or unless`` (with ``on``/``ignoring``); ``abs ceil floor sqrt sgn round
clamp clamp_min clamp_max vector time absent``. Left to the reference (``TickStats.fallbacks``):
negative offsets (they read past the tick's window), ``group_left``/``group_right``, ``on
(__name__)``, ``topk bottomk quantile stddev stdvar count_values``, ``exp ln log2 log10`` (the C
library's differ from Go's in the last bit), ``scalar timestamp sort sort_desc label_replace
label_join histogram_quantile delta idelta irate deriv predict_linear stddev_over_time
stdvar_over_time``, and our own functions (``anomaly``, ``forecast``…).

Values come back in the reference's types: ``float`` for a scalar expression, ``[(labels, value)]``
sorted by labels.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
import polars as pl

from tasks.alerting.rules.evaluate import LOOKBACK, NAME, StaleMarkers, Vector, _absent_labels, evaluate
from tasks.alerting.rules.promql import (
    ARITHMETIC,
    COMPARISONS,
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
from tasks.lake import Lake
from tasks.lake.selector import Selector, SelectorError, regex_full_matches

__all__ = [
    "Compiled",
    "NotCompilable",
    "Param",
    "SQLEngine",
    "TickStats",
    "compile_expr",
    "evaluate_many",
    "evaluate_one",
]

ParamKind = Literal["number", "selector", "range_ms", "offset_ms", "grouping", "labels"]
LBL_TYPE = pl.List(pl.Struct({"k": pl.String, "v": pl.String}))
_LOOKBACK_MS = int(LOOKBACK.total_seconds() * 1000)
_EMPTY_LBL = "[]::STRUCT(k VARCHAR, v VARCHAR)[]"
_MAX_CACHED = 200_000  # compiled expressions kept between ticks


class NotCompilable(ValueError):
    """An expression outside what the SQL compiler handles; it is evaluated by the reference."""


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a compiled expression: the column ``name`` of the parameter table ``P``."""

    name: str
    kind: ParamKind
    value: Any


@dataclass(frozen=True, slots=True)
class Compiled:
    """SQL text (the shape: equal for rules that differ only in literals) and its parameters.

    The text reads the tables ``P`` (``rid`` + one column per parameter), ``sel_match``
    (selector id → series id), ``win`` (the tick's samples) and ``cat`` (series labels), and the
    query parameter ``$t`` (evaluation time, epoch ms). It yields ``rid, name, lbl, v, bad``.
    """

    sql: str
    params: tuple[Param, ...]
    result: Literal["scalar", "vector"]
    max_range_ms: int  # widest window read (the 5-minute lookback for instant selectors)
    needs_prev: bool  # rate/increase: samples need their predecessor

    @property
    def selectors(self) -> tuple[Selector, ...]:
        return tuple(p.value for p in self.params if p.kind == "selector")


# ---- SQL building blocks (fixed text: macros created once per connection) ------------------------

_MACROS: tuple[str, ...] = (
    # Comparisons as Go/Python do them: NaN compares false (true for !=). DuckDB orders NaN last.
    "CREATE OR REPLACE MACRO p_eq(a, b) AS (a = b AND NOT isnan(a) AND NOT isnan(b))",
    "CREATE OR REPLACE MACRO p_ne(a, b) AS (a <> b OR isnan(a) OR isnan(b))",
    "CREATE OR REPLACE MACRO p_gt(a, b) AS (a > b AND NOT isnan(a) AND NOT isnan(b))",
    "CREATE OR REPLACE MACRO p_lt(a, b) AS (a < b AND NOT isnan(a) AND NOT isnan(b))",
    "CREATE OR REPLACE MACRO p_ge(a, b) AS (a >= b AND NOT isnan(a) AND NOT isnan(b))",
    "CREATE OR REPLACE MACRO p_le(a, b) AS (a <= b AND NOT isnan(a) AND NOT isnan(b))",
    # Go's math.Mod (sign of the dividend; DuckDB's fmod floors); NaN where the reference says so.
    "CREATE OR REPLACE MACRO p_mod(a, b) AS (CASE WHEN b = 0 OR isinf(a) OR isnan(a) OR isnan(b) "
    "THEN 'nan'::DOUBLE WHEN a < 0 THEN -fmod(-a, abs(b)) ELSE fmod(a, abs(b)) END)",
    # The reference's pow: 0^negative → +Inf; an overflow from finite operands → +Inf, NaN for a < 0.
    "CREATE OR REPLACE MACRO p_pow(a, b) AS (CASE WHEN a = 0 AND b < 0 THEN 'inf'::DOUBLE "
    "WHEN isinf(pow(a, b)) AND isfinite(a) AND isfinite(b) THEN (CASE WHEN a < 0 THEN 'nan'::DOUBLE "
    "ELSE 'inf'::DOUBLE END) ELSE pow(a, b) END)",
    # min/max as the reference: NaN only when every value is NaN.
    "CREATE OR REPLACE MACRO p_min(x) AS coalesce(min(x) FILTER (WHERE NOT isnan(x)), min(x))",
    "CREATE OR REPLACE MACRO p_max(x) AS coalesce(max(x) FILTER (WHERE NOT isnan(x)), max(x))",
    # Prometheus's quantile over an ascending list (linear interpolation between closest ranks).
    "CREATE OR REPLACE MACRO p_quantile(q, s) AS (CASE WHEN isnan(q) THEN 'nan'::DOUBLE "
    "WHEN q < 0 THEN '-inf'::DOUBLE WHEN q > 1 THEN 'inf'::DOUBLE ELSE "
    "s[floor(q * (len(s) - 1))::BIGINT + 1] * (1 - (q * (len(s) - 1) - floor(q * (len(s) - 1)))) + "
    "s[least(len(s) - 1, floor(q * (len(s) - 1))::BIGINT + 1) + 1] * (q * (len(s) - 1) - floor(q * (len(s) - 1))) "
    "END)",
    # 2.42 kahanSumInc's compensation term for total += inc (Neumaier).
    "CREATE OR REPLACE MACRO p_kc(total, inc) AS (CASE WHEN abs(total) >= abs(inc) "
    "THEN (total - (total + inc)) + inc ELSE (inc - (total + inc)) + total END)",
    # Sequential folds over a list in the reference's order, so results agree to the last bit:
    # sum_over_time (compensated), avg_over_time (compensated incremental mean), the sum
    # aggregation (plain) and the avg aggregation (plain incremental mean, with 2.42's Inf rule).
    "CREATE OR REPLACE MACRO p_ksum(l) AS (SELECT CASE WHEN isinf(r.t) THEN r.t ELSE r.t + r.c END FROM "
    "(SELECT list_reduce(l, lambda a, x: {'t': a.t + x, 'c': a.c + p_kc(a.t, x)}, "
    "{'t': 0.0::DOUBLE, 'c': 0.0::DOUBLE}) AS r))",
    "CREATE OR REPLACE MACRO p_kavg(l) AS (SELECT CASE WHEN isinf(r.m) THEN r.m ELSE r.m + r.c END FROM "
    "(SELECT list_reduce(l, lambda a, x: CASE WHEN isinf(a.m) AND ((isinf(x) AND (a.m > 0) = (x > 0)) "
    "OR (NOT isinf(x) AND NOT isnan(x))) THEN {'m': a.m, 'n': a.n + 1, 'c': a.c} "
    "ELSE {'m': a.m + (x / (a.n + 1) - a.m / (a.n + 1)), 'n': a.n + 1, "
    "'c': a.c + p_kc(a.m, x / (a.n + 1) - a.m / (a.n + 1))} END, "
    "{'m': 0.0::DOUBLE, 'n': 0.0::DOUBLE, 'c': 0.0::DOUBLE}) AS r))",
    "CREATE OR REPLACE MACRO p_sum(l) AS list_reduce(l, lambda a, x: a + x, 0.0::DOUBLE)",
    "CREATE OR REPLACE MACRO p_avg(l) AS (list_reduce(l, lambda a, x: CASE WHEN isinf(a.m) AND "
    "((isinf(x) AND (a.m > 0) = (x > 0)) OR (NOT isinf(x) AND NOT isnan(x))) THEN {'m': a.m, 'n': a.n + 1} "
    "ELSE {'m': a.m + (x / (a.n + 1) - a.m / (a.n + 1)), 'n': a.n + 1} END, "
    "{'m': 0.0::DOUBLE, 'n': 0.0::DOUBLE})).m",
    # Prometheus 2.42 extrapolatedRate; dts: seconds from window start to the first sample, clipped
    # at the counter's zero point.
    "CREATE OR REPLACE MACRO p_dts(res, v0, t0, t1, start_ms) AS (CASE "
    "WHEN res > 0 AND v0 >= 0 AND ((t1 - t0) / 1000.0) * (v0 / res) < (t0 - start_ms) / 1000.0 "
    "THEN ((t1 - t0) / 1000.0) * (v0 / res) ELSE (t0 - start_ms) / 1000.0 END)",
    "CREATE OR REPLACE MACRO p_factor(n, t0, t1, end_ms, dts) AS ("
    "(((t1 - t0) / 1000.0 "
    "+ (CASE WHEN dts < ((t1 - t0) / 1000.0 / (n - 1)) * 1.1 THEN dts ELSE ((t1 - t0) / 1000.0 / (n - 1)) / 2 END) "
    "+ (CASE WHEN (end_ms - t1) / 1000.0 < ((t1 - t0) / 1000.0 / (n - 1)) * 1.1 THEN (end_ms - t1) / 1000.0 "
    "ELSE ((t1 - t0) / 1000.0 / (n - 1)) / 2 END)) / ((t1 - t0) / 1000.0)))",
)

_MACROS += (
    # Go's math.Max / math.Min (clamp): +Inf / -Inf win, then NaN.
    "CREATE OR REPLACE MACRO p_gmax(a, b) AS (CASE WHEN a = 'inf'::DOUBLE OR b = 'inf'::DOUBLE THEN 'inf'::DOUBLE "
    "WHEN isnan(a) OR isnan(b) THEN 'nan'::DOUBLE WHEN a > b THEN a ELSE b END)",
    "CREATE OR REPLACE MACRO p_gmin(a, b) AS (CASE WHEN a = '-inf'::DOUBLE OR b = '-inf'::DOUBLE THEN '-inf'::DOUBLE "
    "WHEN isnan(a) OR isnan(b) THEN 'nan'::DOUBLE WHEN a < b THEN a ELSE b END)",
)
#: Functions of one instant vector computed per row (Go's results; exp/ln/log2/log10 are not here:
#: the C library's differ from Go's in the last bit, so the reference computes those).
_SIMPLE_SQL = {
    "abs": "abs({x})",
    "ceil": "ceil({x})",
    "floor": "floor({x})",
    "sqrt": "(CASE WHEN {x} < 0 THEN 'nan'::DOUBLE ELSE sqrt({x}) END)",
    "sgn": "(CASE WHEN {x} < 0 THEN -1.0 WHEN {x} > 0 THEN 1.0 ELSE {x} END)",
}
_CMP_MACRO = {"==": "p_eq", "!=": "p_ne", ">": "p_gt", "<": "p_lt", ">=": "p_ge", "<=": "p_le"}
_OVER_TIME_SQL = {
    "avg_over_time": "p_kavg(list(w.v ORDER BY w.ts))",
    "min_over_time": "p_min(w.v)",
    "max_over_time": "p_max(w.v)",
    "sum_over_time": "p_ksum(list(w.v ORDER BY w.ts))",
    "count_over_time": "count(*)::DOUBLE",
    "last_over_time": "arg_max(w.v, w.ts)",
    "present_over_time": "1.0::DOUBLE",
}
_AGG_SQL = {
    "sum": "p_sum(list(v ORDER BY o))",
    "avg": "p_avg(list(v ORDER BY o))",
    "min": "p_min(v)",
    "max": "p_max(v)",
    "count": "count(*)::DOUBLE",
    "group": "1.0::DOUBLE",
}


def _arith_sql(op: str, a: str, b: str) -> str:
    if op in ("+", "-", "*", "/"):  # IEEE in DuckDB: x/0 → ±Inf, 0/0 → NaN, as Go
        return f"({a} {op} {b})"
    if op == "%":
        return f"p_mod({a}, {b})"
    if op == "^":
        return f"p_pow({a}, {b})"
    raise NotCompilable(f"operator {op!r}")


def _cmp_sql(op: str, a: str, b: str) -> str:
    return f"{_CMP_MACRO[op]}({a}, {b})"


class _Compiler:
    """Walks the AST; each vector node becomes a CTE yielding (rid, name, lbl, o, v).

    ``o`` is the row's position in the reference's vector order (series in text order, groups in
    order of first appearance): ``sum``/``avg`` fold in that order so values agree to the bit.
    """

    def __init__(self) -> None:
        self.params: list[Param] = []
        self.ctes: list[tuple[str, str]] = []
        self.bad: list[str] = []  # CTEs of rule ids with a many-to-many match (→ reference)
        self.max_range_ms = 0
        self.needs_prev = False
        self.dedups = 0
        self.range_off: str | None = None  # the offset parameter of the last range_leaf, if any
        self.table = "P"  # the parameter table in scope (a de-duplicated one under an aggregation)

    def param(self, kind: ParamKind, value: Any) -> str:
        name = f"c{len(self.params)}"
        self.params.append(Param(name, kind, value))
        return name

    def cte(self, sql: str) -> str:
        name = f"n{len(self.ctes)}"
        self.ctes.append((name, sql))
        return name

    # scalars: SQL expressions over the parameter row ``p``
    def scalar(self, e: Expr) -> str:
        if isinstance(e, NumberLiteral):
            return f"p.{self.param('number', float(e.value))}"
        if isinstance(e, Unary) and e.expr.type == "scalar":
            return f"(-{self.scalar(e.expr)})"
        if isinstance(e, Call) and e.func == "time":
            return "($t / 1000.0)"
        if isinstance(e, Binary) and e.type == "scalar":
            a, b = self.scalar(e.lhs), self.scalar(e.rhs)
            if e.op in COMPARISONS:
                return f"(CASE WHEN {_cmp_sql(e.op, a, b)} THEN 1.0 ELSE 0.0 END)"
            return _arith_sql(e.op, a, b)
        raise NotCompilable(f"scalar node {type(e).__name__}")

    def vector(self, e: Expr) -> str:
        if isinstance(e, VectorSelector):
            return self.instant(e)
        if isinstance(e, Call):
            return self.unique(e, self.call(e))
        if isinstance(e, Aggregate):
            return self.aggregate(e)
        if isinstance(e, Unary):
            c = self.vector(e.expr)
            return self.unique(e, self.cte(f"SELECT rid, NULL::VARCHAR AS name, lbl, o, -v AS v FROM {c}"))
        if isinstance(e, Binary):
            return self.binary(e)
        raise NotCompilable(f"vector node {type(e).__name__}")

    def unique(self, e: Expr, cte: str) -> str:
        """The reference's (2.42's) "vector cannot contain metrics with the same labelset": a function,
        unary minus or scalar arithmetic that drops ``__name__`` from rows of different metrics with
        otherwise equal labels (``rate({__name__=~"a_total|b_total"}[5m])``) is an error. Such rules
        are flagged ``bad`` and evaluated by the reference for its error. Only nodes that can read
        several metric names (a selector without ``__name__="…"``) get the check: the usual
        ``metric{…}`` rules keep their SQL and cost nothing more."""
        if _mixes_names(e):
            self.bad.append(self.cte(f"SELECT rid FROM {cte} GROUP BY rid, name, lbl HAVING count(*) > 1"))
        return cte

    def selector(self, vs: VectorSelector) -> str:
        return self.param("selector", vs.selector)

    def offset(self, vs: VectorSelector) -> int:
        """A selector's offset in ms; negative offsets read past ``t`` (beyond the tick's window): reference."""
        off = round(vs.offset_s * 1000)
        if off < 0:
            raise NotCompilable("negative offset")
        return off

    def instant(self, vs: VectorSelector) -> str:
        sel = self.selector(vs)
        off_ms = self.offset(vs)
        self.max_range_ms = max(self.max_range_ms, _LOOKBACK_MS + off_ms)
        if off_ms:
            off = self.param("offset_ms", off_ms)
            return self.cte(
                f"SELECT p.rid, s.name, s.lbl, s.o, x.v FROM {self.table} p JOIN ("
                "SELECT k.sel, k.off, m.sid, arg_max(w.v, w.ts) AS v FROM "
                f"(SELECT DISTINCT {sel} AS sel, {off} AS off FROM {self.table}) k "
                "JOIN sel_match m ON m.sel = k.sel JOIN win w ON w.sid = m.sid "
                f"WHERE w.ts >= $t - k.off - {_LOOKBACK_MS} AND w.ts <= $t - k.off "
                "AND NOT EXISTS (SELECT 1 FROM stale_off z WHERE z.sid = m.sid AND z.off = k.off) "
                f"GROUP BY k.sel, k.off, m.sid) x ON x.sel = p.{sel} AND x.off = p.{off} JOIN cat s ON s.sid = x.sid"
            )
        return self.cte(
            f"SELECT p.rid, s.name, s.lbl, s.o, x.v FROM {self.table} p JOIN ("
            "SELECT m.sel, m.sid, arg_max(w.v, w.ts) AS v FROM sel_match m JOIN win w ON w.sid = m.sid "
            f"WHERE w.ts >= $t - {_LOOKBACK_MS} AND m.sel IN (SELECT {sel} FROM {self.table}) "
            "AND m.sid NOT IN (SELECT sid FROM stale_sids) GROUP BY m.sel, m.sid"
            f") x ON x.sel = p.{sel} JOIN cat s ON s.sid = x.sid"
        )

    def range_leaf(self, ms: Expr) -> tuple[str, str]:
        """The selector and window parameters of a range selector; an offset becomes part of the
        window parameter's shape (``k.off``), so rules without one keep the plain SQL."""
        if not isinstance(ms, MatrixSelector):
            raise NotCompilable("range function argument is not a range selector")
        range_ms = round(ms.range_s * 1000)
        off_ms = self.offset(ms.vector)
        self.max_range_ms = max(self.max_range_ms, range_ms + off_ms)
        self.range_off = self.param("offset_ms", off_ms) if off_ms else None
        return self.selector(ms.vector), self.param("range_ms", range_ms)

    def _per_series(self, sel: str, rng: str, aggs: str, having: str = "") -> str:
        """Per distinct (selector, window) and series: ``aggs`` over the window's samples."""
        off = self.range_off
        if off is None:
            return (
                f"SELECT k.sel, k.rng, m.sid, {aggs} FROM (SELECT DISTINCT {sel} AS sel, {rng} AS rng "
                f"FROM {self.table}) k JOIN sel_match m ON m.sel = k.sel JOIN win w ON w.sid = m.sid "
                f"AND w.ts >= $t - k.rng GROUP BY k.sel, k.rng, m.sid{having}"
            )
        aggs = aggs.replace("$t", "($t - k.off)")
        return (
            f"SELECT k.sel, k.rng, k.off, m.sid, {aggs} FROM (SELECT DISTINCT {sel} AS sel, {rng} AS rng, "
            f"{off} AS off FROM {self.table}) k JOIN sel_match m ON m.sel = k.sel JOIN win w ON w.sid = m.sid "
            f"AND w.ts >= $t - k.off - k.rng AND w.ts <= $t - k.off GROUP BY k.sel, k.rng, k.off, m.sid{having}"
        )

    def _on(self, sel: str, rng: str) -> str:
        """The join of a per-series result ``x`` back to its rules (offset included when there is one)."""
        on = f"x.sel = p.{sel} AND x.rng = p.{rng}"
        return on if self.range_off is None else f"{on} AND x.off = p.{self.range_off}"

    def call(self, c: Call) -> str:
        name = c.func
        if name in _OVER_TIME_SQL:
            sel, rng = self.range_leaf(c.args[0])
            inner = self._per_series(sel, rng, f"{_OVER_TIME_SQL[name]} AS v")
            keep = "s.name" if name == "last_over_time" else "NULL::VARCHAR"  # 2.42 keeps it there only
            return self.cte(
                f"SELECT p.rid, {keep} AS name, s.lbl, s.o, x.v FROM {self.table} p JOIN ({inner}) x "
                f"ON {self._on(sel, rng)} JOIN cat s ON s.sid = x.sid"
            )
        if name in ("changes", "resets"):
            # pairs of consecutive samples inside the window: each sample with its predecessor
            sel, rng = self.range_leaf(c.args[0])
            self.needs_prev = True
            cond = "w.v <> w.pv" if name == "changes" else "w.v < w.pv"
            inner = self._per_series(sel, rng, f"count(*) FILTER (WHERE w.pts >= $t - k.rng AND {cond})::DOUBLE AS v")
            return self.cte(
                f"SELECT p.rid, NULL::VARCHAR AS name, s.lbl, s.o, x.v FROM {self.table} p JOIN ({inner}) x "
                f"ON {self._on(sel, rng)} JOIN cat s ON s.sid = x.sid"
            )
        if name == "quantile_over_time":
            q = self.scalar(c.args[0])
            sel, rng = self.range_leaf(c.args[1])
            inner = self._per_series(sel, rng, "list_sort(list(w.v)) AS vals")
            return self.cte(
                f"SELECT p.rid, NULL::VARCHAR AS name, s.lbl, s.o, p_quantile({q}, x.vals) AS v "
                f"FROM {self.table} p JOIN ({inner}) x "
                f"ON {self._on(sel, rng)} JOIN cat s ON s.sid = x.sid"
            )
        if name in ("rate", "increase"):
            sel, rng = self.range_leaf(c.args[0])
            self.needs_prev = True
            inner = self._per_series(
                sel,
                rng,
                # result = last - first, then each reset's pre-drop value added in time order
                "count(*) AS n, arg_min(w.v, w.ts) AS v0, min(w.ts) AS t0, max(w.ts) AS t1, "
                "list_reduce(coalesce(list(w.pv ORDER BY w.ts) FILTER (WHERE w.pts >= $t - k.rng AND w.v < w.pv), "
                "[]::DOUBLE[]), lambda a, x: a + x, arg_max(w.v, w.ts) - arg_min(w.v, w.ts)) AS res",
                " HAVING count(*) >= 2",
            )
            end = "$t" if self.range_off is None else "($t - x.off)"
            start = f"({end} - x.rng)"
            factor = f"p_factor(x.n, x.t0, x.t1, {end}, p_dts(x.res, x.v0, x.t0, x.t1, {start}))"
            if name == "rate":
                factor = f"({factor} / (x.rng / 1000.0))"
            return self.cte(
                f"SELECT p.rid, NULL::VARCHAR AS name, s.lbl, s.o, x.res * {factor} AS v "
                f"FROM {self.table} p JOIN ({inner}) x "
                f"ON {self._on(sel, rng)} JOIN cat s ON s.sid = x.sid"
            )
        if name == "absent_over_time":
            ms = c.args[0]
            sel, rng = self.range_leaf(ms)
            assert isinstance(ms, MatrixSelector)
            inner = self._per_series(sel, rng, "1 AS v")
            lbl = "p." + self.param("labels", sorted(_absent_labels(ms.vector).items()))
            return self.cte(
                f"SELECT p.rid, NULL::VARCHAR AS name, {lbl} AS lbl, 0 AS o, 1.0::DOUBLE AS v FROM {self.table} p "
                f"WHERE NOT EXISTS (SELECT 1 FROM ({inner}) x WHERE {self._on(sel, rng)})"
            )
        if name == "absent":
            arg = c.args[0]
            inner = self.vector(arg)
            if isinstance(arg, VectorSelector):
                absent = _absent_labels(arg)
                lbl = "p." + self.param("labels", sorted(absent.items()))
            else:
                lbl = _EMPTY_LBL
            return self.cte(
                f"SELECT p.rid, NULL::VARCHAR AS name, {lbl} AS lbl, 0 AS o, 1.0::DOUBLE AS v FROM {self.table} p "
                f"WHERE p.rid NOT IN (SELECT rid FROM {inner})"
            )
        if name == "vector":
            x = self.scalar(c.args[0])
            return self.cte(
                f"SELECT p.rid, NULL::VARCHAR AS name, {_EMPTY_LBL} AS lbl, 0 AS o, {x} AS v FROM {self.table} p"
            )
        if name in _SIMPLE_SQL or name in ("round", "clamp", "clamp_min", "clamp_max"):
            child = self.vector(c.args[0])
            where = ""
            if name in _SIMPLE_SQL:
                value = _SIMPLE_SQL[name].format(x="c.v")
            elif name == "round":
                inv = f"(1.0 / {self.scalar(c.args[1]) if len(c.args) > 1 else '1.0'})"
                value = f"(floor(c.v * {inv} + 0.5) / {inv})"
            elif name == "clamp":
                lo, hi = self.scalar(c.args[1]), self.scalar(c.args[2])
                value, where = f"p_gmax({lo}, p_gmin({hi}, c.v))", f" WHERE NOT ({hi} < {lo})"
            else:
                bound = self.scalar(c.args[1])
                value = f"p_gmax({bound}, c.v)" if name == "clamp_min" else f"p_gmin({bound}, c.v)"
            return self.cte(
                f"SELECT c.rid, NULL::VARCHAR AS name, c.lbl, c.o, {value} AS v "
                f"FROM {child} c JOIN {self.table} p ON p.rid = c.rid{where}"
            )
        raise NotCompilable(f"function {name!r}")

    def aggregate(self, a: Aggregate) -> str:
        """An aggregation computed once per distinct parameter set, then joined back to its rules.

        Why: many rules aggregate the same thing (``sum by (job) (rate(x[5m]))``) and differ only
        in their threshold; the grouping is the costly part, so it runs over a de-duplicated
        parameter table (one representative rule per distinct combination of the parameters of
        this subtree) and the result is expanded to every rule by an equi-join on those columns.
        """
        if a.op not in _AGG_SQL or a.param is not None:
            raise NotCompilable(f"aggregation {a.op!r}")
        outer, first_param, first_cte, first_bad = self.table, len(self.params), len(self.ctes), len(self.bad)
        dedup = f"d{self.dedups}"
        self.dedups += 1
        self.table = dedup
        inner = self._aggregate(a)
        self.table = outer
        cols = [p.name for p in self.params[first_param:]]
        listed = ", ".join(cols)
        self.ctes.insert(first_cte, (dedup, f"SELECT min(rid) AS rid, {listed} FROM {outer} GROUP BY {listed}"))
        on = " AND ".join(f"p.{c} IS NOT DISTINCT FROM k.{c}" for c in cols)
        expand = f"{outer} p JOIN {dedup} k ON {on}"
        self.bad[first_bad:] = [
            self.cte(f"SELECT p.rid FROM {expand} WHERE k.rid IN (SELECT rid FROM {b})") for b in self.bad[first_bad:]
        ]
        return self.cte(f"SELECT p.rid, x.name, x.lbl, x.o, x.v FROM {expand} JOIN {inner} x ON x.rid = k.rid")

    def _aggregate(self, a: Aggregate) -> str:
        child = self.vector(a.expr)
        g = "p." + self.param("grouping", list(a.grouping))
        if a.without:
            key = f"NULL::VARCHAR AS name, list_filter(c.lbl, lambda e: NOT list_contains({g}, e.k)) AS lbl"
        else:
            key = (
                f"CASE WHEN list_contains({g}, '{NAME}') THEN c.name END AS name, "
                f"list_filter(c.lbl, lambda e: list_contains({g}, e.k) AND e.v <> '') AS lbl"
            )
        return self.cte(
            f"SELECT rid, name, lbl, min(o) AS o, {_AGG_SQL[a.op]} AS v FROM "
            f"(SELECT c.rid, {key}, c.o, c.v FROM {child} c JOIN {self.table} p ON p.rid = c.rid) "
            "GROUP BY rid, name, lbl"
        )

    def matching(self, m: VectorMatching | None) -> tuple[str | None, bool]:
        """The ``on``/``ignoring`` label list as a parameter (None: match on all labels) and whether it is ``on``.

        ``lbl`` never holds ``__name__`` (it is ``name``), so matching on it, and ``group_left``/
        ``group_right`` (label copying, many-to-one checks), are left to the reference."""
        if m is None or (not m.on and not m.labels):
            return None, False
        if m.card in ("many-to-one", "one-to-many"):
            raise NotCompilable("group_left/group_right")
        if m.on and NAME in m.labels:
            raise NotCompilable("on (__name__)")
        return "p." + self.param("grouping", sorted(set(m.labels))), m.on

    @staticmethod
    def signature(alias: str, g: str | None, on: bool) -> str:
        if g is None:
            return f"{alias}.lbl"
        neg = "" if on else "NOT "
        return f"list_filter({alias}.lbl, lambda e: {neg}list_contains({g}, e.k))"

    def set_operation(self, b: Binary) -> str:
        """``and``/``unless``: the left rows with / without a match; ``or``: all left rows, then the
        right rows without one (their order after the left's, as the reference folds them)."""
        lhs, rhs = self.vector(b.lhs), self.vector(b.rhs)
        g, on = self.matching(b.matching)
        sl, sr = self.signature("c", g, on), self.signature("r", g, on)
        cols = "c.rid, c.name, c.lbl, c.o, c.v"
        if b.op in ("and", "unless"):
            pj = f" JOIN {self.table} p ON p.rid = c.rid" if g else ""
            how = "SEMI" if b.op == "and" else "ANTI"
            return self.cte(f"SELECT {cols} FROM {lhs} c{pj} {how} JOIN {rhs} r ON r.rid = c.rid AND {sl} = {sr}")
        pj = f" JOIN {self.table} p ON p.rid = r.rid" if g else ""
        return self.cte(
            f"SELECT {cols} FROM {lhs} c UNION ALL SELECT r.rid, r.name, r.lbl, "
            f"r.o + (SELECT coalesce(max(o), 0) FROM {lhs}) AS o, r.v FROM {rhs} r{pj} "
            f"ANTI JOIN {lhs} c ON c.rid = r.rid AND {sl} = {sr}"
        )

    def binary(self, b: Binary) -> str:
        op = b.op
        if op in SET_OPERATORS:
            return self.set_operation(b)
        if op not in COMPARISONS and op not in ARITHMETIC:
            raise NotCompilable(f"operator {op!r}")
        cmp = op in COMPARISONS
        name = "c.name"
        if b.lhs.type == "vector" and b.rhs.type == "vector":
            lhs, rhs = self.vector(b.lhs), self.vector(b.rhs)
            g, on = self.matching(b.matching)
            sl, sr = self.signature("c", g, on), self.signature("r", g, on)
            pl_, pr = (
                (f" JOIN {self.table} p ON p.rid = c.rid", f" JOIN {self.table} p ON p.rid = r.rid") if g else ("", "")
            )
            # duplicates on the right, or two left rows matching one right row: the reference's error
            self.bad.append(
                self.cte(
                    f"SELECT r.rid FROM {rhs} r{pr} GROUP BY r.rid, {sr} HAVING count(*) > 1 UNION "
                    f"SELECT c.rid FROM {lhs} c{pl_} SEMI JOIN {rhs} r ON r.rid = c.rid AND {sr} = {sl} "
                    f"GROUP BY c.rid, {sl} HAVING count(*) > 1"
                )
            )
            src = f"{lhs} c{pl_} JOIN {rhs} r ON r.rid = c.rid AND {sr} = {sl}"
            x, y = "c.v", "r.v"
            lbl = sl  # one-to-one: only the on labels, or all but the ignored ones (2.42 resultMetric)
            if on:
                name = "NULL::VARCHAR"
        else:
            swap = b.lhs.type == "scalar"
            vec = self.vector(b.rhs if swap else b.lhs)
            scal = self.scalar(b.lhs if swap else b.rhs)
            src = f"{vec} c JOIN {self.table} p ON p.rid = c.rid"
            x, y = (scal, "c.v") if swap else ("c.v", scal)
            lbl = "c.lbl"
        if cmp and not b.bool_modifier:
            return self.cte(
                f"SELECT c.rid, {name} AS name, {lbl} AS lbl, c.o, c.v FROM {src} WHERE {_cmp_sql(op, x, y)}"
            )
        value = f"(CASE WHEN {_cmp_sql(op, x, y)} THEN 1.0 ELSE 0.0 END)" if cmp else _arith_sql(op, x, y)
        out = self.cte(f"SELECT c.rid, NULL::VARCHAR AS name, {lbl} AS lbl, c.o, {value} AS v FROM {src}")
        # vector-vector results are checked above (two left rows on one right row); with a scalar,
        # dropping the name can merge two metrics' rows
        return out if b.lhs.type == "vector" and b.rhs.type == "vector" else self.unique(b, out)


def _mixes_names(e: Expr) -> bool:
    """Whether rows of ``e`` may come from several metrics: it reads a selector without
    ``__name__="…"`` (``{__name__=~"a|b"}``, ``{job="x"}``). Only then can dropping the name leave
    two rows with one label set."""
    if isinstance(e, VectorSelector):
        return e.selector.metric is None
    if isinstance(e, MatrixSelector):
        return _mixes_names(e.vector)
    if isinstance(e, Call):
        return any(_mixes_names(a) for a in e.args)
    if isinstance(e, Aggregate | Unary):
        return _mixes_names(e.expr)
    if isinstance(e, Binary):
        return _mixes_names(e.lhs) or _mixes_names(e.rhs)
    return False


def compile_expr(expr: Expr) -> Compiled:
    """Compile ``expr`` to SQL text + parameters; raises ``NotCompilable`` outside the supported subset."""
    if isinstance(expr, StringLiteral | MatrixSelector):
        raise NotCompilable(f"a {expr.type} is not a rule expression")
    comp = _Compiler()
    if expr.type == "scalar":
        value = comp.scalar(expr)
        body = (
            f"SELECT p.rid, NULL::VARCHAR AS name, map_from_entries({_EMPTY_LBL}) AS lbl, ({value})::DOUBLE AS v, "
            "FALSE AS bad FROM P p"
        )
        result: Literal["scalar", "vector"] = "scalar"
    else:
        final = comp.vector(expr)
        body = f"SELECT rid, name, map_from_entries(lbl) AS lbl, v::DOUBLE AS v, FALSE AS bad FROM {final}"
        if comp.bad:
            bad = " UNION ".join(f"SELECT rid FROM {n}" for n in comp.bad)
            body += (
                f" UNION ALL SELECT DISTINCT rid, NULL::VARCHAR, map_from_entries({_EMPTY_LBL}), NULL::DOUBLE, TRUE "
                f"FROM ({bad})"
            )
        result = "vector"
    ctes = ", ".join(f"{name} AS ({sql})" for name, sql in comp.ctes)
    sql = f"WITH {ctes} {body}" if ctes else body
    return Compiled(sql, tuple(comp.params), result, comp.max_range_ms, comp.needs_prev)


# ---- the engine -----------------------------------------------------------------------------------


@dataclass(slots=True)
class TickStats:
    """What one ``evaluate_many`` call did (the benchmark prints these)."""

    rules: int = 0
    shapes: int = 0
    queries: int = 0  # SQL statements run: selector matching + window read + one per shape
    fallbacks: int = 0  # expressions evaluated by the reference (not compilable, or a shape that failed)
    reference_rechecks: int = 0  # rules sent to the reference for its error (many-to-many matches)
    series: int = 0  # series whose samples were read
    samples: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("t: evaluation time must be timezone-aware")
    return round(t.timestamp() * 1000)


def _regex_matches(label: str, pattern: str, values: list[str]) -> list[bool]:
    # Fully anchored Go RE2, evaluated exactly as tasks.lake.selector.match_series does.
    return regex_full_matches(label, pattern, values)


class SQLEngine:
    """Evaluates many rule expressions per tick over one lake; keeps per-catalogue caches.

    One engine per lake (``evaluate_many`` keeps one for you). Not thread-safe: one tick at a time.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET preserve_insertion_order = false")
        for m in _MACROS:
            self.con.execute(m)
        self._compiled: dict[Expr, Compiled | NotCompilable] = {}
        self._by_id: dict[int, tuple[Expr, Compiled | NotCompilable]] = {}
        # keyed by id() of a Compiled: safe because self._compiled keeps every Compiled alive
        self._sel_of: dict[int, tuple[tuple[int, Selector], ...]] = {}
        self._p_cache: dict[str, tuple[list[int], list[int], pl.DataFrame]] = {}
        self._last_sels: frozenset[int] = frozenset()
        self._matched_for: pl.DataFrame | None = None
        self._sel_frame = pl.DataFrame(schema={"sel": pl.Int64, "sid": pl.Int64})
        self._sel_ids_wanted: list[int] = []
        self._sel_ids: dict[Selector, int] = {}
        self._cat_key: object = None
        self._n_series = 0
        self._labels: dict[int, dict[str, str]] = {}  # series id → labels with __name__
        self._values: dict[str, list[str]] = {}
        self._matched = pl.DataFrame(schema={"sel": pl.Int64, "sid": pl.Int64})
        self._matched_sels: set[int] = set()
        self._bad_sels: set[int] = set()  # selectors whose regex the Go RE2 translator refuses (→ reference)
        self.last_stats = TickStats()

    # catalogue-derived tables, rebuilt only when the lake's catalogue changes
    def _refresh_catalogue(self) -> None:
        cat = self.lake.catalogue()
        if cat is self._cat_key:
            return
        sids = cat.get_column("series_id").to_list()
        names = cat.get_column("metric").to_list()
        lbls: list[list[dict[str, str]]] = []
        long_sid: list[int] = []
        long_k: list[str] = []
        long_v: list[str] = []
        values: dict[str, set[str]] = {NAME: set(names)}
        full: dict[int, dict[str, str]] = {}
        for sid, name, text in zip(sids, names, cat.get_column("labels").to_list(), strict=True):
            labels = json.loads(text) if text else {}
            lbls.append([{"k": k, "v": v} for k, v in sorted(labels.items())])
            full[sid] = {**labels, NAME: name}
            for k, v in labels.items():
                long_sid.append(sid)
                long_k.append(k)
                long_v.append(v)
                values.setdefault(k, set()).add(v)
        self.con.register(
            "cat",
            pl.DataFrame(
                {
                    "sid": sids,
                    "name": names,
                    "lbl": pl.Series(lbls, dtype=LBL_TYPE),
                    # the reference's vector order: series by their text form (Lake.raw's order)
                    "o": cat.get_column("series").rank("ordinal").cast(pl.Int64),
                },
                schema_overrides={"sid": pl.Int64, "name": pl.String},
            ),
        )
        self._labels = full
        self.con.register(
            "catl",
            pl.DataFrame(
                {"sid": long_sid, "k": long_k, "v": long_v}, schema={"sid": pl.Int64, "k": pl.String, "v": pl.String}
            ),
        )
        self._values = {k: sorted(v | {""}) for k, v in values.items()}
        self._cat_key = cat
        self._n_series = cat.height
        self._matched = self._matched.clear()
        self._matched_sels = set()
        self._bad_sels = set()

    def _sel_id(self, sel: Selector) -> int:
        sid = self._sel_ids.get(sel)
        if sid is None:
            sid = self._sel_ids[sel] = len(self._sel_ids)
        return sid

    def _match(self, sels: dict[int, Selector], stats: TickStats) -> None:
        """Resolve the selectors not matched yet (since the catalogue last changed) in one query."""
        todo = {i: s for i, s in sels.items() if i not in self._matched_sels}
        if not todo:
            return
        rows_sel: list[dict[str, Any]] = []
        rows_mat: list[dict[str, Any]] = []
        regexes: set[tuple[str, str]] = set()
        for i, s in todo.items():
            drv_k = drv_v = None
            for m in s.matchers:
                if m.name == NAME and m.op == "=":
                    continue  # the metric (selector.py skips every __name__= matcher after the first)
                rows_mat.append({"sel": i, "k": m.name, "op": m.op, "val": m.value})
                if m.op in ("=~", "!~"):
                    regexes.add((m.name, m.value))
                elif m.op == "=" and m.value != "" and drv_k is None:
                    drv_k, drv_v = m.name, m.value
            rows_sel.append({"sel": i, "metric": s.metric, "drv_k": drv_k, "drv_v": drv_v})
        rx_k: list[str] = []
        rx_pat: list[str] = []
        rx_v: list[str] = []
        rx_ok: list[bool] = []
        broken: set[tuple[str, str]] = set()
        for k, pat in regexes:
            vals = self._values.get(k, [""])
            try:
                ok = _regex_matches(k, pat, vals)
            except SelectorError:
                # A selector built without parse_selector's check: the reference raises its own
                # error for these rules.
                broken.add((k, pat))
                continue
            rx_ok += ok
            rx_k += [k] * len(vals)
            rx_pat += [pat] * len(vals)
            rx_v += vals
        for i, s in todo.items():
            if any((m.name, m.value) in broken for m in s.matchers if m.op in ("=~", "!~")):
                self._bad_sels.add(i)
        self.con.register(
            "sels",
            pl.DataFrame(
                rows_sel, schema={"sel": pl.Int64, "metric": pl.String, "drv_k": pl.String, "drv_v": pl.String}
            ),
        )
        self.con.register(
            "mat", pl.DataFrame(rows_mat, schema={"sel": pl.Int64, "k": pl.String, "op": pl.String, "val": pl.String})
        )
        self.con.register(
            "rx",
            pl.DataFrame(
                {"k": rx_k, "pat": rx_pat, "v": rx_v, "ok": rx_ok},
                schema={"k": pl.String, "pat": pl.String, "v": pl.String, "ok": pl.Boolean},
            ),
        )
        df = self.con.sql(_MATCH_SQL).pl().cast({"sel": pl.Int64, "sid": pl.Int64})
        stats.queries += 1
        self._matched = pl.concat([self._matched, df])
        self._matched_sels |= set(todo)

    def evaluate_many(
        self, exprs: Sequence[Expr | str], t: datetime, *, stale: StaleMarkers | None = None
    ) -> list[float | Vector | Exception]:
        """Evaluate every expression at ``t``; a failing one yields its exception in its slot.

        ``stale``: staleness markers that end series for instant selectors, as in ``evaluate``.
        """
        t0 = time.perf_counter()
        t_ms = _ms(t)
        stats = TickStats(rules=len(exprs))
        out: list[float | Vector | Exception | None] = [None] * len(exprs)
        nodes: list[Expr | None] = [None] * len(exprs)
        shapes: dict[str, list[int]] = {}
        compiled: dict[int, Compiled] = {}
        fallback: list[int] = []
        if len(self._compiled) > _MAX_CACHED:  # rules keep changing: start the caches afresh
            self._compiled.clear()
            self._by_id.clear()
            self._sel_of.clear()
            self._p_cache.clear()
        for i, e in enumerate(exprs):
            try:
                node = parse(e) if isinstance(e, str) else e
            except Exception as exc:
                out[i] = exc
                continue
            nodes[i] = node
            hit = self._by_id.get(id(node))  # rules are the same objects tick after tick: skip hashing
            if hit is not None and hit[0] is node:
                c = hit[1]
            else:
                found = self._compiled.get(node)
                if found is None:
                    try:
                        found = compile_expr(node)
                    except NotCompilable as exc:
                        found = exc
                    self._compiled[node] = found
                c = found
                self._by_id[id(node)] = (node, c)
            if isinstance(c, NotCompilable):
                fallback.append(i)
                continue
            compiled[i] = c
            shapes.setdefault(c.sql, []).append(i)
        stats.shapes = len(shapes)
        stats.seconds["compile"] = time.perf_counter() - t0

        if shapes:
            # The shared steps (selector matching, the one window read) serve every compiled rule;
            # should one of them fail (a window no datetime can hold...), the rules they served go
            # to the reference one by one, where each failure stays in its own slot.
            try:
                t1 = time.perf_counter()
                self._refresh_catalogue()
                sels: dict[int, Selector] = {}
                for c in compiled.values():
                    known = self._sel_of.get(id(c))
                    if known is None:
                        known = self._sel_of[id(c)] = tuple((self._sel_id(s), s) for s in c.selectors)
                    sels.update(known)
                self._match(sels, stats)
                if self._bad_sels:
                    for i, c in list(compiled.items()):
                        if any(sid in self._bad_sels for sid, _ in self._sel_of[id(c)]):
                            shapes[c.sql].remove(i)
                            del compiled[i]
                            fallback.append(i)
                    shapes = {sql: rids for sql, rids in shapes.items() if rids}
                    stats.shapes = len(shapes)
                key = frozenset(sels)
                if key != self._last_sels or self._matched_for is not self._matched:
                    self._sel_frame = self._matched.filter(pl.col("sel").is_in(list(sels)))
                    self._sel_ids_wanted = self._sel_frame.get_column("sid").unique().to_list()
                    self.con.register("sel_match", self._sel_frame)
                    self._last_sels, self._matched_for = key, self._matched
                ids = self._sel_ids_wanted
                stats.seconds["match"] = time.perf_counter() - t1

                t2 = time.perf_counter()
                max_ms = max((c.max_range_ms for c in compiled.values()), default=0)
                start = datetime.fromtimestamp((t_ms - max_ms) / 1000, UTC)
                end = datetime.fromtimestamp((t_ms + 1) / 1000, UTC)
                # Most series wanted (the usual case with many rules): read them all, unfiltered; the
                # joins through sel_match ignore the rest.
                wanted: list[int] | None = None if len(ids) * 2 > self._n_series else ids
                win = self.lake.window_samples(wanted, start, end) if max_ms and ids else None
                if win is None:
                    win = pl.DataFrame(schema={"series_id": pl.Int64, "ts": pl.Int64, "value": pl.Float64})
                stats.queries += 1 if max_ms and ids else 0
                stats.series, stats.samples = len(ids), win.height
                win = win.rename({"series_id": "sid", "value": "v"})
                if any(c.needs_prev for c in compiled.values()):
                    same = pl.col("sid").shift(1) == pl.col("sid")  # predecessor within the same series
                    win = win.sort("sid", "ts").with_columns(
                        pl.when(same).then(pl.col("v").shift(1)).alias("pv"),
                        pl.when(same).then(pl.col("ts").shift(1)).alias("pts"),
                    )
                else:
                    win = win.with_columns(pl.lit(None, pl.Float64).alias("pv"), pl.lit(None, pl.Int64).alias("pts"))
                self.con.register("win", win)
                self.con.register("stale_sids", self._stale_sids(win, stale, t_ms))
                offsets = {p.value for c in compiled.values() for p in c.params if p.kind == "offset_ms"}
                self.con.register("stale_off", self._stale_offsets(win, stale, t_ms, offsets))
                stats.seconds["window"] = time.perf_counter() - t2

                t3 = time.perf_counter()
                for sql, rids in shapes.items():
                    failed = self._run_shape(sql, rids, compiled, t_ms, out, stats)
                    fallback += failed
                stats.seconds["shapes"] = time.perf_counter() - t3
            except Exception:
                fallback += [i for i in compiled if out[i] is None and i not in fallback]

        t4 = time.perf_counter()
        for i in fallback:
            ref_node = nodes[i]
            assert ref_node is not None
            try:
                out[i] = evaluate(ref_node, self.lake, t, stale=stale)
            except Exception as exc:
                out[i] = exc
        stats.fallbacks = len(fallback) - stats.reference_rechecks
        stats.seconds["fallback"] = time.perf_counter() - t4
        stats.seconds["total"] = time.perf_counter() - t0
        self.last_stats = stats
        assert all(r is not None for r in out)
        return [r for r in out if r is not None]

    def _stale_offsets(
        self, win: pl.DataFrame, stale: StaleMarkers | None, t_ms: int, offsets: set[int]
    ) -> pl.DataFrame:
        """``_stale_sids`` as of ``t - offset`` for every offset the tick's rules use: (sid, off)."""
        sids: list[int] = []
        offs: list[int] = []
        for off in sorted(offsets) if stale else ():
            ended = self._stale_sids(win.filter(pl.col("ts") <= t_ms - off), stale, t_ms - off)
            sids += ended.get_column("sid").to_list()
            offs += [off] * ended.height
        return pl.DataFrame({"sid": sids, "off": offs}, schema={"sid": pl.Int64, "off": pl.Int64})

    def _stale_sids(self, win: pl.DataFrame, stale: StaleMarkers | None, t_ms: int) -> pl.DataFrame:
        """Series whose newest sample in the lookback is followed by a marker at or before ``t``."""
        ended: list[int] = []
        if stale:
            newest = win.filter(pl.col("ts") >= t_ms - _LOOKBACK_MS).group_by("sid").agg(pl.col("ts").max())
            for sid, ts in newest.iter_rows():
                if stale.ends(self._labels[sid], ts, t_ms):
                    ended.append(sid)
        return pl.DataFrame({"sid": ended}, schema={"sid": pl.Int64})

    def _run_shape(
        self,
        sql: str,
        rids: list[int],
        compiled: dict[int, Compiled],
        t_ms: int,
        out: list[float | Vector | Exception | None],
        stats: TickStats,
    ) -> list[int]:
        """One query for every rule of a shape; returns the rules the reference must evaluate."""
        first = compiled[rids[0]]
        members = [id(compiled[i]) for i in rids]
        cached = self._p_cache.get(sql)
        if cached is not None and cached[0] == rids and cached[1] == members:
            params = cached[2]  # the same rules as last tick: the parameter table is unchanged
        else:
            params = self._param_table(first, rids, compiled)
            self._p_cache[sql] = (rids, members, params)
        self.con.register("P", params)
        try:
            rows = self.con.execute(sql, {"t": t_ms} if "$t" in sql else None).fetchall()
        except duckdb.Error:
            return list(rids)
        finally:
            stats.queries += 1
        scalar = first.result == "scalar"
        results: dict[int, Any] = {i: (None if scalar else []) for i in rids}
        bad: list[int] = []
        for rid, name, labels, v, is_bad in rows:
            if is_bad:
                bad.append(rid)
            elif scalar:
                results[rid] = v
            else:
                if name is not None:
                    labels[NAME] = name
                results[rid].append((labels, v))
        for rid, r in results.items():
            out[rid] = r if scalar or len(r) < 2 else sorted(r, key=lambda x: tuple(sorted(x[0].items())))
        stats.reference_rechecks += len(bad)
        return bad

    def _param_table(self, first: Compiled, rids: list[int], compiled: dict[int, Compiled]) -> pl.DataFrame:
        """The table ``P`` of a shape: ``rid`` and one typed column per parameter."""
        cols: dict[str, pl.Series] = {"rid": pl.Series("rid", rids, dtype=pl.Int64)}
        for j, p in enumerate(first.params):
            values = [compiled[i].params[j].value for i in rids]
            if p.kind == "number":
                cols[p.name] = pl.Series(p.name, values, dtype=pl.Float64)
            elif p.kind == "selector":
                cols[p.name] = pl.Series(p.name, [self._sel_ids[s] for s in values], dtype=pl.Int64)
            elif p.kind in ("range_ms", "offset_ms"):
                cols[p.name] = pl.Series(p.name, values, dtype=pl.Int64)
            elif p.kind == "grouping":
                cols[p.name] = pl.Series(p.name, values, dtype=pl.List(pl.String))
            else:
                cols[p.name] = pl.Series(p.name, [[{"k": k, "v": v} for k, v in x] for x in values], dtype=LBL_TYPE)
        return pl.DataFrame(cols)


_MATCH_SQL = """
WITH cand AS (
    SELECT s.sel, d.sid FROM sels s JOIN catl d ON d.k = s.drv_k AND d.v = s.drv_v
    JOIN cat c ON c.sid = d.sid WHERE s.metric IS NULL OR c.name = s.metric
    UNION ALL
    SELECT s.sel, c.sid FROM sels s JOIN cat c ON c.name = s.metric WHERE s.drv_k IS NULL
    UNION ALL
    SELECT s.sel, c.sid FROM sels s CROSS JOIN cat c WHERE s.drv_k IS NULL AND s.metric IS NULL
), chk AS (
    SELECT cand.sel, cand.sid, m.op, m.val, m.k,
        CASE WHEN m.k = '__name__' THEN c.name ELSE coalesce(l.v, '') END AS lv
    FROM cand JOIN cat c ON c.sid = cand.sid
    LEFT JOIN mat m ON m.sel = cand.sel
    LEFT JOIN catl l ON l.sid = cand.sid AND l.k = m.k
)
SELECT chk.sel, chk.sid FROM chk LEFT JOIN rx ON rx.k = chk.k AND rx.pat = chk.val AND rx.v = chk.lv
GROUP BY chk.sel, chk.sid
HAVING bool_and(CASE
    WHEN chk.op IS NULL THEN TRUE
    WHEN chk.op = '=' THEN chk.lv = chk.val
    WHEN chk.op = '!=' THEN chk.lv <> chk.val
    WHEN chk.op = '=~' THEN coalesce(rx.ok, FALSE)
    ELSE NOT coalesce(rx.ok, FALSE) END)
"""

_ENGINES: weakref.WeakKeyDictionary[Any, SQLEngine] = weakref.WeakKeyDictionary()


def evaluate_many(
    exprs: Sequence[Expr | str],
    lake: Lake,
    t: datetime,
    *,
    stale: StaleMarkers | None = None,
    engine: SQLEngine | None = None,
) -> list[float | Vector | Exception]:
    """Evaluate many rule expressions at ``t`` over ``lake`` (same values as ``evaluate``).

    An expression that fails yields its exception in its slot and never sinks the others. The
    engine (and its caches) is kept per lake unless one is given; ``engine.last_stats`` says what
    the tick did.
    """
    if engine is None:
        engine = _ENGINES.get(lake)
        if engine is None:
            engine = _ENGINES[lake] = SQLEngine(lake)
    return engine.evaluate_many(exprs, t, stale=stale)


def evaluate_one(expr: Expr | str, lake: Lake, t: datetime, *, stale: StaleMarkers | None = None) -> float | Vector:
    """``evaluate``'s signature on the SQL engine: one expression, its exception raised.

    For callers that step rules one at a time (``rules test``, the promtool differential test), so
    they exercise the engine the alerts flow runs."""
    (result,) = evaluate_many([expr], lake, t, stale=stale)
    if isinstance(result, Exception):
        raise result
    return result

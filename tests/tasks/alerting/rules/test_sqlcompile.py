"""The SQL rule engine against the reference evaluator, over real tmp lakes.

The oracle is ``tasks.alerting.rules.evaluate.evaluate`` (exact Prometheus 2.42 semantics): a seeded
random differential test over irregular series with gaps and counter resets, plus edge cases
written by hand (lookback edges, empty windows, regex anchors, hostile label values).
"""

from __future__ import annotations

import math
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.alerting.rules.evaluate import EvalError, StaleMarkers, evaluate
from tasks.alerting.rules.promql import VectorSelector, parse
from tasks.alerting.rules.sqlcompile import NotCompilable, SQLEngine, compile_expr, evaluate_many
from tasks.lake import Lake, Sample
from tasks.lake.selector import Matcher, Selector

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
SEED = int(os.environ.get("ALERT_SQL_SEED", "20261127"))  # printed in every failure: replay with it
HOSTILE = ["it's", 'say "hi"', "back\\slash", "x'); DROP TABLE win; --", "$t", "p.c0", "a|b"]


def put(lake: Lake, metric: str, labels: dict[str, str], points: list[tuple[timedelta, float]]) -> None:
    lake.write_samples([Sample(metric, v, T + dt, labels) for dt, v in points], now=T + timedelta(hours=1))


def close(a: float, b: float, exact: bool = False) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or (not exact and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))


def assert_same(got: Any, want: Any, what: str, exact: bool = False) -> None:
    if isinstance(want, Exception):
        assert isinstance(got, type(want)) and str(got) == str(want), f"{what}: {got!r} != {want!r}"
        return
    assert not isinstance(got, Exception), f"{what}: raised {got!r}, reference gave {want!r}"
    if isinstance(want, float):
        assert isinstance(got, float) and close(got, want, exact), f"{what}: {got!r} != {want!r}"
        return
    key = lambda r: (tuple(sorted(r[0].items())), r[1])  # noqa: E731
    g, w = sorted(got, key=key), sorted(want, key=key)
    assert [x[0] for x in g] == [x[0] for x in w], f"{what}: label sets differ\n got {g}\nwant {w}"
    for (lab, gv), (_, wv) in zip(g, w, strict=True):
        assert close(gv, wv, exact), f"{what}: {lab}: {gv!r} != {wv!r}"


def reference(expr: str, lake: Lake, t: datetime, stale: StaleMarkers | None = None) -> Any:
    try:
        return evaluate(expr, lake, t, stale=stale)
    except Exception as e:  # the engine must raise the same
        return e


@pytest.fixture
def lake(tmp_path: Any) -> Lake:
    return Lake(str(tmp_path / "lake"))


# ---- randomized differential test ----------------------------------------------------------------


def build_random_lake(lake: Lake, rng: random.Random) -> StaleMarkers:
    """Irregular scrapes (5–45 s), gaps of minutes, late starts, early stops, counter resets, and
    staleness markers after a fifth of the series' last samples (some of them beyond ``t``)."""
    samples: list[Sample] = []
    stale = StaleMarkers()
    for metric in ("g1", "g2", "c_total"):
        for inst in "abcde":
            for job in ("x", "y"):
                if rng.random() < 0.25:
                    continue
                labels = {"instance": inst, "job": job}
                if rng.random() < 0.3:
                    labels["path"] = rng.choice(HOSTILE)
                ts = -rng.randint(600, 1500)  # seconds relative to T
                stop = rng.choice([0, 120, -200, -400, 900])
                v = rng.uniform(0, 50)
                while ts <= stop:
                    if metric == "c_total":
                        v = 0.0 if rng.random() < 0.05 else v + rng.uniform(0, 20)
                    else:
                        v = rng.uniform(-10, 100) if rng.random() < 0.9 else 0.0
                    samples.append(Sample(metric, round(v, 3), T + ts * S, labels))
                    ts += rng.randint(5, 45) if rng.random() < 0.93 else rng.randint(120, 420)
                if rng.random() < 0.2:
                    stale.add({**labels, "__name__": metric}, T + (stop + rng.randint(1, 200)) * S)
    # two batches: the engine must keep the last write per identity like the reference
    half = len(samples) // 2
    lake.write_samples(samples[:half], now=T + timedelta(hours=1))
    lake.write_samples(samples[half:], now=T + timedelta(hours=1))
    return stale


def random_selector(rng: random.Random, metric: str | None = None) -> str:
    metric = metric or rng.choice(["g1", "g2", "c_total"])
    ms: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        name = rng.choice(["instance", "job", "path", "nope"])
        op = rng.choice(["=", "!=", "=~", "!~"])
        if op in ("=~", "!~"):
            val = rng.choice(["a|b", "[a-c]", ".*", ".+", "a", "a.*", "", "x|", "it.*", ".*DROP.*", "\\\\$t"])
        else:
            val = rng.choice(["a", "b", "x", "y", "", "it's", 'say \\"hi\\"', "back\\\\slash"])
        ms.append(f'{name}{op}"{val}"')
    return f"{metric}{{{', '.join(ms)}}}" if ms else metric


def random_range(rng: random.Random) -> str:
    return rng.choice(["15s", "30s", "1m", "2m", "5m", "10m", "1m30s"])


def random_number(rng: random.Random) -> str:
    return rng.choice(["0", "1", "2", "10", "0.5", "-3", "50", "100"])


def random_offset(rng: random.Random) -> str:
    return rng.choice(["", "", "", " offset 1m", " offset 2m30s", " offset 7m"])


def random_vector(rng: random.Random, depth: int) -> str:
    k = rng.randint(0, 14 if depth > 0 else 3)
    if k == 0:
        return random_selector(rng) + random_offset(rng)
    if k == 1:
        fn = rng.choice(["avg", "min", "max", "sum", "count", "last", "present"])
        return f"{fn}_over_time({random_selector(rng)}[{random_range(rng)}]{random_offset(rng)})"
    if k == 2:
        fn = rng.choice(["rate", "increase", "changes", "resets"])
        sel = random_selector(rng, rng.choice(["c_total", "c_total", "g1"]))
        return f"{fn}({sel}[{random_range(rng)}]{random_offset(rng)})"
    if k == 3:
        q = rng.choice(["0", "0.25", "0.5", "0.9", "1", "-1", "2"])
        return f"quantile_over_time({q}, {random_selector(rng)}[{random_range(rng)}])"
    if k == 4:
        op = rng.choice(["sum", "avg", "min", "max", "count"])
        labels = ", ".join(rng.sample(["instance", "job", "path"], rng.randint(0, 2)))
        mod = rng.choice(["by", "without"])
        return f"{op} {mod} ({labels}) ({random_vector(rng, depth - 1)})"
    if k == 5:
        op = rng.choice(["+", "-", "*", "/", "%", "^"])
        return f"({random_vector(rng, depth - 1)} {op} {random_number(rng)})"
    if k == 6:
        op = rng.choice([">", "<", ">=", "<=", "==", "!="])
        b = rng.choice(["", " bool"])
        if rng.random() < 0.5:
            return f"({random_vector(rng, depth - 1)} {op}{b} {random_number(rng)})"
        return f"({random_number(rng)} {op}{b} {random_vector(rng, depth - 1)})"
    if k == 7:
        m1, m2 = rng.sample(["g1", "g2", "c_total"], 2)
        op = rng.choice(["+", "-", "/", ">", "<", "> bool"])
        return f"({random_selector(rng, m1)} {op} {random_selector(rng, m2)})"
    if k == 8:
        inner = random_selector(rng) + random_offset(rng) if rng.random() < 0.7 else random_vector(rng, depth - 1)
        return f"absent({inner})"
    if k == 10:
        op = rng.choice(["and", "or", "unless"])
        mod = rng.choice(["", "", " on (instance)", " ignoring (job)", " on ()", " on (job, path)"])
        return f"({random_vector(rng, depth - 1)} {op}{mod} {random_vector(rng, depth - 1)})"
    if k == 11:
        m1, m2 = rng.sample(["g1", "g2", "c_total"], 2)
        op = rng.choice(["+", "-", "/", ">", "<", "> bool", "== bool"])
        mod = rng.choice([" on (instance, job)", " ignoring (path)", " on (instance)", " ignoring (job)"])
        return f"({random_selector(rng, m1)} {op}{mod} {random_selector(rng, m2)})"
    if k == 12:
        fn = rng.choice(["abs", "ceil", "floor", "sqrt", "sgn", "round"])
        return f"{fn}({random_vector(rng, depth - 1)})"
    if k == 13:
        return rng.choice(
            [
                f"round({random_vector(rng, depth - 1)}, {rng.choice(['0.5', '3', '0.1', '-2'])})",
                f"clamp({random_vector(rng, depth - 1)}, {random_number(rng)}, {random_number(rng)})",
                f"clamp_min({random_vector(rng, depth - 1)}, {random_number(rng)})",
                f"clamp_max({random_vector(rng, depth - 1)}, {random_number(rng)})",
                f"absent_over_time({random_selector(rng)}[{random_range(rng)}]{random_offset(rng)})",
                f"vector({random_number(rng)})",
                "vector(time())",
                f"group by (job) ({random_vector(rng, depth - 1)})",
            ]
        )
    if k == 14:
        return f"({random_vector(rng, depth - 1)} {rng.choice(['>', '<', '-'])} time() / 1e7)"
    return f"-({random_vector(rng, depth - 1)})"


def random_expr(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return f"{random_number(rng)} {rng.choice(['+', '*', '/', '%', '^', '> bool'])} {random_number(rng)}"
    return random_vector(rng, 2)


def test_random_expressions_agree_with_reference(lake: Lake) -> None:
    rng = random.Random(SEED)
    stale = build_random_lake(lake, rng)
    assert len(stale) > 0
    exprs = [random_expr(rng) for _ in range(160)]
    times = [T - 600 * S, T - 137 * S, T, T + 300 * S]
    engine = SQLEngine(lake)
    checked = nonempty = 0
    for t in times:
        got = engine.evaluate_many(exprs, t, stale=stale)
        assert engine.last_stats.fallbacks == 0, "every generated expression compiles"
        for e, g in zip(exprs, got, strict=True):
            # the brief asks for 1e-9; the engine folds in the reference's order, so it is exact
            assert_same(g, reference(e, lake, t, stale), f"seed {SEED} t={t.isoformat()} {e}", exact=True)
            checked += 1
            nonempty += bool(g) and not isinstance(g, Exception)
    assert checked == len(exprs) * len(times)
    assert nonempty > checked // 3, "the generator must produce mostly non-empty answers to test anything"


# ---- edge cases -----------------------------------------------------------------------------------


def test_lookback_and_range_edges_closed_on_both_ends(lake: Lake) -> None:
    put(lake, "g", {"host": "a"}, [(-300 * S, 1.0)])  # exactly t-5m: included
    put(lake, "g", {"host": "b"}, [(-300 * S - timedelta(milliseconds=1), 2.0)])  # 1 ms too old
    put(lake, "g", {"host": "c"}, [(-600 * S, 3.0), (-60 * S, 4.0), (0 * S, 5.0)])
    put(lake, "g", {"host": "d"}, [(1 * S, 6.0)])  # after t: invisible
    exprs = ["g", "count_over_time(g[1m])", "sum_over_time(g[10m])", "last_over_time(g[5m])"]
    got = evaluate_many(exprs, lake, T)
    assert got[0] == [({"__name__": "g", "host": "a"}, 1.0), ({"__name__": "g", "host": "c"}, 5.0)]
    assert got[1] == [({"host": "c"}, 2.0)]  # t-1m and t both in [t-1m, t]
    assert got[2] == [({"host": "a"}, 1.0), ({"host": "b"}, 2.0), ({"host": "c"}, 12.0)]
    # last_over_time keeps __name__ (2.42)
    assert got[3] == [({"__name__": "g", "host": "a"}, 1.0), ({"__name__": "g", "host": "c"}, 5.0)]
    later = evaluate_many(exprs, lake, T + 301 * S)
    assert later[0] == [({"__name__": "g", "host": "d"}, 6.0)]  # d's t+1s sits on the edge
    for t in (T, T + 301 * S, T - 300 * S):
        for e, g in zip(exprs, evaluate_many(exprs, lake, t), strict=True):
            assert_same(g, evaluate(e, lake, t), e)


def test_empty_lake_and_empty_windows(lake: Lake) -> None:
    exprs = ["g", "rate(c[5m])", "absent(g)", 'absent(g{job="x", job="y", env="p"})', "sum(g)", "1 + 1"]
    assert evaluate_many(exprs, lake, T) == [[], [], [({}, 1.0)], [({"env": "p"}, 1.0)], [], 2.0]
    put(lake, "g", {"job": "x"}, [(-3600 * S, 1.0)])
    put(lake, "c", {"job": "x"}, [(-10 * S, 1.0)])  # one sample: no rate
    got = evaluate_many(exprs, lake, T)
    assert got == [[], [], [({}, 1.0)], [({"env": "p"}, 1.0)], [], 2.0]


def test_series_appear_and_disappear_between_ticks(lake: Lake) -> None:
    engine = SQLEngine(lake)
    put(lake, "up", {"instance": "a"}, [(-60 * S, 1.0)])
    exprs = ["up", "absent(up)", 'up{instance="b"}', "count(up)"]
    assert engine.evaluate_many(exprs, T) == [
        [({"__name__": "up", "instance": "a"}, 1.0)],
        [],
        [],
        [({}, 1.0)],
    ]
    put(lake, "up", {"instance": "b"}, [(30 * S, 0.0)])  # a new series: the catalogue changes
    got = engine.evaluate_many(exprs, T + 60 * S)
    assert got[0] == [({"__name__": "up", "instance": "a"}, 1.0), ({"__name__": "up", "instance": "b"}, 0.0)]
    assert got[2] == [({"__name__": "up", "instance": "b"}, 0.0)]
    assert got[3] == [({}, 2.0)]
    assert engine.evaluate_many(exprs, T + 600 * S) == [[], [({}, 1.0)], [], []]  # both gone stale


def test_regex_matchers_are_fully_anchored(lake: Lake) -> None:
    for inst in ("a", "ab", "ba", "b"):
        put(lake, "g", {"instance": inst}, [(-10 * S, 1.0)])
    put(lake, "g", {}, [(-10 * S, 2.0)])  # no instance label: it equals ""

    def insts(expr: str) -> list[str]:
        (res,) = evaluate_many([expr], lake, T)
        assert isinstance(res, list)
        assert_same(res, evaluate(expr, lake, T), expr)
        return sorted(lab.get("instance", "") for lab, _ in res)

    assert insts('g{instance=~"a"}') == ["a"]
    assert insts('g{instance=~"a.*"}') == ["a", "ab"]
    assert insts('g{instance=~"b|a"}') == ["a", "b"]
    assert insts('g{instance!~"a"}') == ["", "ab", "b", "ba"]
    assert insts('g{instance=~".*"}') == ["", "a", "ab", "b", "ba"]
    assert insts('g{instance=~".+"}') == ["a", "ab", "b", "ba"]
    assert insts('g{instance=""}') == [""]
    assert insts('g{instance!=""}') == ["a", "ab", "b", "ba"]
    assert insts('{__name__=~"g|h", instance=~"b.?"}') == ["b", "ba"]


@pytest.mark.timeout(30)
def test_catastrophic_regex_finishes_in_both_engines(lake: Lake) -> None:
    """``(a*)*c`` against a 40-character label value: exponential on a backtracking engine (hours)."""
    long = "a" * 40
    put(lake, "g", {"instance": long}, [(-10 * S, 1.0)])
    engine = SQLEngine(lake)
    exprs = ['g{instance=~"(a*)*c"}', 'g{instance!~"(a*)*c"}', 'count(g{instance=~"(a|aa)+c|(a*)*"})']
    got = engine.evaluate_many(exprs, T)
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, reference(e, lake, T), e)
    assert got[0] == [] and got[1] == [({"__name__": "g", "instance": long}, 1.0)] and got[2] == [({}, 1.0)]
    assert engine.last_stats.fallbacks == 0


def test_hostile_label_values_travel_as_parameters(lake: Lake) -> None:
    for i, v in enumerate(HOSTILE):
        put(lake, "g", {"path": v}, [(-10 * S, float(i))])
    for i, v in enumerate(HOSTILE):
        quoted = v.replace("\\", "\\\\").replace('"', '\\"')
        expr = parse(f'sum by (path) (g{{path="{quoted}"}}) > -1')
        compiled = compile_expr(expr)
        assert v not in compiled.sql or v in ("$t", "p.c0")  # those two are our own identifiers
        assert "DROP" not in compiled.sql and "hi" not in compiled.sql
        assert any(p.kind == "selector" and str(p.value) == str(expr.lhs.expr.selector) for p in compiled.params)  # type: ignore[union-attr]
        assert evaluate_many([expr], lake, T) == [[({"path": v}, float(i))]]
    regex = "g{path=~\"it's|x'\\\\); DROP.*\"}"
    got = evaluate_many([regex], lake, T)[0]
    assert_same(got, evaluate(regex, lake, T), regex)
    assert isinstance(got, list) and {lab["path"] for lab, _ in got} == {"it's", "x'); DROP TABLE win; --"}


def test_rules_of_one_shape_share_sql_and_run_as_one_query(lake: Lake) -> None:
    for inst in "abc":
        put(lake, "cpu", {"instance": inst}, [(-10 * S, {"a": 10.0, "b": 50.0, "c": 90.0}[inst])])
    a = compile_expr(parse('avg_over_time(cpu{instance="a"}[5m]) > 20'))
    b = compile_expr(parse('avg_over_time(cpu{instance=~"b|c"}[10m]) > 80'))
    assert a.sql == b.sql and a.params != b.params
    assert "20" not in a.sql and "instance" not in a.sql and "cpu" not in a.sql
    assert compile_expr(parse("avg_over_time(cpu[5m]) < 20")).sql != a.sql  # another operator, another shape
    engine = SQLEngine(lake)
    exprs = [f'avg_over_time(cpu{{instance="{i}"}}[5m]) > {x}' for i in "abc" for x in (5, 40, 95)]
    got = engine.evaluate_many(exprs, T)
    assert engine.last_stats.shapes == 1 and engine.last_stats.fallbacks == 0
    assert [len(r) for r in got if isinstance(r, list)] == [1, 0, 0, 1, 1, 0, 1, 1, 0]


def test_a_failing_rule_fails_alone(lake: Lake) -> None:
    put(lake, "a", {"x": "1", "y": "1"}, [(-10 * S, 1.0)])
    put(lake, "a", {"x": "1", "y": "2"}, [(-10 * S, 2.0)])
    put(lake, "b", {"x": "1"}, [(-10 * S, 3.0)])
    put(lake, "c", {"x": "1"}, [(-10 * S, 4.0)])
    engine = SQLEngine(lake)
    exprs: list[Any] = [
        "sum by (x) (a) + b",
        "a + on(x) b",
        'sum without (y) (a) - {__name__=~"b|c"}',
        "a[5m]",
        "a > 1",
    ]
    got = engine.evaluate_many(exprs, T)
    assert got[0] == [({"x": "1"}, 6.0)]
    # two left series match one right series on (x): the reference's error, in its slot
    assert isinstance(got[1], EvalError) and "multiple matches for labels" in str(got[1])
    assert isinstance(got[2], EvalError) and "duplicate series" in str(got[2])  # many-to-many: reference says
    assert_same(got[2], reference(exprs[2], lake, T), "many-to-many")
    assert isinstance(got[3], EvalError)  # a range vector is not a rule: reference fallback
    assert got[4] == [({"__name__": "a", "x": "1", "y": "2"}, 2.0)]
    assert engine.last_stats.fallbacks == 1 and engine.last_stats.reference_rechecks == 2
    assert isinstance(engine.evaluate_many(["a +"], T)[0], ValueError)  # a parse error, in its slot
    with pytest.raises(NotCompilable):
        compile_expr(parse("a[5m]"))


def test_rate_with_counter_resets_and_extrapolation(lake: Lake) -> None:
    # resets at -150 s and -60 s; one sample every 30 s from t-270s to t-30s
    pts = [(-270 * S, 5.0), (-240 * S, 10.0), (-210 * S, 20.0), (-180 * S, 30.0), (-150 * S, 2.0)]
    pts += [(-120 * S, 8.0), (-90 * S, 12.0), (-60 * S, 1.0), (-30 * S, 4.0)]
    put(lake, "c_total", {"job": "x"}, pts)
    exprs = ["rate(c_total[5m])", "increase(c_total[5m])", "increase(c_total[1m])", "rate(c_total[1m])"]
    got = evaluate_many(exprs, lake, T)
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, evaluate(e, lake, T), e)
    # by hand: 4 - 5 + 30 + 12 = 41 over 240 s sampled; both edges are 30 s away (< 1.1 × 30 s), but
    # the start side stops at the counter's zero point, 240 × 5/41 s before the first sample
    assert got[1] == [({"job": "x"}, pytest.approx(41 * (240 + 240 * 5 / 41 + 30) / 240, rel=1e-12))]
    # [1m]: 1 → 4 from the window start to 30 s before t: 3 × 60/30 = 6 over 60 s
    assert got[3] == [({"job": "x"}, pytest.approx(0.1, rel=1e-12))]


def test_arithmetic_edges_match_reference(lake: Lake) -> None:
    put(lake, "g", {"k": "z"}, [(-10 * S, 0.0)])
    put(lake, "g", {"k": "n"}, [(-10 * S, -2.0)])
    put(lake, "g", {"k": "p"}, [(-10 * S, 3.0)])
    exprs = [
        "g / 0",
        "0 / g",
        "g % 0",
        "g % -2",
        "g ^ 0.5",
        "g ^ -1",
        "g ^ 1000",
        "-g ^ 2",
        "(g / 0) > bool 0",
        "(g / 0) != 1",
        "(0 / g) == (0 / g)",
        "1 / 0",
        "-1 % 0",
    ]
    for e, g in zip(exprs, evaluate_many(exprs, lake, T), strict=True):
        assert_same(g, evaluate(e, lake, T), e)


def test_regex_go_rejects_fails_alone(lake: Lake) -> None:
    put(lake, "g", {"instance": "a", "n": "١"}, [(-10 * S, 1.0)])
    engine = SQLEngine(lake)
    exprs = ['g{instance=~"(?=a)a"}', 'g{instance=~"a"}', 'absent(g{instance=~"(?=a)a"})', 'g{n=~"\\\\d"}']
    got = engine.evaluate_many(exprs, T)
    # RE2 has no look-ahead: the parser rejects it as Prometheus does, in both engines; the others are
    # unaffected, and both engines read \\d as ASCII digits (Go), not Unicode ones (polars' Rust regex)
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, reference(e, lake, T), e)
    assert isinstance(got[0], Exception) and isinstance(got[2], Exception)
    assert "invalid or unsupported Perl syntax" in str(got[0])
    assert got[1] == [({"__name__": "g", "instance": "a", "n": "١"}, 1.0)]
    assert got[3] == []
    assert engine.last_stats.fallbacks == 0


def test_unchecked_bad_regex_falls_back_alone(lake: Lake) -> None:
    put(lake, "g", {"instance": "a"}, [(-10 * S, 1.0)])
    # A selector built by hand skips parse_selector's check: the engine cannot match it, so the rule
    # goes to the reference, which raises; the rule next to it is unaffected.
    bad = VectorSelector(Selector((Matcher("__name__", "=", "g"), Matcher("instance", "=~", "(?=a)a"))))
    engine = SQLEngine(lake)
    got = engine.evaluate_many([bad, parse('g{instance=~"a"}')], T)
    assert isinstance(got[0], Exception) and "invalid or unsupported Perl syntax" in str(got[0])
    assert got[1] == [({"__name__": "g", "instance": "a"}, 1.0)]
    assert engine.last_stats.fallbacks == 1


def test_bad_call_arguments_are_named(lake: Lake) -> None:
    assert evaluate_many([], lake, T) == []
    with pytest.raises(ValueError, match="t: evaluation time must be timezone-aware"):
        evaluate_many(["up"], lake, datetime(2026, 11, 27, 12, 0))


def test_lake_window_samples(lake: Lake) -> None:
    put(lake, "g", {"k": "a"}, [(-60 * S, 1.0), (-30 * S, 2.0), (0 * S, 3.0)])
    put(lake, "g", {"k": "b"}, [(-30 * S, 5.0)])
    put(lake, "g", {"k": "b"}, [(-30 * S, 6.0)])  # a later batch rewrites (b, t-30s): last write kept
    cat = lake.catalogue()
    a = cat.filter(cat["labels"] == '{"k":"a"}').item(0, "series_id")
    every = lake.window_samples(None, T - 60 * S, T)  # [start, end): t itself excluded
    ms = lambda dt: int((T + dt).timestamp() * 1000)  # noqa: E731
    assert sorted(r[1:] for r in every.rows() if r[0] == a) == [(ms(-60 * S), 1.0), (ms(-30 * S), 2.0)]
    assert [r[1:] for r in every.rows() if r[0] != a] == [(ms(-30 * S), 6.0)]
    only_a = lake.window_samples([a], T - 30 * S, T + S)
    assert sorted(only_a.get_column("value").to_list()) == [2.0, 3.0]
    assert lake.window_samples([], T - 60 * S, T).height == 0
    assert lake.window_samples(None, T - 3600 * S, T - 3000 * S).schema == every.schema


def test_staleness_markers_end_instant_selectors_only(lake: Lake) -> None:
    put(lake, "g", {"host": "a"}, [(-120 * S, 1.0), (-60 * S, 2.0)])
    put(lake, "g", {"host": "b"}, [(-120 * S, 3.0), (-60 * S, 4.0)])
    put(lake, "g", {"host": "c"}, [(-120 * S, 5.0), (-60 * S, 6.0)])
    stale = StaleMarkers(
        [
            ({"__name__": "g", "host": "a"}, T - 30 * S),  # after the newest sample: a has ended
            ({"__name__": "g", "host": "b"}, T - 90 * S),  # before the newest sample: b goes on
            ({"__name__": "g", "host": "c"}, T + 30 * S),  # after t: not yet
        ]
    )
    exprs = ["g", 'absent(g{host="a"})', "count_over_time(g[5m])", "last_over_time(g[5m])", "sum(g)"]
    got = evaluate_many(exprs, lake, T, stale=stale)
    assert got[0] == [({"__name__": "g", "host": "b"}, 4.0), ({"__name__": "g", "host": "c"}, 6.0)]
    assert got[1] == [({"host": "a"}, 1.0)]
    assert got[2] == [({"host": h}, 2.0) for h in "abc"]  # range functions never see markers
    assert got[4] == [({}, 10.0)]
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, evaluate(e, lake, T, stale=stale), e, exact=True)
    assert evaluate_many(["g"], lake, T)[0] == evaluate("g", lake, T)  # no markers: all three


def test_compensated_and_ordered_sums_agree_to_the_bit(lake: Lake) -> None:
    # 2.42's compensated incremental mean: 10, 7.87, 3.5, 4.5 → 6.467499999999999 (not 6.4675)
    put(lake, "m", {"k": "x"}, [(-40 * S, 10.0), (-30 * S, 7.87), (-20 * S, 3.5), (-10 * S, 4.5)])
    for i, v in enumerate([0.1, 0.2, 0.3, 1e16, -1e16, 0.7]):  # plain sum in series order
        put(lake, "n", {"i": f"s{i}"}, [(-10 * S, v)])
    exprs = ["avg_over_time(m[1m])", "sum_over_time(m[1m])", "sum(n)", "avg(n)", "rate(m[1m])"]
    got = evaluate_many(exprs, lake, T)
    assert got[0] == [({"k": "x"}, 6.467499999999999)]
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, evaluate(e, lake, T), e, exact=True)


def test_our_own_functions_go_to_the_reference(lake: Lake) -> None:
    put(lake, "g", {"k": "a"}, [(-10 * S, 1.0)])
    engine = SQLEngine(lake)
    exprs = ["anomaly(g[5m]) > 0.9", "forecast(g, 30m) > 1", "g > 0"]
    for e in exprs[:2]:
        with pytest.raises(NotCompilable):
            compile_expr(parse(e))
    got = engine.evaluate_many(exprs, T)
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, reference(e, lake, T), e, exact=True)
    assert engine.last_stats.fallbacks == 2 and got[2] == [({"__name__": "g", "k": "a"}, 1.0)]


FALLBACK_EXPRS = [
    "topk(2, g1)",
    "bottomk by (job) (1, g1)",
    "quantile(0.5, g1)",
    "stddev(g1)",
    'count_values("v", round(g1))',
    "g1 * on (instance) group_left (path) g2",
    "g1 offset -1m",
    "exp(g1 / 100)",
    "ln(g1)",
    'label_replace(g1, "inst", "$1", "instance", "(.*)")',
    'label_join(g1, "ij", "-", "instance", "job")',
    "histogram_quantile(0.9, g1)",
    "scalar(sum(g1)) * g2",
    "timestamp(g1)",
    "deriv(g1[5m])",
    "predict_linear(g1[5m], 600)",
    "stddev_over_time(g1[5m])",
    "irate(c_total[5m])",
    "delta(g1[5m] offset 1m)",
    "sort_desc(g1)",
    "g1 + on (__name__, instance, job, path) g1",
]


def test_constructs_the_compiler_leaves_to_the_reference_are_counted_and_agree(lake: Lake) -> None:
    """What the SQL engine does not compile goes to the reference, one rule at a time, and is counted."""
    rng = random.Random(SEED)
    stale = build_random_lake(lake, rng)
    engine = SQLEngine(lake)
    for e in FALLBACK_EXPRS:
        with pytest.raises(NotCompilable):
            compile_expr(parse(e))
    got = engine.evaluate_many([*FALLBACK_EXPRS, "g1 > 10"], T, stale=stale)
    assert engine.last_stats.fallbacks == len(FALLBACK_EXPRS)
    assert engine.last_stats.shapes == 1  # the compiled one
    for e, g in zip(FALLBACK_EXPRS, got, strict=False):
        assert_same(g, reference(e, lake, T, stale), f"seed {SEED} {e}", exact=True)
    assert sum(bool(g) and not isinstance(g, Exception) for g in got) > len(FALLBACK_EXPRS) // 2


def test_offset_reads_the_past_and_staleness_as_of_then(lake: Lake) -> None:
    put(lake, "g", {"h": "a"}, [(-600 * S, 1.0), (-400 * S, 2.0), (-10 * S, 3.0)])
    put(lake, "g", {"h": "b"}, [(-430 * S, 5.0)])
    stale = StaleMarkers([({"__name__": "g", "h": "b"}, T - 350 * S)])
    exprs = ["g offset 5m", "g offset 3m", "rate(g[5m] offset 5m)", "sum_over_time(g[4m] offset 6m)", "g"]
    got = evaluate_many(exprs, lake, T, stale=stale)
    assert got[0] == [({"__name__": "g", "h": "a"}, 2.0)]  # b ended (marker at t-350s) before t-300s
    assert got[1] == [({"__name__": "g", "h": "a"}, 2.0)]  # [t-8m, t-3m]: a at t-400s; b ended at t-350s
    assert got[4] == [({"__name__": "g", "h": "a"}, 3.0)]
    for e, g in zip(exprs, got, strict=True):
        assert_same(g, reference(e, lake, T, stale), e, exact=True)
    assert got[3] == [({"h": "a"}, 3.0), ({"h": "b"}, 5.0)]  # [t-10m, t-6m], closed: a at -600s and -400s


def test_a_rule_whose_window_overflows_fails_alone(lake: Lake) -> None:
    """The window every rule of a tick shares is computed once; a range too long for a datetime
    (the parser now refuses one, but an AST can be built directly) once raised OverflowError out of
    ``evaluate_many`` and sank every rule of the tick. It must fail in its own slot only."""
    from tasks.alerting.rules.promql import Call, MatrixSelector

    put(lake, "a", {"x": "1"}, [(-10 * S, 1.0)])
    huge = Call("rate", (MatrixSelector(VectorSelector(Selector((Matcher("__name__", "=", "a"),))), 1e30),))
    got = SQLEngine(lake).evaluate_many(["a > 0", huge, "a * 2"], T)
    assert got[0] == [({"__name__": "a", "x": "1"}, 1.0)]
    assert isinstance(got[1], OverflowError)
    assert got[2] == [({"x": "1"}, 2.0)]


DEEPEST = [
    "abs(" * 32 + "g" + ")" * 32,  # 32 levels of nesting
    "(" * 32 + "g" + ")" * 32,
    " + ".join(["g"] * 128),  # a chain of 127 operators: 128 levels of tree
    "-" * 32 + "g",
]


@pytest.mark.parametrize("expr", DEEPEST, ids=["calls", "parens", "chain", "signs"])
def test_the_deepest_expression_allowed_runs_in_both_engines(lake: Lake, expr: str) -> None:
    """The parser's bounds (MAX_NESTING, MAX_TREE_DEPTH) sit below what either evaluator's recursion can
    take: the deepest expression it accepts evaluates, in the SQL engine and in the reference."""
    put(lake, "g", {"k": "v"}, [(-10 * S, 1.0)])
    got = evaluate_many([expr], lake, T)[0]
    assert_same(got, reference(expr, lake, T), expr[:20])
    assert got and isinstance(got, list)

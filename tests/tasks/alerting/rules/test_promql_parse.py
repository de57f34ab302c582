import math

import pytest

from tasks.alerting.rules.promql import (
    Aggregate,
    Binary,
    Call,
    MatrixSelector,
    NumberLiteral,
    PromQLError,
    StringLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
    parse,
)
from tasks.lake.selector import Matcher, parse_selector
from tasks.timeparse import parse_prometheus_duration


def vs(text: str) -> VectorSelector:
    return VectorSelector(parse_selector(text))


@pytest.mark.parametrize(
    ("src", "value"),
    [("1", 1.0), ("1e3", 1000.0), ("1.5E-2", 0.015), (".5", 0.5), ("0x1f", 31.0), ("-2", -2.0), ("+3", 3.0)],
)
def test_number_literals(src, value):
    assert parse(src) == NumberLiteral(value)


def test_inf_nan_literals():
    assert parse("Inf") == NumberLiteral(math.inf)
    assert parse("-inf") == NumberLiteral(-math.inf)
    n = parse("NaN")
    assert isinstance(n, NumberLiteral) and math.isnan(n.value)


def test_selector_all_matchers():
    e = parse('http_requests_total{job="api", code!="200", path=~"/v1/.*", env!~"dev|test"}')
    assert isinstance(e, VectorSelector)
    assert e.selector.matchers == (
        Matcher("__name__", "=", "http_requests_total"),
        Matcher("job", "=", "api"),
        Matcher("code", "!=", "200"),
        Matcher("path", "=~", "/v1/.*"),
        Matcher("env", "!~", "dev|test"),
    )
    assert parse('{__name__="up", job="x"}') == vs('{__name__="up", job="x"}')
    # keywords are fine as label names inside braces
    assert parse('m{by="a", sum="b"}').selector.matchers[1:] == (Matcher("by", "=", "a"), Matcher("sum", "=", "b"))


@pytest.mark.parametrize(("dur", "seconds"), [("5m", 300), ("1h30m", 5400), ("90s", 90), ("1d", 86400), ("500ms", 0.5)])
def test_range_durations(dur, seconds):
    assert parse(f"m[{dur}]") == MatrixSelector(vs("m"), seconds)
    assert parse_prometheus_duration(dur) == seconds


def test_functions_and_aggregations():
    assert parse("rate(m[5m])") == Call("rate", (MatrixSelector(vs("m"), 300),))
    assert parse("quantile_over_time(0.9, m[1h])") == Call(
        "quantile_over_time", (NumberLiteral(0.9), MatrixSelector(vs("m"), 3600))
    )
    inner = Call("rate", (MatrixSelector(vs('m{a="b"}'), 60),))
    assert parse('sum by (job, instance) (rate(m{a="b"}[1m]))') == Aggregate("sum", inner, ("job", "instance"))
    assert parse('sum(rate(m{a="b"}[1m])) by (job, instance)') == Aggregate("sum", inner, ("job", "instance"))
    assert parse("avg without (host) (m)") == Aggregate("avg", vs("m"), ("host",), without=True)
    assert parse("count(m)") == Aggregate("count", vs("m"))
    assert parse('absent(up{job="x"})') == Call("absent", (vs('up{job="x"}'),))
    # a metric may be named like an aggregation when not followed by ( or by/without
    assert parse("sum + 1") == Binary("+", vs("sum"), NumberLiteral(1.0))


def test_precedence_and_associativity():
    m = vs("m")
    # * binds tighter than +, + tighter than >
    assert parse("m + 2 * 3 > 4") == Binary(
        ">", Binary("+", m, Binary("*", NumberLiteral(2.0), NumberLiteral(3.0))), NumberLiteral(4.0)
    )
    # left associative
    assert parse("m - 1 - 2") == Binary("-", Binary("-", m, NumberLiteral(1.0)), NumberLiteral(2.0))
    # ^ is right associative and binds tighter than unary minus
    assert parse("2 ^ 3 ^ 2") == Binary("^", NumberLiteral(2.0), Binary("^", NumberLiteral(3.0), NumberLiteral(2.0)))
    assert parse("-m ^ 2") == Unary("-", Binary("^", m, NumberLiteral(2.0)))
    assert parse("(m + 1) * 2") == Binary("*", Binary("+", m, NumberLiteral(1.0)), NumberLiteral(2.0))
    assert parse("m > bool 1") == Binary(">", m, NumberLiteral(1.0), bool_modifier=True)
    assert parse("1 == bool 1") == Binary("==", NumberLiteral(1.0), NumberLiteral(1.0), bool_modifier=True)
    assert parse("m  # comment\n  >= 3").op == ">="


@pytest.mark.parametrize(
    ("src", "line", "col", "words"),
    [
        ("", 1, 1, "empty expression"),
        ('m{job="a"', 1, 10, "expected '}'"),
        ('m{job="a}', 1, 7, "unterminated quoted string"),
        ("rate(m)", 1, 6, "expected type range vector"),
        ("avg_over_time(m[5m]", 1, 20, "expected ',' or ')'"),
        ("foo(m)", 1, 1, "unknown function with name 'foo'"),
        ("topk(m)", 1, 7, "expected 2, got 1"),
        ("count_values(1, m)", 1, 14, "expected type string in aggregation parameter"),
        ("quantile(m, m)", 1, 10, "expected type scalar in aggregation parameter, got instant vector"),
        ("round(m, 1, 2)", 1, 7, "at most 2 argument(s)"),
        ('label_join(m, "a")', 1, 12, "at least 3 argument(s)"),
        ("time(m)", 1, 6, "expected 0 argument(s)"),
        ("m and 1", 1, 3, "set operator 'and' not allowed in binary scalar expression"),
        ("m or on(a) group_left n", 1, 3, "no grouping allowed for 'or' operation"),
        ("m + on(a) group_left(a) n", 1, 3, "must not occur in ON and GROUP clause"),
        ("m + group_left n", 1, 5, "must follow on"),
        ("m and bool n", 1, 7, "bool modifier can only be used on comparison"),
        ("1 + on(a) m", 1, 3, "vector matching only allowed between instant vectors"),
        ("(m) offset 5m", 1, 5, "offset modifier must be preceded by"),
        ("sum(m) offset 5m", 1, 8, "offset modifier must be preceded by"),
        ("m offset 1m offset 2m", 1, 13, "may not be set multiple times"),
        ("m offset 1m [5m]", 1, 13, "no offset modifiers allowed before range"),
        ("m offset 5", 1, 10, "a duration like 5m after offset"),
        ("m atan2 n", 1, 3, "'atan2' is not supported"),
        ("m[5]", 1, 3, "missing unit"),
        ("m[5x]", 1, 3, "bad number or duration"),
        ("sum(m)[5m]", 1, 7, "subqueries are not supported"),
        ("rate(m[5m])[10m:1m]", 1, 12, "subqueries are not supported"),
        ("1 > 2", 1, 3, "BOOL modifier"),
        ("m + bool 1", 1, 5, "bool modifier can only be used on comparison"),
        ("m\n  + {}", 2, 5, "matches nothing"),
        ('m\n  and {a=""}', 2, 7, "at least one non-empty matcher"),
        ("m @ 100", 1, 3, "'@' modifier is not supported"),
        ("m on(a) + n", 1, 3, "unexpected 'on' after the expression"),
        ('{a=""}', 1, 1, "at least one non-empty matcher"),
        ('m{1a="x"}', 1, 3, "bad number"),
        ('m{a="x", ="y"}', 1, 10, "expected a label name"),
        ("sum(m[5m])", 1, 5, "expected type instant vector in aggregation"),
        ("m[5m] + 1", 1, 7, "range vector"),
        ("quantile_over_time(m[5m])", 1, 20, "expected 2 argument(s)"),
        ("sum by (a) (m) by (b)", 1, 16, "grouping given twice"),
        ("m ] 2", 1, 3, "unexpected ']'"),
        ("5m", 1, 1, "unexpected duration"),
        ("m $", 1, 3, "unexpected character '$'"),
        ("()", 1, 2, "empty parentheses"),
        ("(m + 1", 1, 7, "expected ')'"),
    ],
)
def test_errors_name_line_and_column(src, line, col, words):
    with pytest.raises(PromQLError) as ei:
        parse(src)
    err = ei.value
    assert words in str(err)
    assert (err.line, err.column) == (line, col), str(err)
    assert str(err).startswith(f"{line}:{col}: ")


def test_set_operators_precedence_and_case():
    a, b, c, d = vs("a"), vs("b"), vs("c"), vs("d")
    mm = VectorMatching("many-to-many")
    # or < and/unless < comparisons (Prometheus's precedence), all left-associative
    assert parse("a and b or c unless d") == Binary(
        "or", Binary("and", a, b, matching=mm), Binary("unless", c, d, matching=mm), matching=mm
    )
    assert parse("a > 1 and b") == Binary("and", Binary(">", a, NumberLiteral(1.0)), b, matching=mm)
    assert parse("a unless b and c") == Binary("and", Binary("unless", a, b, matching=mm), c, matching=mm)
    # keywords are case-insensitive, as in Prometheus's lexer
    assert parse("a AND ON (x) b") == Binary("and", a, b, matching=VectorMatching("many-to-many", True, ("x",)))
    assert parse("SUM BY (x) (a)") == Aggregate("sum", a, ("x",))


def test_vector_matching_modifiers():
    a, b = vs("a"), vs("b")
    assert parse("a + on (x, y) b").matching == VectorMatching("one-to-one", True, ("x", "y"))
    assert parse("a > bool ignoring (x) b") == Binary(
        ">", a, b, bool_modifier=True, matching=VectorMatching("one-to-one", False, ("x",))
    )
    assert parse("a * on (x) group_left (y, z) b").matching == VectorMatching("many-to-one", True, ("x",), ("y", "z"))
    assert parse("a / ignoring (x) group_right b").matching == VectorMatching("one-to-many", False, ("x",))
    assert parse("a - on () b").matching == VectorMatching("one-to-one", True, ())
    # with a scalar operand an empty matching is dropped, as 2.42 does
    assert parse("a + on () 1") == Binary("+", a, NumberLiteral(1.0))


def test_offset_modifier_on_instant_and_range_selectors():
    assert parse("m offset 5m") == VectorSelector(parse_selector("m"), 300.0)
    assert parse("m OFFSET -1m30s") == VectorSelector(parse_selector("m"), -90.0)  # stable since 2.33
    assert parse("rate(m[5m] offset 1h)") == Call(
        "rate", (MatrixSelector(VectorSelector(parse_selector("m"), 3600.0), 300),)
    )
    assert parse("-m offset 1m") == Unary("-", VectorSelector(parse_selector("m"), 60.0))


def test_new_functions_and_aggregations_parse():
    m = vs("m")
    assert parse("topk(3, m)") == Aggregate("topk", m, param=NumberLiteral(3.0))
    assert parse('count_values by (a) ("v", m)') == Aggregate("count_values", m, ("a",), param=StringLiteral("v"))
    assert parse("quantile without (a) (0.9, m)") == Aggregate("quantile", m, ("a",), True, NumberLiteral(0.9))
    assert parse("stddev(m)") == Aggregate("stddev", m)
    assert parse("group(m)") == Aggregate("group", m)
    assert parse("round(m)") == Call("round", (m,))
    assert parse("round(m, 0.5)") == Call("round", (m, NumberLiteral(0.5)))
    assert parse('label_join(m, "d", ",", "a", "b", "c")').args[3:] == tuple(map(StringLiteral, "abc"))
    assert parse("time()").type == "scalar" and parse("scalar(m)").type == "scalar"
    assert parse("vector(1)").type == "vector"
    assert parse("scalar(m) * 2").type == "scalar"
    assert parse("predict_linear(m[1h], 3600)") == Call(
        "predict_linear", (MatrixSelector(m, 3600), NumberLiteral(3600))
    )


# ---- duration bounds (Prometheus: a duration must fit Go's time.Duration, 2^63-1 ns) ----------------


@pytest.mark.parametrize(
    ("dur", "seconds"),
    [("292y", 292 * 31536000.0), ("106751d", 106751 * 86400.0), ("9223372036s", 9223372036.0)],
)
def test_largest_durations_prometheus_accepts(dur, seconds):
    # promtool 2.42 accepts each of these in a range selector
    assert parse_prometheus_duration(dur) == seconds
    assert parse(f"rate(m[{dur}])") == Call("rate", (MatrixSelector(vs("m"), seconds),))
    assert parse_prometheus_duration("9223372036854ms") == pytest.approx(9223372036.854)


@pytest.mark.parametrize(
    "dur", ["293y", "106752d", "15251w", "9223372037s", "9223372036855ms", "292y106751d", "99999999999999999999999d"]
)
def test_overflowing_durations_are_out_of_range_like_prometheus(dur):
    # promtool 2.42: "parse error: duration out of range" for each of these
    with pytest.raises(ValueError, match="^duration out of range$"):
        parse_prometheus_duration(dur)
    with pytest.raises(PromQLError) as ei:
        parse(f"rate(m[{dur}])")
    assert (ei.value.line, ei.value.column) == (1, 8) and "duration out of range" in str(ei.value)
    with pytest.raises(PromQLError, match="duration out of range"):
        parse(f"m offset {dur}")
    with pytest.raises(PromQLError, match="duration out of range"):
        parse(f"forecast(m, {dur})")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("(" * 3000 + "up" + ")" * 3000, "nested too deeply"),
        ("abs(" * 200 + "up" + ")" * 200, "nested too deeply"),
        ("-" * 3000 + "up", "nested too deeply"),
        ("2 ^ " * 3000 + "2", "nested too deeply"),
        (" + ".join(["up"] * 30000), "too deep"),
        ("(" * 33 + "up" + ")" * 33, "nested too deeply"),
        (" + ".join(["up"] * 129), "too deep"),
    ],
    ids=["parens", "calls", "signs", "power", "chain", "parens-33", "chain-129"],
)
def test_deep_expressions_are_refused_by_name_not_a_recursion_error(expr, message):
    """Python's stack is far smaller than Go's: ~150 nested calls raised RecursionError, which crashed
    `rules check` and would have stopped every rule at evaluation. Now a parse error with a position."""
    with pytest.raises(PromQLError, match=message):
        parse(expr)

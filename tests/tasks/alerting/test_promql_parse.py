import math

import pytest

from tasks.alerting.promql import (
    Aggregate,
    Binary,
    Call,
    MatrixSelector,
    NumberLiteral,
    PromQLError,
    Unary,
    VectorSelector,
    parse,
    parse_duration,
)
from tasks.lake.selector import Matcher, parse_selector


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
    assert parse_duration(dur) == seconds


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
        ("topk(3, m)", 1, 1, "not supported"),
        ("m[5]", 1, 3, "missing unit"),
        ("m[5x]", 1, 3, "bad number or duration"),
        ("sum(m)[5m]", 1, 7, "subqueries are not supported"),
        ("rate(m[5m])[10m:1m]", 1, 12, "subqueries are not supported"),
        ("1 > 2", 1, 3, "BOOL modifier"),
        ("m + bool 1", 1, 5, "bool modifier can only be used on comparison"),
        ("m\n  + {}", 2, 5, "matches nothing"),
        ('m\n  and {a=""}', 2, 3, "'and' is not supported"),
        ("m offset 5m", 1, 3, "'offset' is not supported"),
        ("m @ 100", 1, 3, "'@' modifier is not supported"),
        ("m on(a) + n", 1, 3, "'on' is not supported"),
        ("m + on(a) n", 1, 5, "vector matching with 'on'"),
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

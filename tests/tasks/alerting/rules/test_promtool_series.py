"""promtool's input_series notation, cases from the promtool unit-testing docs and the 2.42 grammar."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.rules.promtool_series import (
    STALE,
    SeriesNotationError,
    expand_input_series,
    parse_series,
    parse_values,
    samples_from_input_series,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the docs' examples
        ("1+2x10", [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0, 19.0, 21.0]),  # 'a+bxn' → n+1 values
        ("1-2x3", [1.0, -1.0, -3.0, -5.0]),
        ("-2+4x3", [-2.0, 2.0, 6.0, 10.0]),
        ("1x3", [1.0, 1.0, 1.0, 1.0]),  # 'axn' shorthand of 'a+0xn'
        ("_", [None]),
        ("_x3", [None, None, None]),  # '_xn': n missing (not n+1)
        ("1 _x3 stale", [1.0, None, None, None, STALE]),  # the docs' '1 _x3 stale'
        ("stale", [STALE]),
        ("0+10x2 100+30x1", [0.0, 10.0, 20.0, 100.0, 130.0]),
        # plain numbers
        ("1 -2.5 1e3 1.5e-3 .5 5. +7", [1.0, -2.5, 1000.0, 0.0015, 0.5, 5.0, 7.0]),
        ("1e+2x1", [100.0, 100.0]),
        ("1e2+1e1x2", [100.0, 110.0, 120.0]),
        ("0+0.1x3", [0.0, 0.1, 0.2, 0.30000000000000004]),  # accumulated, like promtool
        ("1+1x0", [1.0]),
        ("0x3", [0.0, 0.0, 0.0, 0.0]),  # no hex in series descriptions (2.42 lexer)
        ("", []),
        ("  1   2  ", [1.0, 2.0]),
    ],
)
def test_parse_values(text, expected):
    assert parse_values(text) == expected


def test_inf_and_nan():
    v = parse_values("Inf -Inf NaN +inf")
    assert v[0] == math.inf and v[1] == -math.inf and math.isnan(v[2]) and v[3] == math.inf


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("1 2 abc", 5, "unexpected 'abc'"),
        ("1+2x", 1, "repetition count"),
        ("1 1+2xy", 3, "repetition count"),
        ("1 1+2x-3", 3, "repetition count"),
        ("stalex3", 1, "'stale' takes no repetition"),
        ("1 2 1++2x3", 5, "unexpected"),
        ("_+1x2", 1, "unexpected"),
    ],
)
def test_parse_values_errors_name_the_column(text, column, fragment):
    with pytest.raises(SeriesNotationError) as exc:
        parse_values(text)
    assert exc.value.column == column
    assert fragment in str(exc.value)
    assert f"column {column}" in str(exc.value)


def test_parse_series():
    assert parse_series('m{a="b", c="d"}') == ("m", {"a": "b", "c": "d"})
    assert parse_series("m") == ("m", {})
    assert parse_series('{__name__="m", a="b"}') == ("m", {"a": "b"})
    with pytest.raises(SeriesNotationError, match="only '='"):
        parse_series('m{a=~"b"}')
    with pytest.raises(SeriesNotationError, match="metric name is required"):
        parse_series('{a="b"}')
    with pytest.raises(SeriesNotationError, match="series"):
        parse_series("m{a=")


def test_expand_input_series_errors_name_the_item():
    with pytest.raises(SeriesNotationError, match=r"input_series\[2\]\.values: .*'x'") as exc:
        expand_input_series([{"series": "a", "values": "1"}, {"series": "b", "values": "1 x"}])
    assert exc.value.column == 3
    with pytest.raises(SeriesNotationError, match=r"input_series\[1\]\.series"):
        expand_input_series([{"series": 'a{b!="c"}', "values": "1"}])
    with pytest.raises(SeriesNotationError, match="needs 'series'"):
        expand_input_series([{"values": "1"}])


def test_samples_from_input_series():
    samples, stale = samples_from_input_series(
        [
            {"series": 'up{job="api"}', "values": "1 _ 0x1 stale 1"},
            {"series": "load", "values": 2},  # YAML may hand a bare number
        ],
        timedelta(minutes=1),
        T0,
    )
    got = [(s.metric, dict(s.labels), s.ts, s.value) for s in samples]
    m = timedelta(minutes=1)
    assert got == [
        ("up", {"job": "api"}, T0, 1.0),
        ("up", {"job": "api"}, T0 + 2 * m, 0.0),
        ("up", {"job": "api"}, T0 + 3 * m, 0.0),
        ("up", {"job": "api"}, T0 + 5 * m, 1.0),
        ("load", {}, T0, 2.0),
    ]
    assert stale == [("up", {"job": "api"}, T0 + 4 * m)]
    s2, _ = samples_from_input_series([{"series": "x", "values": "1 2"}], 30, T0)
    assert [s.ts for s in s2] == [T0, T0 + timedelta(seconds=30)]
    with pytest.raises(ValueError, match="interval"):
        samples_from_input_series([], 0, T0)

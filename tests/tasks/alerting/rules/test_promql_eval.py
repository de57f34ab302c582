"""Instant evaluation over a real tmp lake, against answers computed by hand (Prometheus 2.x rules)."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.rules.evaluate import EvalError, evaluate, extrapolated_rate, format_value, quantile
from tasks.lake import Lake, Sample

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def put(lake, metric, labels, points):
    lake.write_samples([Sample(metric, v, T + dt, labels) for dt, v in points], now=T + timedelta(hours=1))


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path / "lake"))


def test_instant_selector_lookback_edges(lake):
    put(lake, "g", {"host": "a"}, [(-300 * S, 1.0)])  # exactly t-5m: included (2.x lookback is closed)
    put(lake, "g", {"host": "b"}, [(-300 * S - timedelta(milliseconds=1), 2.0)])  # 1 ms too old: stale
    put(lake, "g", {"host": "c"}, [(-600 * S, 3.0), (-60 * S, 4.0), (0 * S, 5.0)])  # newest at or before t
    put(lake, "g", {"host": "d"}, [(1 * S, 6.0)])  # after t: invisible
    assert evaluate("g", lake, T) == [
        ({"__name__": "g", "host": "a"}, 1.0),
        ({"__name__": "g", "host": "c"}, 5.0),
    ]
    assert evaluate('g{host=~"a|b"}', lake, T) == [({"__name__": "g", "host": "a"}, 1.0)]
    assert evaluate('g{host!="a"}', lake, T) == [({"__name__": "g", "host": "c"}, 5.0)]
    assert evaluate('g{host!~"a|c"}', lake, T) == []
    # a minute later host a is beyond the lookback; c answers with its newest sample, d appears
    assert evaluate("g", lake, T + timedelta(minutes=1)) == [
        ({"__name__": "g", "host": "c"}, 5.0),
        ({"__name__": "g", "host": "d"}, 6.0),
    ]
    # at t+301s c's newest sample (t) is stale, d's (t+1s) sits exactly on the lookback edge
    assert evaluate("g", lake, T + 301 * S) == [({"__name__": "g", "host": "d"}, 6.0)]
    assert evaluate("nothing", lake, T) == []


def test_range_functions_window_closed_on_both_ends(lake):
    # one sample a minute, value = minutes since t-10m; [5m] at t holds t-5m..t → 5,6,7,8,9,10
    put(lake, "s", {"k": "v"}, [(timedelta(minutes=i - 10), float(i)) for i in range(11)])
    lab = {"k": "v"}  # functions drop __name__
    assert evaluate("count_over_time(s[5m])", lake, T) == [(lab, 6.0)]
    assert evaluate("sum_over_time(s[5m])", lake, T) == [(lab, 45.0)]
    assert evaluate("avg_over_time(s[5m])", lake, T) == [(lab, 7.5)]
    assert evaluate("min_over_time(s[5m])", lake, T) == [(lab, 5.0)]
    assert evaluate("max_over_time(s[5m])", lake, T) == [(lab, 10.0)]
    # 2.42 keeps the metric name for last_over_time only (promtool agrees; found by the differential test)
    assert evaluate("last_over_time(s[5m])", lake, T) == [({"__name__": "s", **lab}, 10.0)]
    assert evaluate("quantile_over_time(0.5, s[5m])", lake, T) == [(lab, 7.5)]
    assert evaluate("quantile_over_time(0.25, s[5m])", lake, T) == [(lab, 6.25)]  # rank 1.25: 6*.75 + 7*.25
    assert evaluate("quantile_over_time(2, s[5m])", lake, T) == [(lab, math.inf)]
    assert evaluate("quantile_over_time(-1, s[5m])", lake, T) == [(lab, -math.inf)]
    # 30 s later the window (t-5m, t] would drop the t-5m sample; [t-5m, t] at t+30s holds 5.5m..: 6..10
    assert evaluate("count_over_time(s[5m])", lake, T + 30 * S) == [(lab, 5.0)]
    assert evaluate("count_over_time(s[1h30m])", lake, T) == [(lab, 11.0)]
    # [30s] at t-30s is [t-60s, t-30s]: holds the t-60s sample; at t-70s it holds none → no element
    assert evaluate("count_over_time(s[30s])", lake, T - 30 * S) == [(lab, 1.0)]
    assert evaluate("count_over_time(s[30s])", lake, T - 70 * S) == []


def test_increase_and_rate_extrapolate_like_prometheus(lake):
    # samples at t-50s, t-35s, t-20s of 10, 25, 40 in a 60 s window:
    # delta 30; to start 10 s (< 1.1 x 15 s avg interval → extrapolate fully),
    # to end 20 s (>= 16.5 s → half an interval, 7.5 s); zero point 30*(10/30) = 10 s, not shorter.
    # increase = 30 * (30 + 10 + 7.5) / 30 = 47.5; rate = 47.5 / 60
    put(lake, "c_total", {"i": "1"}, [(-50 * S, 10.0), (-35 * S, 25.0), (-20 * S, 40.0)])
    assert evaluate("increase(c_total[1m])", lake, T) == [({"i": "1"}, 47.5)]
    assert evaluate("rate(c_total[1m])", lake, T) == [({"i": "1"}, 47.5 / 60)]


def test_increase_never_extrapolates_below_zero(lake):
    # 1, 11, 21 at t-40s, t-30s, t-20s: to start 20 s >= 11 s would give 5 s, but the counter
    # reaches zero 20*(1/20) = 1 s before the first sample, so the start side adds 1 s only.
    # increase = 20 * (20 + 1 + 5) / 20 = 26
    put(lake, "c_total", {"i": "2"}, [(-40 * S, 1.0), (-30 * S, 11.0), (-20 * S, 21.0)])
    assert evaluate("increase(c_total[1m])", lake, T) == [({"i": "2"}, 26.0)]


def test_increase_handles_counter_reset(lake):
    # 5, 10, 2 (reset), 7 at t-60s, t-40s, t-20s, t: 7-5 + 10 (value before the reset) = 12;
    # first and last samples sit on the window's edges ([1m] is closed), so no extrapolation.
    put(lake, "c_total", {"i": "3"}, [(-60 * S, 5.0), (-40 * S, 10.0), (-20 * S, 2.0), (0 * S, 7.0)])
    assert evaluate("increase(c_total[1m])", lake, T) == [({"i": "3"}, 12.0)]
    assert evaluate("rate(c_total[1m])", lake, T) == [({"i": "3"}, 0.2)]
    # fewer than two samples: no element
    assert evaluate("rate(c_total[10s])", lake, T) == []


def test_extrapolated_rate_function_directly():
    assert extrapolated_rate([0, 1000], [1.0, 2.0], 0, 1000, 1.0, is_rate=True) == 1.0
    assert extrapolated_rate([0], [1.0], 0, 1000, 1.0, is_rate=False) is None
    assert quantile(0.5, []) != quantile(0.5, [])  # NaN for an empty set


@pytest.fixture
def jobs(lake):
    put(lake, "m", {"job": "a", "inst": "1"}, [(0 * S, 1.0)])
    put(lake, "m", {"job": "a", "inst": "2"}, [(0 * S, 3.0)])
    put(lake, "m", {"job": "b", "inst": "1"}, [(0 * S, 10.0)])
    return lake


def test_aggregations_by_and_without(jobs):
    assert evaluate("sum by (job) (m)", jobs, T) == [({"job": "a"}, 4.0), ({"job": "b"}, 10.0)]
    assert evaluate("sum(m) by (job)", jobs, T) == [({"job": "a"}, 4.0), ({"job": "b"}, 10.0)]
    assert evaluate("sum without (inst) (m)", jobs, T) == [({"job": "a"}, 4.0), ({"job": "b"}, 10.0)]
    assert evaluate("avg by (job) (m)", jobs, T) == [({"job": "a"}, 2.0), ({"job": "b"}, 10.0)]
    assert evaluate("max by (inst) (m)", jobs, T) == [({"inst": "1"}, 10.0), ({"inst": "2"}, 3.0)]
    assert evaluate("min by (inst) (m)", jobs, T) == [({"inst": "1"}, 1.0), ({"inst": "2"}, 3.0)]
    assert evaluate("count(m)", jobs, T) == [({}, 3.0)]
    assert evaluate("sum by (nope) (m)", jobs, T) == [({}, 14.0)]
    assert evaluate("count without () (m)", jobs, T) == [
        ({"inst": "1", "job": "a"}, 1.0),
        ({"inst": "1", "job": "b"}, 1.0),
        ({"inst": "2", "job": "a"}, 1.0),
    ]
    assert evaluate("sum by (__name__) (m)", jobs, T) == [({"__name__": "m"}, 14.0)]
    assert evaluate("sum(nothing)", jobs, T) == []


def test_comparisons_filter_and_arithmetic_drops_name(jobs):
    assert evaluate("m > 2", jobs, T) == [
        ({"__name__": "m", "inst": "1", "job": "b"}, 10.0),
        ({"__name__": "m", "inst": "2", "job": "a"}, 3.0),
    ]
    # scalar on the left: the vector's value is kept
    assert evaluate("5 < m", jobs, T) == [({"__name__": "m", "inst": "1", "job": "b"}, 10.0)]
    assert evaluate("m == 1", jobs, T) == [({"__name__": "m", "inst": "1", "job": "a"}, 1.0)]
    assert evaluate("m != 1", jobs, T) == evaluate("m >= 3", jobs, T)
    assert evaluate("m <= 1", jobs, T) == evaluate("m < 3", jobs, T)
    assert evaluate("m > bool 2", jobs, T) == [
        ({"inst": "1", "job": "a"}, 0.0),
        ({"inst": "1", "job": "b"}, 1.0),
        ({"inst": "2", "job": "a"}, 1.0),
    ]
    assert evaluate("m * 2 - 1", jobs, T) == [
        ({"inst": "1", "job": "a"}, 1.0),
        ({"inst": "1", "job": "b"}, 19.0),
        ({"inst": "2", "job": "a"}, 5.0),
    ]
    assert evaluate("-m", jobs, T)[0] == ({"inst": "1", "job": "a"}, -1.0)
    assert evaluate("10 / m", jobs, T)[0] == ({"inst": "1", "job": "a"}, 10.0)
    assert evaluate("sum(m) / count(m) > 4", jobs, T) == [({}, 14.0 / 3)]
    assert evaluate("m / m", jobs, T) == [
        ({"inst": "1", "job": "a"}, 1.0),
        ({"inst": "1", "job": "b"}, 1.0),
        ({"inst": "2", "job": "a"}, 1.0),
    ]


def test_scalar_expressions(lake):
    assert evaluate("1 + 2 * 3", lake, T) == 7.0
    assert evaluate("(1 + 2) * 3", lake, T) == 9.0
    assert evaluate("2 ^ 3 ^ 2", lake, T) == 512.0
    assert evaluate("-2 ^ 2", lake, T) == -4.0
    assert evaluate("1 / 0", lake, T) == math.inf
    assert evaluate("-1 / 0", lake, T) == -math.inf
    assert math.isnan(evaluate("0 / 0", lake, T))
    assert evaluate("7 % 3", lake, T) == 1.0
    assert evaluate("1e3 > bool 999", lake, T) == 1.0


def test_vector_matching_one_to_one(jobs):
    put(jobs, "m2", {"job": "a", "inst": "1"}, [(0 * S, 4.0)])
    assert evaluate("m2 - m", jobs, T) == [({"inst": "1", "job": "a"}, 3.0)]  # unmatched series dropped
    assert evaluate("m2 > m", jobs, T) == [({"__name__": "m2", "inst": "1", "job": "a"}, 4.0)]
    with pytest.raises(EvalError, match="many-to-one matching must be explicit"):
        evaluate('{__name__=~"m|m2"} + m', jobs, T)
    with pytest.raises(EvalError, match="duplicate series for the match group"):
        evaluate('m + {__name__=~"m|m2"}', jobs, T)


def test_absent(jobs):
    assert evaluate('absent(nope{job="x", env=~"p.*", __name__="nope"})', jobs, T) == [({"job": "x"}, 1.0)]
    assert evaluate("absent(nope)", jobs, T) == [({}, 1.0)]
    assert evaluate("absent(m)", jobs, T) == []
    assert evaluate('absent(m{job="a"})', jobs, T) == []
    assert evaluate("absent(sum(nope))", jobs, T) == [({}, 1.0)]
    assert evaluate("absent(m > 100)", jobs, T) == [({}, 1.0)]


@pytest.mark.parametrize(
    ("v", "text"),
    [
        (1e6, "1e+06"),
        (100000.0, "100000"),
        (1234567.0, "1.234567e+06"),
        (0.5, "0.5"),
        (3.0, "3"),
        (-2.5, "-2.5"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (123.456, "123.456"),
        (0.0, "0"),
        (-0.0, "-0"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_format_value_like_go(v, text):
    assert format_value(v) == text


def test_over_time_sums_are_compensated_like_prometheus_242(lake):
    # promtool 2.42 answers avg_over_time = 6.467499999999999 here (a plain incremental mean gives
    # 6.4675, and humanize then prints 6.468 instead of 6.467): found by the differential test
    put(lake, "g", {"k": "v"}, [(-90 * S, 10.0), (-60 * S, 7.87), (-30 * S, 3.5), (0 * S, 4.5)])
    assert evaluate("avg_over_time(g[2m])", lake, T) == [({"k": "v"}, 6.467499999999999)]
    # sum_over_time is compensated (promtool: 1e16, 1, 1 → 1.0000000000000002e16); the sum
    # aggregation is a plain sum (promtool: 1e16 + 1 + 1 → 1e16)
    put(lake, "h", {"k": "1"}, [(-60 * S, 1e16), (-30 * S, 1.0), (0 * S, 1.0)])
    put(lake, "i", {"k": "1"}, [(0 * S, 1e16)])
    put(lake, "i", {"k": "2"}, [(0 * S, 1.0)])
    put(lake, "i", {"k": "3"}, [(0 * S, 1.0)])
    assert evaluate("sum_over_time(h[2m])", lake, T) == [({"k": "1"}, 1.0000000000000002e16)]
    assert evaluate("sum(i)", lake, T) == [({}, 1e16)]


def test_rate_scales_by_one_factor_like_prometheus_242(lake):
    # 29 → 52 over exactly the 2m window: promtool 2.42 answers 23 * ((120/120) / 120) =
    # 0.19166666666666665, not 23 / 120 = 0.19166666666666668 (found by the differential test)
    put(
        lake,
        "c_total",
        {"i": "b"},
        [(timedelta(seconds=15 * k - 120), v) for k, v in enumerate([29.0, 32, 35, 40, 42, 46, 46, 52, 52])],
    )
    assert evaluate("increase(c_total[2m])", lake, T) == [({"i": "b"}, 23.0)]
    assert evaluate("rate(c_total[2m])", lake, T) == [({"i": "b"}, 0.19166666666666665)]


def test_stale_markers_end_instant_selectors_but_not_ranges(lake):
    from tasks.alerting.rules.evaluate import StaleMarkers

    put(lake, "g", {"k": "v"}, [(-120 * S, 1.0), (-60 * S, 2.0)])
    stale = StaleMarkers([({"__name__": "g", "k": "v"}, T - 30 * S)])
    assert evaluate("g", lake, T) == [({"__name__": "g", "k": "v"}, 2.0)]  # no markers: 5m lookback
    assert evaluate("g", lake, T, stale=stale) == []  # the marker is newer than the newest sample
    assert evaluate("g", lake, T - 45 * S, stale=stale) == [({"__name__": "g", "k": "v"}, 2.0)]  # before it
    assert evaluate("absent(g)", lake, T, stale=stale) == [({}, 1.0)]
    assert evaluate("count_over_time(g[5m])", lake, T, stale=stale) == [({"k": "v"}, 2.0)]  # ranges skip it
    put(lake, "g", {"k": "v"}, [(-10 * S, 3.0)])  # a sample after the marker brings the series back
    assert evaluate("g", lake, T, stale=stale) == [({"__name__": "g", "k": "v"}, 3.0)]
    with pytest.raises(ValueError, match="__name__"):
        StaleMarkers([({"k": "v"}, T)])


# ---- set operators, vector matching, offset, functions (values checked against promtool 2.42) -----


@pytest.fixture
def fleet(lake):
    put(lake, "g", {"instance": "a", "job": "x"}, [(-60 * S, 1.0), (0 * S, 2.0)])
    put(lake, "g", {"instance": "b", "job": "x"}, [(-60 * S, 4.0), (0 * S, 4.0)])
    put(lake, "g", {"instance": "c", "job": "y"}, [(-60 * S, 0.5), (0 * S, 30.0)])
    put(lake, "info", {"job": "x", "team": "t1"}, [(0 * S, 1.0)])
    put(lake, "info", {"job": "y", "team": "t2"}, [(0 * S, 1.0)])
    return lake


def test_set_operators_keep_samples_and_match_many_to_many(fleet):
    g = lambda i, j, v: ({"__name__": "g", "instance": i, "job": j}, v)  # noqa: E731
    assert evaluate('g and g{instance="a"}', fleet, T) == [g("a", "x", 2.0)]
    assert evaluate('g unless on (job) info{team="t2"}', fleet, T) == [g("a", "x", 2.0), g("b", "x", 4.0)]
    assert evaluate('g and on (job) info{team="t1"}', fleet, T) == [g("a", "x", 2.0), g("b", "x", 4.0)]
    got = evaluate('info or on (job) g{instance="c"}', fleet, T)
    assert [lab["__name__"] for lab, _ in got] == ["info", "info"]  # c's job is on the left already
    assert evaluate("g > 3 or g < 1", fleet, T) == [g("b", "x", 4.0), g("c", "y", 30.0)]


def test_vector_matching_on_ignoring_group_left_right(fleet):
    assert evaluate("g * on (job) group_left (team) info", fleet, T) == [
        ({"instance": "a", "job": "x", "team": "t1"}, 2.0),
        ({"instance": "b", "job": "x", "team": "t1"}, 4.0),
        ({"instance": "c", "job": "y", "team": "t2"}, 30.0),
    ]
    # group_right: the many side's labels, and for a comparison the LEFT value (Prometheus's quirk)
    assert evaluate("info < on (job) group_right g", fleet, T) == [
        ({"__name__": "g", "instance": "a", "job": "x"}, 1.0),
        ({"__name__": "g", "instance": "b", "job": "x"}, 1.0),
        ({"__name__": "g", "instance": "c", "job": "y"}, 1.0),
    ]
    # one-to-one with on(): only the on labels are kept
    assert evaluate('g{instance="c"} + on (job) info', fleet, T) == [({"job": "y"}, 31.0)]
    with pytest.raises(EvalError, match="multiple matches for labels: many-to-one matching must be explicit"):
        evaluate("g + on (job) info", fleet, T)
    with pytest.raises(EvalError, match=r'found duplicate series for the match group \{job="x"\} on the right'):
        evaluate("info + on (job) group_left g", fleet, T)
    assert evaluate("nothing + on (job) group_left g", fleet, T) == []  # empty side: no duplicate check (2.42)


def test_offset_shifts_lookback_and_ranges(fleet):
    assert evaluate('g{instance="c"} offset 1m', fleet, T) == [({"__name__": "g", "instance": "c", "job": "y"}, 0.5)]
    assert evaluate('g{instance="c"} offset -1m', fleet, T - 60 * S) == [
        ({"__name__": "g", "instance": "c", "job": "y"}, 30.0)
    ]
    assert evaluate('timestamp(g{instance="c"} offset 30s)', fleet, T) == [
        ({"instance": "c", "job": "y"}, (T - 60 * S).timestamp())  # the sample's own time
    ]
    assert evaluate('delta(g{instance="c"}[1m])', fleet, T) == [({"instance": "c", "job": "y"}, 29.5)]
    assert evaluate('delta(g{instance="c"}[1m] offset 1m)', fleet, T) == []  # one sample in [t-2m, t-1m]


def test_math_functions_follow_go(fleet):
    c = {"instance": "c", "job": "y"}
    assert evaluate('exp(g{instance="c"})', fleet, T) == [(c, 10686474581524.46)]  # Go's Exp, not glibc's ...463
    assert evaluate('log10(g{instance="c"})', fleet, T) == [(c, 1.4771212547196624)]  # promtool's bits
    assert evaluate('round(-g{instance="c"} / 12, 0.5)', fleet, T) == [(c, -2.5)]  # ties round up
    assert evaluate("clamp(g, 1.5, 3)", fleet, T)[0][1] == 2.0
    assert evaluate("clamp(g, 3, 1)", fleet, T) == []
    assert evaluate('sgn(g{instance="a"} - 2)', fleet, T) == [({"instance": "a", "job": "x"}, 0.0)]
    assert evaluate("scalar(g)", fleet, T) != evaluate("scalar(g)", fleet, T)  # NaN: three series
    assert evaluate('scalar(g{instance="a"}) * 2', fleet, T) == 4.0
    assert evaluate("time()", fleet, T) == T.timestamp()
    assert evaluate("vector(1)", fleet, T) == [({}, 1.0)]


def test_new_aggregations(fleet):
    assert evaluate("topk(1, g)", fleet, T) == [({"__name__": "g", "instance": "c", "job": "y"}, 30.0)]
    assert evaluate("bottomk by (job) (1, g)", fleet, T) == [
        ({"__name__": "g", "instance": "a", "job": "x"}, 2.0),
        ({"__name__": "g", "instance": "c", "job": "y"}, 30.0),
    ]
    assert evaluate("quantile(0.5, g)", fleet, T) == [({}, 4.0)]
    assert evaluate("stdvar by (job) (g)", fleet, T) == [({"job": "x"}, 1.0), ({"job": "y"}, 0.0)]
    assert evaluate('count_values("v", g)', fleet, T) == [({"v": "2"}, 1.0), ({"v": "30"}, 1.0), ({"v": "4"}, 1.0)]
    assert evaluate("group by (job) (g)", fleet, T) == [({"job": "x"}, 1.0), ({"job": "y"}, 1.0)]
    assert evaluate("topk(0, g)", fleet, T) == []


def test_label_functions_and_histogram_quantile(lake):
    put(lake, "m", {"instance": "host-1:9100"}, [(0 * S, 1.0)])
    got = evaluate('label_replace(m, "host", "$1 ${2}$$", "instance", "(.*)-(\\\\d+):.*")', lake, T)
    assert got == [({"__name__": "m", "instance": "host-1:9100", "host": "host 1$"}, 1.0)]
    assert evaluate('label_join(m, "i", "/", "instance", "nope", "instance")', lake, T)[0][0]["i"] == (
        "host-1:9100//host-1:9100"
    )
    with pytest.raises(EvalError, match="invalid destination label name in label_replace"):
        evaluate('label_replace(m, "1x", "", "instance", ".*")', lake, T)
    with pytest.raises(EvalError, match="same labelset"):
        put(lake, "m", {"instance": "host-2:9100"}, [(0 * S, 2.0)])
        evaluate('label_replace(m, "instance", "x", "instance", ".*")', lake, T)
    for le, v in (("0.1", 1.0), ("0.5", 3.0), ("1", 4.0), ("+Inf", 5.0)):
        put(lake, "h_bucket", {"le": le, "job": "x"}, [(0 * S, v)])
    assert evaluate("histogram_quantile(0.5, h_bucket)", lake, T) == [({"job": "x"}, 0.1 + (0.5 - 0.1) * (1.5 / 2))]
    assert evaluate("histogram_quantile(0.99, h_bucket)", lake, T) == [({"job": "x"}, 1.0)]


@pytest.mark.timeout(30)
def test_label_replace_reads_go_regex_in_linear_time(lake):
    """label_replace compiled its regex with Python's ``re``: Go syntax was misread or refused (``\\z``) and
    ``(a*)*c`` against a 40-character value backtracked for hours."""
    long = "a" * 40
    put(lake, "m", {"instance": long}, [(0 * S, 1.0)])
    assert evaluate('label_replace(m, "x", "$1", "instance", "(a*)*c")', lake, T) == [
        ({"__name__": "m", "instance": long}, 1.0)
    ]
    got = evaluate('label_replace(m, "x", "${1}!", "instance", "(a+)\\\\z")', lake, T)
    assert got == [({"__name__": "m", "instance": long, "x": long + "!"}, 1.0)]
    with pytest.raises(EvalError, match=r"^invalid regular expression in label_replace\(\): \(\?=a\)$"):
        evaluate('label_replace(m, "x", "$1", "instance", "(?=a)")', lake, T)

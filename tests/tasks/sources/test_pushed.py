"""parse_push_payload: JSON and text exposition, good rows kept, bad rows named by index and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tasks.sources import parse_push_payload

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TEN = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def test_json_good_rows(check_samples) -> None:
    payload = {
        "samples": [
            {"metric": "queue_depth", "labels": {"queue": "a"}, "value": 3, "ts": "2026-11-27T10:00:00Z"},
            {"metric": "queue_depth", "labels": {"queue": "b"}, "value": 4.5, "ts": int(TEN.timestamp() * 1000)},
            {"metric": "jobs:rate5m", "value": 0.25, "ts": "2026-11-27T10:00:00.123+00:00"},
            {"metric": "no_ts", "value": 1, "labels": {"empty": ""}},
        ]
    }
    samples, errors = parse_push_payload(payload, now=NOW)
    assert errors == []
    check_samples(samples)
    assert [(s.metric, s.value, s.ts, dict(s.labels)) for s in samples] == [
        ("queue_depth", 3.0, TEN, {"queue": "a"}),
        ("queue_depth", 4.5, TEN, {"queue": "b"}),
        ("jobs:rate5m", 0.25, TEN.replace(microsecond=123000), {}),
        ("no_ts", 1.0, NOW, {}),  # empty label value means no label, as in Prometheus
    ]
    # The same payload as JSON text and as bytes gives the same result.
    assert parse_push_payload(json.dumps(payload), now=NOW) == (samples, [])
    assert parse_push_payload(json.dumps(payload).encode(), now=NOW) == (samples, [])


def test_json_bad_rows_are_named_and_good_rows_kept() -> None:
    rows = [
        {"metric": "ok_metric", "value": 1},
        {"metric": "bad-name", "value": 1},
        {"metric": "m", "value": "1.0"},
        {"metric": "m", "value": float("nan")},
        {"metric": "m", "value": 1, "ts": "2026-11-27T10:00:00"},
        {"metric": "m", "value": 1, "ts": "2026-11-27T10:00:00+02:00"},
        {"metric": "m", "value": 1, "ts": "yesterday"},
        {"metric": "m", "value": 1, "labels": {"bad-label": "x"}},
        {"metric": "m", "value": 1, "labels": {"k": 5}},
        {"metric": "m"},
        {"value": 1},
        {"metric": "m", "value": 1, "colour": "red"},
        ["not", "an", "object"],
        {"metric": "m", "value": True},
        {"metric": "m", "value": 1, "labels": {"__name__": "x"}},
    ]
    samples, errors = parse_push_payload({"samples": rows}, now=NOW)
    assert [s.metric for s in samples] == ["ok_metric", "m"]  # row 8: numeric label value is fine
    prefixes = [e.split(":")[0] for e in errors]
    assert prefixes == [
        "samples[1].metric",
        "samples[2].value",
        "samples[3].value",
        "samples[4].ts",
        "samples[5].ts",
        "samples[6].ts",
        "samples[7].labels",
        "samples[9].value",
        "samples[10].metric",
        "samples[11]",
        "samples[12]",
        "samples[13].value",
        "samples[14].labels",
    ]
    assert "bad-name" in errors[0]
    assert "non-finite" in errors[2]
    assert "naive" in errors[3] and "not UTC" in errors[4]
    assert "colour" in errors[9]


def test_whole_payload_errors() -> None:
    assert parse_push_payload([1, 2], now=NOW)[1][0].startswith("payload: expected an object")
    assert parse_push_payload({"samples": 3}, now=NOW)[1] == ["samples: expected a list, got int"]
    assert "unknown field" in parse_push_payload({"samples": [], "x": 1}, now=NOW)[1][0]
    assert "invalid JSON" in parse_push_payload('{"samples": [', now=NOW)[1][0]
    assert "not UTF-8" in parse_push_payload(b"\xff\xfe", now=NOW)[1][0]
    many = {"samples": [{"metric": "m", "value": 1}] * 11}
    samples, errors = parse_push_payload(many, now=NOW, max_samples=10)
    assert samples == [] and "limit of 10" in errors[0]


TEXT = """# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="get",code="200"} 1027 1795773600000
http_requests_total{method="post",code="500"} 3
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 5
latency_seconds_bucket{le="+Inf"} 7
latency_seconds_sum 1.5
latency_seconds_count 7
# TYPE temperature gauge
temperature NaN
"""


def test_text_exposition(check_samples) -> None:
    samples, errors = parse_push_payload(TEXT, now=NOW)
    check_samples(samples)
    got = {(s.metric, tuple(sorted(s.labels.items()))): (s.value, s.ts) for s in samples}
    stamped = datetime.fromtimestamp(1795773600, UTC)
    assert got[("http_requests_total", (("code", "200"), ("method", "get")))] == (1027.0, stamped)
    assert got[("http_requests_total", (("code", "500"), ("method", "post")))] == (3.0, NOW)
    assert got[("latency_seconds_bucket", (("le", "+Inf"),))] == (7.0, NOW)
    assert got[("latency_seconds_count", ())] == (7.0, NOW)
    assert len(samples) == 6
    assert errors == ["samples[6].value: non-finite value nan (NaN and ±Inf are not stored)"]


def test_text_syntax_error_names_the_line() -> None:
    text = 'good_metric 1\nalso_good{a="b"} 2\nbroken{a="b" 3\n'
    samples, errors = parse_push_payload(text, now=NOW)
    assert samples == []
    assert len(errors) == 1 and errors[0].startswith("text: line 3:")

"""Durations and times as people type them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tasks.timeparse import (
    DurationError,
    format_duration,
    parse_duration,
    parse_prometheus_duration,
    parse_time,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("30m", 1800), ("1h", 3600), ("7d", 604800), ("2w", 1209600), ("1h30m", 5400),
     ("250ms", 0.25), ("1.5h", 5400), ("90", 90), (45, 45), (" 5M ", 300)],
)  # fmt: skip
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "5 minutes", "1y", "-5m", "1h 30m", "m5", True, -3])
def test_bad_durations_name_the_forms(text: object) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)  # type: ignore[arg-type]


def test_format_duration_round_trips() -> None:
    for text in ("10s", "30m", "1h30m", "7d", "1d6h"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(seconds=-90.7)) == "-1m30s"  # whole seconds, signed


def test_format_duration_in_prometheus_style_is_what_promtool_prints() -> None:
    """``rules test`` output quotes eval times as Prometheus's model.Duration prints them."""
    assert [format_duration(s, prometheus=True) for s in (0, 30, 90, 150, 3600, 5400, 86400, 1.5)] == [
        "0s",
        "30s",
        "1m30s",
        "2m30s",
        "1h",
        "1h30m",
        "1d",
        "1s500ms",
    ]
    assert format_duration(timedelta(weeks=1), prometheus=True) == "1w"
    assert format_duration(-5, prometheus=True) == ""  # as model.Duration.String()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1w2d", 777600.0),
        ("1y", 31536000.0),
        ("250ms", 0.25),
        ("1m30s500ms", 90.5),
    ],
)
def test_prometheus_durations(text: str, seconds: float) -> None:
    """Rule files, range selectors and the notification config share Prometheus's strict grammar."""
    assert parse_prometheus_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "1m1h", "1h1h", "-1m", "1.5h", " 5m", "5M"])
def test_bad_prometheus_durations_fail_with_prometheus_wording(text: str) -> None:
    """Prometheus's error text (the lenient parser accepts several of these)."""
    with pytest.raises(DurationError, match=f'^not a valid duration string: "{text}"$'):
        parse_prometheus_duration(text)


def test_parse_time() -> None:
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("1h", now=NOW) == NOW - timedelta(hours=1)
    assert parse_time("2025-03-01T10:00:00Z", now=NOW) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_time("2025-03-01T10:00:00", now=NOW) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    cet = parse_time("2025-03-01T11:00:00+01:00", now=NOW)
    assert cet == datetime(2025, 3, 1, 10, tzinfo=UTC) and cet.tzinfo == UTC
    assert parse_time(datetime(2025, 1, 1), now=NOW).tzinfo == UTC
    plus2 = parse_time(datetime(2025, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), now=NOW)
    assert plus2 == datetime(2025, 1, 1, tzinfo=UTC) and plus2.utcoffset() == timedelta(0)
    with pytest.raises(DurationError, match="invalid time"):
        parse_time("yesterday", now=NOW)


@pytest.mark.parametrize("text", ["99999999999999999999d", "106752d", "1" * 400 + "s", 10**30, float("inf"), "292y"])
def test_durations_are_bounded_with_a_clear_message(text):
    """Prometheus's bound (about 292 years): longer durations are refused by name, not an OverflowError
    from deep inside timedelta (`alerts silence add ... --for 99999999999999999999d` crashed so)."""
    with pytest.raises(DurationError, match=r"invalid duration"):
        parse_duration(text)


def test_the_longest_duration_is_accepted_and_a_time_that_far_back_is_refused_by_name():
    assert parse_duration("106751d").days == 106_751
    with pytest.raises(DurationError, match="out of range"):
        parse_time("106752d")


def test_a_prometheus_duration_with_thousands_of_digits_is_out_of_range_not_a_crash() -> None:
    # Python refuses int() of over 4300 digits with its own ValueError: the message must stay ours
    with pytest.raises(ValueError, match="^duration out of range$"):
        parse_prometheus_duration("9" * 5000 + "s")

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks.alerting.notify.matchers import ConfigPathError
from tasks.alerting.notify.routing import build_route
from tasks.alerting.notify.timeintervals import (
    in_intervals,
    muted,
    parse_named_time_intervals,
    parse_time_interval,
)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_night_across_midnight_as_two_ranges_on_weekdays():
    ti = parse_time_interval(
        {
            "times": [{"start_time": "22:00", "end_time": "24:00"}, {"start_time": "00:00", "end_time": "06:00"}],
            "weekdays": ["monday:friday"],
        }
    )
    assert ti.contains(utc(2024, 4, 24, 23, 59))  # Wednesday
    assert ti.contains(utc(2024, 4, 25, 0, 0))
    assert not ti.contains(utc(2024, 4, 25, 6, 0))  # end minute is exclusive
    assert not ti.contains(utc(2024, 4, 27, 23, 0))  # Saturday
    assert ti.contains(utc(2024, 4, 22, 5, 59))  # Monday early morning


def test_location_reads_the_local_clock():
    ti = parse_time_interval({"times": [{"start_time": "09:00", "end_time": "17:00"}], "location": "Asia/Tokyo"})
    assert ti.contains(utc(2024, 1, 1, 0, 0))  # 09:00 in Tokyo
    assert not ti.contains(utc(2024, 1, 1, 8, 0))  # 17:00 in Tokyo
    # weekday in the interval's zone: Sunday 23:30 UTC is Monday in Tokyo
    mon = parse_time_interval({"weekdays": ["monday"], "location": "Asia/Tokyo"})
    assert mon.contains(utc(2024, 4, 21, 23, 30)) and not parse_time_interval({"weekdays": ["monday"]}).contains(
        utc(2024, 4, 21, 23, 30)
    )
    berlin = parse_time_interval({"times": [{"start_time": "02:00", "end_time": "03:00"}], "location": "Europe/Berlin"})
    assert berlin.contains(utc(2024, 10, 27, 0, 30)) and berlin.contains(utc(2024, 10, 27, 1, 30))  # DST repeat


def test_negative_days_of_month_count_from_the_end():
    last = parse_time_interval({"days_of_month": ["-1"]})
    assert last.contains(utc(2024, 2, 29, 12)) and not last.contains(utc(2024, 2, 28, 12))
    assert last.contains(utc(2023, 2, 28, 12))
    last3 = parse_time_interval({"days_of_month": ["-3:-1"], "months": ["april:june"], "years": ["2024"]})
    assert last3.contains(utc(2024, 4, 28)) and not last3.contains(utc(2024, 4, 27))
    assert not last3.contains(utc(2024, 7, 31)) and not last3.contains(utc(2025, 4, 30))
    clamp = parse_time_interval({"days_of_month": ["25:31"]})
    assert clamp.contains(utc(2024, 2, 29)) and not clamp.contains(utc(2024, 3, 1))
    assert not parse_time_interval({"days_of_month": ["30:31"]}).contains(utc(2023, 2, 28))


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({"times": [{"start_time": "22:00", "end_time": "06:00"}]}, "x.times[0]", "before end_time"),
        ({"times": [{"start_time": "7:00", "end_time": "08:00"}]}, "x.times[0].start_time", "invalid format"),
        ({"weekdays": ["friday:monday"]}, "x.weekdays[0]", "cannot be after"),
        ({"weekdays": ["funday"]}, "x.weekdays[0]", "not a valid weekday"),
        ({"days_of_month": ["0"]}, "x.days_of_month[0]", "out of range"),
        ({"days_of_month": ["-3:5"]}, "x.days_of_month[0]", "must be negative"),
        ({"months": ["smarch"]}, "x.months[0]", "not a valid month"),
        ({"location": "Mars/Base"}, "x.location", "unknown time zone"),
        ({"hours": []}, "x.hours", "unknown field"),
    ],
)
def test_bad_intervals_name_the_field(entry, path, message):
    with pytest.raises(ConfigPathError) as exc:
        parse_time_interval(entry, ("x",))
    assert str(exc.value).startswith(path + ":") and message in str(exc.value)


def test_route_mute_and_active_intervals():
    named = parse_named_time_intervals(
        [
            {"name": "weekend", "time_intervals": [{"weekdays": ["saturday", "sunday"]}]},
            {"name": "office", "time_intervals": [{"times": [{"start_time": "09:00", "end_time": "17:00"}]}]},
        ]
    )
    r = build_route(
        {
            "receiver": "a",
            "routes": [
                {"matchers": ['x="1"'], "mute_time_intervals": ["weekend"]},
                {"matchers": ['x="2"'], "active_time_intervals": ["office", "weekend"]},
            ],
        },
        time_intervals=named,
    )
    (m1,) = r.match({"x": "1"})
    (m2,) = r.match({"x": "2"})
    sat_night, wed_noon, wed_night = utc(2024, 4, 27, 22), utc(2024, 4, 24, 12), utc(2024, 4, 24, 22)
    assert muted(m1, sat_night, named) and not muted(m1, wed_noon, named)
    assert not muted(m2, sat_night, named) and not muted(m2, wed_noon, named) and muted(m2, wed_night, named)
    assert not muted(r.as_match(), sat_night, named)
    assert in_intervals(named["office"], wed_noon)
    with pytest.raises(ConfigPathError, match="not unique"):
        parse_named_time_intervals([{"name": "a"}, {"name": "a"}])

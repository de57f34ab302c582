"""Alertmanager ``time_intervals``: when a route is muted (``mute_time_intervals``) or live
(``active_time_intervals``).

::

    time_intervals:
      - name: offhours
        time_intervals:
          - times: [{start_time: "18:00", end_time: "24:00"}, {start_time: "00:00", end_time: "08:00"}]
            weekdays: ["monday:friday"]
          - weekdays: [saturday, sunday]
            location: Europe/Berlin
          - days_of_month: ["-1"]          # the last day of every month
            months: ["december"]

Semantics are Alertmanager 0.25's ``timeinterval.ContainsTime``: each present field must hold (an absent
field holds always); ranges are inclusive except ``times`` (end minute exclusive, ``24:00`` allowed);
weekdays run Sunday=0..Saturday=6 and ``monday:friday`` must not wrap; negative days count from the end
of the month (``-1`` = last day) and are clamped to the month; the clock is read in ``location``
(IANA name, zoneinfo) or UTC. A span across midnight is two ``times`` entries, as in Alertmanager, which
rejects ``start >= end``. One deliberate difference: Alertmanager computes the days of a month from its
length in hours, so in a month with a DST switch ``-1`` lands a day early there; we use the calendar.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tasks.alerting.notify.matchers import ConfigPathError, PathPart

__all__ = [
    "TimeInterval",
    "active",
    "in_intervals",
    "muted",
    "parse_named_time_intervals",
    "parse_time_interval",
]

_DAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
_MONTHS = {
    name: i
    for i, name in enumerate(
        (
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ),
        start=1,
    )
}
_TIME_RE = re.compile(r"(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))\Z")
_FIELDS = {"times", "weekdays", "days_of_month", "months", "years", "location"}

Range = tuple[int, int]


@dataclass(frozen=True)
class TimeInterval:
    """One entry of a named interval; ``None`` means the field was not given (always holds)."""

    times: tuple[Range, ...] | None = None  # minutes of the day, end exclusive
    weekdays: tuple[Range, ...] | None = None  # 0 = Sunday
    days_of_month: tuple[Range, ...] | None = None  # may be negative
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    location: str | None = None

    def contains(self, t: datetime) -> bool:
        """Is instant ``t`` (aware; naive means UTC) inside this interval?"""
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        t = t.astimezone(ZoneInfo(self.location) if self.location else UTC)
        if self.times is not None:
            minute = t.hour * 60 + t.minute
            if not any(s <= minute < e for s, e in self.times):
                return False
        if self.days_of_month is not None:
            dim = calendar.monthrange(t.year, t.month)[1]
            hit = False
            for b, e in self.days_of_month:
                begin = dim + b + 1 if b < 0 else b
                end = dim + e + 1 if e < 0 else e
                if begin > dim:
                    continue
                begin = max(-dim, min(begin, dim))
                end = max(-dim, min(end, dim))
                if begin <= t.day <= end:
                    hit = True
                    break
            if not hit:
                return False
        if self.months is not None and not any(b <= t.month <= e for b, e in self.months):
            return False
        weekday = (t.weekday() + 1) % 7  # Python: Monday=0; Go: Sunday=0
        if self.weekdays is not None and not any(b <= weekday <= e for b, e in self.weekdays):
            return False
        return not (self.years is not None and not any(b <= t.year <= e for b, e in self.years))


def in_intervals(intervals: Sequence[TimeInterval], t: datetime) -> bool:
    """A named interval holds when any of its entries does."""
    return any(ti.contains(t) for ti in intervals)


def _names(route_match: Any, attr: str) -> tuple[str, ...]:
    return tuple(getattr(route_match, attr, ()) or ())


def muted(route_match: Any, t: datetime, intervals: Mapping[str, Sequence[TimeInterval]]) -> bool:
    """Alertmanager's time mute/active stages for one matched route at ``t``.

    Muted when any ``mute_time_intervals`` entry holds, or when ``active_time_intervals`` are set and
    none holds. ``route_match`` is a ``routing.RouteMatch`` (anything with those two name tuples)."""
    for name in _names(route_match, "mute_time_intervals"):
        if in_intervals(_lookup(intervals, name), t):
            return True
    act = _names(route_match, "active_time_intervals")
    return bool(act) and not any(in_intervals(_lookup(intervals, n), t) for n in act)


def active(route_match: Any, t: datetime, intervals: Mapping[str, Sequence[TimeInterval]]) -> bool:
    """The opposite of ``muted`` (reads better at call sites that deliver)."""
    return not muted(route_match, t, intervals)


def _lookup(intervals: Mapping[str, Sequence[TimeInterval]], name: str) -> Sequence[TimeInterval]:
    try:
        return intervals[name]
    except KeyError:
        raise KeyError(f"undefined time interval {name!r}") from None


# ---- parsing ----------------------------------------------------------------------------------------------


def _str(v: Any, path: Sequence[PathPart]) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ConfigPathError(path, f"expected a string, got {type(v).__name__}")
    return str(v)


def _list(v: Any, path: Sequence[PathPart]) -> list[Any]:
    if not isinstance(v, list):
        raise ConfigPathError(path, f"expected a list, got {type(v).__name__}")
    return v


def _parse_clock(text: str, path: Sequence[PathPart]) -> int:
    m = _TIME_RE.match(text)
    if m is None:
        raise ConfigPathError(path, f"couldn't parse timestamp {text!r}, invalid format (use HH:MM, 00:00 to 24:00)")
    h, mi = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(h) * 60 + int(mi)


def _member(text: str, table: Mapping[str, int] | None, what: str, path: Sequence[PathPart]) -> int:
    low = text.strip().lower()
    if table is not None and low in table:
        return table[low]
    if what == "weekday":
        raise ConfigPathError(path, f"{text!r} is not a valid weekday")
    try:
        return int(low)
    except ValueError:
        raise ConfigPathError(path, f"{text!r} is not a valid {what}") from None


def _range(v: Any, table: Mapping[str, int] | None, what: str, path: Sequence[PathPart]) -> Range:
    text = _str(v, path).lower()
    parts = text.split(":")
    if len(parts) > 2:
        raise ConfigPathError(path, f"couldn't parse range {text!r}, invalid format")
    b = _member(parts[0], table, what, path)
    e = _member(parts[-1], table, what, path)
    return b, e


def parse_time_interval(d: Any, path: Sequence[PathPart] = ()) -> TimeInterval:
    """One ``time_intervals`` entry (the mapping with times/weekdays/…); errors name the field."""
    if not isinstance(d, Mapping):
        raise ConfigPathError(path, "time interval must be a mapping")
    for k in d:
        if k not in _FIELDS:
            allowed = ", ".join(sorted(_FIELDS))
            raise ConfigPathError((*path, k), f"unknown field {k!r} (allowed: {allowed})", at_key=True)
    times = None
    if d.get("times") is not None:
        out = []
        for i, tr in enumerate(_list(d["times"], (*path, "times"))):
            p = (*path, "times", i)
            if not isinstance(tr, Mapping) or set(tr) - {"start_time", "end_time"}:
                raise ConfigPathError(p, "a time range is a mapping with start_time and end_time")
            if not tr.get("start_time") or not tr.get("end_time"):
                raise ConfigPathError(p, "both start_time and end_time must be provided")
            s = _parse_clock(_str(tr["start_time"], (*p, "start_time")), (*p, "start_time"))
            e = _parse_clock(_str(tr["end_time"], (*p, "end_time")), (*p, "end_time"))
            if s >= e:
                raise ConfigPathError(
                    p, "start_time must be before end_time (split a span across midnight into two ranges)"
                )
            out.append((s, e))
        times = tuple(out)
    weekdays = None
    if d.get("weekdays") is not None:
        out = []
        for i, v in enumerate(_list(d["weekdays"], (*path, "weekdays"))):
            p = (*path, "weekdays", i)
            b, e = _range(v, _DAYS, "weekday", p)
            if b > e:
                raise ConfigPathError(p, f"{v!r}: start day cannot be after end day (ranges do not wrap)")
            out.append((b, e))
        weekdays = tuple(out)
    days = None
    if d.get("days_of_month") is not None:
        out = []
        for i, v in enumerate(_list(d["days_of_month"], (*path, "days_of_month"))):
            p = (*path, "days_of_month", i)
            b, e = _range(v, None, "day of the month", p)
            for x in (b, e):
                if x == 0 or not -31 <= x <= 31:
                    raise ConfigPathError(p, f"{x} is not a valid day of the month: out of range")
            if b < 0 < e:
                raise ConfigPathError(p, "end day must be negative if start day is negative")
            cb = 28 + b if b < 0 else b
            ce = 28 + e if e < 0 else e
            if cb > ce:
                raise ConfigPathError(p, f"end day {e} is always before start day {b}")
            out.append((b, e))
        days = tuple(out)
    months = None
    if d.get("months") is not None:
        out = []
        for i, v in enumerate(_list(d["months"], (*path, "months"))):
            p = (*path, "months", i)
            b, e = _range(v, _MONTHS, "month", p)
            for x in (b, e):
                if not 1 <= x <= 12:
                    raise ConfigPathError(p, f"{x} is not a valid month: out of range")
            if b > e:
                raise ConfigPathError(p, f"{v!r}: end month is before start month")
            out.append((b, e))
        months = tuple(out)
    years = None
    if d.get("years") is not None:
        out = []
        for i, v in enumerate(_list(d["years"], (*path, "years"))):
            p = (*path, "years", i)
            b, e = _range(v, None, "year", p)
            if b <= 0 or e <= 0:
                raise ConfigPathError(p, f"{v!r}: years must be positive")
            if b > e:
                raise ConfigPathError(p, f"end year {e} is before start year {b}")
            out.append((b, e))
        years = tuple(out)
    location = None
    if d.get("location") is not None:
        location = _str(d["location"], (*path, "location"))
        try:
            ZoneInfo(location)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigPathError((*path, "location"), f"unknown time zone {location!r}") from None
    return TimeInterval(times, weekdays, days, months, years, location)


def parse_named_time_intervals(
    seq: Any, path: Sequence[PathPart] = ("time_intervals",), *, seen: Mapping[str, object] | None = None
) -> dict[str, tuple[TimeInterval, ...]]:
    """``[{name, time_intervals: [...]}, …]`` → name → entries; names must be unique (also against ``seen``)."""
    out: dict[str, tuple[TimeInterval, ...]] = {}
    if seq is None:
        return out
    for i, item in enumerate(_list(seq, path)):
        p = (*path, i)
        if not isinstance(item, Mapping):
            raise ConfigPathError(p, "a named time interval is a mapping with name and time_intervals")
        for k in item:
            if k not in ("name", "time_intervals"):
                raise ConfigPathError((*p, k), f"unknown field {k!r} (allowed: name, time_intervals)", at_key=True)
        name = item.get("name")
        if not name:
            raise ConfigPathError(p, "missing name in time interval")
        name = _str(name, (*p, "name"))
        if name in out or (seen is not None and name in seen):
            raise ConfigPathError((*p, "name"), f"time interval {name!r} is not unique")
        entries = item.get("time_intervals") or []
        out[name] = tuple(
            parse_time_interval(e, (*p, "time_intervals", j))
            for j, e in enumerate(_list(entries, (*p, "time_intervals")))
        )
    return out

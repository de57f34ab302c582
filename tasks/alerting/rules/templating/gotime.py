"""Go's ``time`` package as far as templates reach it: a ``*time.Time`` (what ``toTime`` returns),
``Time.Format`` with Go's reference-time layouts, and the methods a template may call on it.

Why not ``datetime``: Go's years run far beyond 1..9999 (``toTime 1e12`` is a valid time), and its
layouts are examples of one reference time, not ``strftime`` codes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["TIME_METHODS", "GoTime"]


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 → proleptic Gregorian (year, month, day), any year."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


@dataclass(frozen=True)
class GoTime:
    """A ``*time.Time`` in UTC, ``ns`` nanoseconds after the Unix epoch (what ``toTime`` returns)."""

    ns: int

    def parts(self) -> tuple[int, int, int, int, int, int, int]:
        secs, frac = divmod(self.ns, 1_000_000_000)
        days, rem = divmod(secs, 86400)
        y, mo, d = _civil(days)
        return y, mo, d, rem // 3600, rem % 3600 // 60, rem % 60, frac

    def __str__(self) -> str:
        y, mo, d, h, mi, s, frac = self.parts()
        out = f"{_go_year(y)}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"
        if frac:
            out += ("." + f"{frac:09d}").rstrip("0")
        return out + " +0000 UTC"

    def weekday(self) -> int:
        return (self.ns // 1_000_000_000 // 86400 + 4) % 7

    def format(self, layout: str) -> str:
        return _go_time_format(self, layout)


def _go_year(y: int) -> str:
    return f"{y:04d}" if y >= 0 else f"-{-y:04d}"


_LAYOUT_RE = re.compile(
    r"January|Jan|Monday|Mon|MST|2006|Z07:00:00|-07:00:00|Z07:00|-07:00|Z0700|-0700|Z07|-07|"
    r"[.,](?:0+|9+)(?!\d)|002|01|02|_2|03|04|05|06|15|PM|pm|1|2|3|4|5"
)


def _go_time_format(t: GoTime, layout: str) -> str:
    """``time.Time.Format`` for a UTC time: the standard layout elements of Go's reference time."""
    y, mo, d, h, mi, s, frac = t.parts()

    def one(m: re.Match[str]) -> str:
        tok = m.group()
        if tok[0] in ".," and len(tok) > 1:
            digits = f"{frac:09d}"[: len(tok) - 1]
            if tok[1] == "9":
                digits = digits.rstrip("0")
                return (tok[0] + digits) if digits else ""
            return tok[0] + digits
        table: dict[str, str] = {
            "January": _MONTHS[mo - 1],
            "Jan": _MONTHS[mo - 1][:3],
            "Monday": _DAYS[t.weekday()],
            "Mon": _DAYS[t.weekday()][:3],
            "MST": "UTC",
            "2006": _go_year(y),
            "06": f"{y % 100:02d}",
            "01": f"{mo:02d}",
            "1": str(mo),
            "02": f"{d:02d}",
            "_2": f"{d:2d}",
            "2": str(d),
            "002": f"{(t.ns // 1_000_000_000 // 86400 - _days_before_year(y)) + 1:03d}",
            "15": f"{h:02d}",
            "03": f"{(h % 12) or 12:02d}",
            "3": str((h % 12) or 12),
            "04": f"{mi:02d}",
            "4": str(mi),
            "05": f"{s:02d}",
            "5": str(s),
            "PM": "PM" if h >= 12 else "AM",
            "pm": "pm" if h >= 12 else "am",
        }
        if tok.startswith("Z"):
            return "Z"
        if tok.startswith("-07"):
            return {"-07:00:00": "+00:00:00", "-07:00": "+00:00", "-0700": "+0000", "-07": "+00"}[tok]
        return table[tok]

    return _LAYOUT_RE.sub(one, layout)


def _days_before_year(y: int) -> int:
    """Days from 1970-01-01 to January 1st of ``y``."""
    lo, hi = (y - 1970) * 366 - 800, (y - 1970) * 365 + 800
    while lo < hi:  # the first day whose year is >= y
        mid = (lo + hi) // 2
        if _civil(mid)[0] < y:
            lo = mid + 1
        else:
            hi = mid
    return lo


# Methods of *time.Time a template may call: name → (parameter types, implementation).
TIME_METHODS: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
    "Unix": ((), lambda t: t.ns // 1_000_000_000),
    "UnixMilli": ((), lambda t: t.ns // 1_000_000),
    "UnixMicro": ((), lambda t: t.ns // 1_000),
    "UnixNano": ((), lambda t: t.ns),
    "UTC": ((), lambda t: t),
    "String": ((), str),
    "Format": (("string",), lambda t, layout: t.format(layout)),
    "Year": ((), lambda t: t.parts()[0]),
    "Day": ((), lambda t: t.parts()[2]),
    "Hour": ((), lambda t: t.parts()[3]),
    "Minute": ((), lambda t: t.parts()[4]),
    "Second": ((), lambda t: t.parts()[5]),
    "Nanosecond": ((), lambda t: t.parts()[6]),
    "IsZero": ((), lambda t: t.ns == -62135596800 * 1_000_000_000),
}

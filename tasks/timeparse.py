"""Durations and points in time as people type them: ``30s``, ``5m``, ``1h30m``, ``7d``, ISO 8601.

Why one helper: the CLI, the REST API and flow parameters all take ``--since 1h`` style values;
parsing them in one place keeps the accepted forms (and the error message) identical everywhere.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["MAX_DURATION", "DurationError", "format_duration", "parse_duration", "parse_time"]

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86_400.0,
    "w": 7 * 86_400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")


#: The longest duration accepted: Prometheus's bound (int64 nanoseconds, about 292 years). Longer
#: ones are typing mistakes, and Python's ``timedelta`` (or the ``datetime`` it is subtracted from)
#: would otherwise overflow deep inside whatever uses them.
MAX_DURATION = timedelta(days=106_751)


class DurationError(ValueError):
    """A duration or time that cannot be parsed; the message shows the accepted forms."""


def _bounded(seconds: float, text: object) -> timedelta:
    if not seconds <= MAX_DURATION.total_seconds():  # also refuses nan and inf
        raise DurationError(f"invalid duration {text!r}: out of range (at most {MAX_DURATION.days}d)")
    return timedelta(seconds=seconds)


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"90s"``, ``"5m"``, ``"1h30m"``, ``"7d"``, ``"2w"``, ``"250ms"`` (or a number of seconds).

    Prometheus's duration syntax (units ms, s, m, h, d, w; combinable, largest first by habit).
    """
    if isinstance(text, timedelta):
        _bounded(abs(text.total_seconds()), text)
        return text
    if isinstance(text, bool):
        raise DurationError(f"invalid duration {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise DurationError(f"invalid duration {text!r}: must not be negative")
        return _bounded(float(text), text)
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return _bounded(float(s), text)
    if not s or not _WHOLE.match(s):
        raise DurationError(f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 5m, 1h, 1h30m, 7d, 2w")
    seconds = sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(s))
    return _bounded(seconds, text)


def format_duration(td: timedelta) -> str:
    """The shortest ``1h30m``-style text for ``td`` (whole seconds; ``0s`` for zero)."""
    total = int(td.total_seconds())
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    out = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out.append(f"{n}{unit}")
    return sign + "".join(out)


def parse_time(text: str | datetime, *, now: datetime | None = None) -> datetime:
    """A point in time: ``now``, a duration meaning "that long ago" (``1h``), or ISO 8601.

    ISO timestamps without an offset are taken as UTC (everything in cortex-perf is UTC);
    timestamps with an offset are converted to UTC. ``now`` is injectable for tests.
    """
    ref = now or datetime.now(UTC)
    if isinstance(text, datetime):
        return text.astimezone(UTC) if text.tzinfo else text.replace(tzinfo=UTC)
    s = str(text).strip()
    if s.lower() == "now":
        return ref
    try:
        return ref - parse_duration(s)
    except DurationError as exc:
        if "out of range" in str(exc):
            raise
    except OverflowError:
        raise DurationError(f"invalid time {text!r}: that long ago is before year 1") from None
    try:
        ts = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise DurationError(
            f"invalid time {text!r}: use 'now', a duration ago (30m, 1h, 7d) "
            "or an ISO 8601 timestamp (2025-01-31T12:00:00Z)"
        ) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)

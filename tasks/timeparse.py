"""Durations and points in time as people type them: ``30s``, ``5m``, ``1h30m``, ``7d``, ISO 8601.

Why one helper: the CLI, the REST API and flow parameters all take ``--since 1h`` style values;
parsing them in one place keeps the accepted forms (and the error message) identical everywhere.

Two grammars live here on purpose, side by side: :func:`parse_duration` is lenient (what people
type: ``1.5h``, ``90``, any unit order) and :func:`parse_prometheus_duration` is Prometheus's strict
one (rule files, range selectors, the notification config: what promtool and amtool accept, with
their error texts), so a file that passes our checks passes theirs. :func:`format_duration` writes
either style back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = [
    "MAX_DURATION",
    "MAX_DURATION_MS",
    "DurationError",
    "format_duration",
    "parse_duration",
    "parse_prometheus_duration",
    "parse_time",
]

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


#: The longest duration Prometheus accepts: its durations are Go ``time.Duration``s (int64
#: nanoseconds, about 292 years), counted in whole milliseconds. Beyond it promtool says "duration
#: out of range"; we must too, or a rule that passes ``rules check`` overflows at evaluation.
MAX_DURATION_MS = (2**63 - 1) // 1_000_000
#: The same bound for the lenient parser (106,751 whole days): longer durations are typing mistakes,
#: and Python's ``timedelta`` (or the ``datetime`` it is subtracted from) would otherwise overflow
#: deep inside whatever uses them.
MAX_DURATION = timedelta(days=MAX_DURATION_MS // 86_400_000)


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


#: Prometheus's common/model.ParseDuration: units in descending order, each at most once; "0" alone.
_PROMETHEUS_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
#: Prometheus's units, largest first, in milliseconds: the groups of the pattern above, and what
#: :func:`format_duration` writes in its ``prometheus`` style.
_PROMETHEUS_UNITS_MS: tuple[tuple[str, int], ...] = (
    ("y", 31_536_000_000),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)


def parse_prometheus_duration(text: str) -> float:
    """``1h30m`` → 5400.0 seconds, as Prometheus parses durations (range selectors, rule files and
    Alertmanager's config alike): units ms s m h d w y, in descending order, each at most once, at
    most :data:`MAX_DURATION_MS` in all.

    Returns float seconds because that is what the PromQL evaluators and templates compute with;
    callers that schedule (``group_wait``, escalation steps) wrap it in a ``timedelta``. Raises
    :class:`DurationError` (a ``ValueError``) with Prometheus's own texts (``not a valid duration
    string: "…"``, ``duration out of range``), which ``rules check`` and the config checks show as is.
    """
    if text == "0":
        return 0.0
    m = _PROMETHEUS_DURATION_RE.match(text)
    if not text or m is None or not any(m.groups()):
        raise DurationError(f'not a valid duration string: "{text}"')
    total_ms = 0
    for g, (_unit, unit_ms) in zip(m.groups(), _PROMETHEUS_UNITS_MS, strict=True):
        if g:
            # a count longer than the bound's 13 digits is out of range whatever its value (and
            # int() of thousands of digits would fail with Python's own message)
            if len(g.lstrip("0")) > len(str(MAX_DURATION_MS)):
                raise DurationError("duration out of range")
            total_ms += int(g) * unit_ms
    if total_ms > MAX_DURATION_MS:
        raise DurationError("duration out of range")
    return total_ms / 1000


_UNITS_S: tuple[tuple[str, int], ...] = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(d: timedelta | float, *, prometheus: bool = False) -> str:
    """The shortest text for ``d`` (a ``timedelta`` or seconds); ``0s`` for zero.

    Default: ``1h30m`` style in whole seconds, units d h m s, ``-`` before a negative duration:
    what :func:`parse_duration` reads back, for event reasons and CLI output.
    ``prometheus=True``: Prometheus's ``model.Duration`` text as promtool prints it (``rules test``
    output must match it byte for byte): rounded to milliseconds, units y w d h m s ms (``1.5`` →
    ``1s500ms``); a negative duration is empty there, and so here.
    """
    seconds = d.total_seconds() if isinstance(d, timedelta) else float(d)
    sign = ""
    if prometheus:
        n, units = round(seconds * 1000), _PROMETHEUS_UNITS_MS
    else:
        n, units = int(seconds), _UNITS_S
        if n < 0:
            sign, n = "-", -n
    if n == 0:
        return "0s"
    out = []
    for unit, size in units:
        if n >= size:
            out.append(f"{n // size}{unit}")
            n %= size
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

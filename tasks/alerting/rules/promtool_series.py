"""promtool's ``input_series`` notation (``promtool test rules``, Prometheus 2.42's series-description grammar).

``values`` is a space-separated list of segments:

=============  ==============================================================================
``a``          one value: a number (``1``, ``-2.5``, ``1e3``, ``.5``, ``Inf``, ``-Inf``, ``NaN``)
``stale``      a staleness marker
``_``          one missing sample
``_xn``        ``n`` missing samples
``axn``        ``a`` repeated: ``n + 1`` values
``a+bxn``      ``a, a+b, …, a+n·b``: ``n + 1`` values (``a-bxn`` counts down)
=============  ==============================================================================

so ``1+2x10`` is 11 values and ``_x3`` three missing ones (as promtool: the ``x`` forms give one
more value than ``n``, except ``_xn``). Value ``i`` lands at ``t0 + i · interval``.

:func:`parse_values` returns ``list[float | None | Stale]`` (``None`` = missing, :data:`STALE` = stale
marker); :func:`expand_input_series` turns promtool's ``[{series, values}]`` into lake samples.
Errors are :class:`SeriesNotationError` naming the 1-based column and the segment.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from tasks.alerting.rules.promql import PromQLError, VectorSelector, parse
from tasks.lake.schema import Sample

__all__ = [
    "STALE",
    "InputSeries",
    "SeriesNotationError",
    "Stale",
    "expand_input_series",
    "parse_series",
    "parse_values",
    "samples_from_input_series",
]


class Stale(enum.Enum):
    """The staleness marker (Prometheus's special ``StaleNaN``)."""

    STALE = "stale"

    def __repr__(self) -> str:
        return "STALE"


STALE: Final = Stale.STALE

Value = float | None | Stale


class SeriesNotationError(ValueError):
    """Bad ``input_series`` notation; ``column`` is 1-based in the text given."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


#: ``\d+(?:\.\d*)?``, not ``\d+\.?\d*``: the ambiguous split backtracks quadratically on a long digit run.
_NUM = r"(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|[iI][nN][fF]|[nN][aA][nN])"
_SEGMENT_RE = re.compile(
    rf"""
    (?P<blank>_)(?:x(?P<blank_n>\d+))?
  | (?P<stale>stale)
  | (?P<start>[-+]?{_NUM})(?:(?P<step>[-+]{_NUM})?x(?P<n>\d+))?
    """,
    re.X,
)

#: More values than this from one segment is a typo, not a test (protects memory).
MAX_EXPANSION = 10_000_000


def _num(text: str) -> float:
    return float(text)


def parse_values(text: str) -> list[Value]:
    """Expand promtool series notation, e.g. ``"1+2x3 _ stale -1e3"`` → ``[1, 3, 5, 7, None, STALE, -1000]``."""
    out: list[Value] = []
    for m in re.finditer(r"\S+", text):
        seg, col = m.group(), m.start() + 1
        sm = _SEGMENT_RE.fullmatch(seg)
        if sm is None:
            raise SeriesNotationError(_explain(seg), col)
        if sm.group("blank"):
            n = int(sm.group("blank_n")) if sm.group("blank_n") is not None else 1
            _check_n(n, seg, col)
            out.extend([None] * n)
        elif sm.group("stale"):
            out.append(STALE)
        else:
            start = _num(sm.group("start"))
            if sm.group("n") is None:
                out.append(start)
                continue
            n = int(sm.group("n"))
            _check_n(n, seg, col)
            if sm.group("step") is None:
                out.extend([start] * (n + 1))
                continue
            inc = _num(sm.group("step"))
            v = start
            out.append(v)
            for _ in range(n):
                v += inc  # accumulated like promtool (``$1 += $2``), not start + i·step
                out.append(v)
    return out


def _check_n(n: int, seg: str, col: int) -> None:
    if n > MAX_EXPANSION:
        raise SeriesNotationError(f"{seg!r}: {n} repetitions is more than {MAX_EXPANSION}", col)


def _explain(seg: str) -> str:
    if seg.startswith("stale"):
        return f"{seg!r}: 'stale' takes no repetition (write it once per sample)"
    if "x" in seg and not re.search(r"x\d+$", seg):
        return f"{seg!r}: the repetition count after 'x' must be a non-negative integer"
    return f"unexpected {seg!r} in series values: expected a number, 'stale', '_', '_xN', 'AxN' or 'A+BxN'/'A-BxN'"


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    """``'m{a="b"}'`` → ``("m", {"a": "b"})``; only ``=`` matchers, and a metric name is required."""
    try:
        node = parse(text)
    except PromQLError as exc:
        raise SeriesNotationError(f"series {text!r}: {exc.msg}", exc.column) from None
    if not isinstance(node, VectorSelector):
        raise SeriesNotationError(f'series {text!r}: expected a series like metric{{label="value"}}', 1)
    labels: dict[str, str] = {}
    for m in node.selector.matchers:
        if m.op != "=":
            raise SeriesNotationError(f"series {text!r}: only '=' may be used in a series description", 1)
        labels[m.name] = m.value
    metric = labels.pop("__name__", None)
    if not metric:
        raise SeriesNotationError(f"series {text!r}: a metric name is required", 1)
    return metric, labels


@dataclass(frozen=True)
class InputSeries:
    metric: str
    labels: dict[str, str]
    values: list[Value]

    def points(self, t0: datetime, interval: timedelta) -> list[tuple[datetime, float | Stale]]:
        """``(time, value)`` for every sample present (missing ones skipped; stale markers kept)."""
        return [(t0 + i * interval, v) for i, v in enumerate(self.values) if v is not None]

    def stale_times(self, t0: datetime, interval: timedelta) -> list[datetime]:
        return [t for t, v in self.points(t0, interval) if v is STALE]


def expand_input_series(items: Iterable[Mapping[str, Any]]) -> list[InputSeries]:
    """promtool's ``input_series`` list (``[{series: 'm{a="b"}', values: "1+1x3"}]``) parsed and expanded.

    Errors name the item (1-based) and the column in its ``series`` or ``values``."""
    out: list[InputSeries] = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, Mapping) or "series" not in item:
            raise SeriesNotationError(f"input_series[{i}]: needs 'series' and 'values'", 1)
        try:
            metric, labels = parse_series(str(item["series"]))
        except SeriesNotationError as exc:
            raise SeriesNotationError(f"input_series[{i}].series: {exc.message}", exc.column) from None
        raw = item.get("values")
        try:
            values = parse_values("" if raw is None else str(raw))
        except SeriesNotationError as exc:
            raise SeriesNotationError(f"input_series[{i}].values: {exc.message}", exc.column) from None
        out.append(InputSeries(metric, labels, values))
    return out


def samples_from_input_series(
    items: Iterable[Mapping[str, Any]], interval: timedelta | float, t0: datetime
) -> tuple[list[Sample], list[tuple[str, dict[str, str], datetime]]]:
    """Lake samples for promtool's ``input_series``, value ``i`` at ``t0 + i · interval``.

    Returns ``(samples, stale_markers)``: the lake holds no staleness markers, so each ``stale``
    point is returned as ``(metric, labels, time)`` for the caller to honour (the sample is not
    written). ``Inf``/``NaN`` values are written as they are."""
    every = interval if isinstance(interval, timedelta) else timedelta(seconds=interval)
    if every <= timedelta(0):
        raise ValueError("interval must be positive")
    samples: list[Sample] = []
    stale: list[tuple[str, dict[str, str], datetime]] = []
    for s in expand_input_series(items):
        for t, v in s.points(t0, every):
            if isinstance(v, Stale):
                stale.append((s.metric, dict(s.labels), t))
            else:
                samples.append(Sample(s.metric, v, t, dict(s.labels)))
    return samples, stale

"""When to warm without being told: a node restarted or joined, or misses surged.

Why from the lake and not from a live check: the collector already samples every node each minute
(``redis_uptime_seconds``, ``redis_keyspace_misses_total`` per ``node``), so the cache flow sees a
restart even when it happened between two of its own runs — an uptime that went *down* between
two samples — and a node that appeared (its first sample in the window, none in the baseline
before it). A miss surge compares the misses per second over the last window with the baseline
before it; the flow turns it into a ``cache.miss`` event, on which a Prefect automation runs the
warming deployment (prefect.yaml).

Selectors are built from matchers, never from text: the Redis name is user text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import polars as pl

from tasks.lake import Lake
from tasks.lake.selector import Matcher, Selector

__all__ = ["MissSurge", "NodeChange", "miss_surge", "node_changes"]


@dataclass(frozen=True)
class NodeChange:
    """A node that ``restarted`` (its uptime went down) or ``joined`` (first seen) at ``at``."""

    node: str
    kind: Literal["restarted", "joined"]
    at: datetime


@dataclass(frozen=True)
class MissSurge:
    """Misses per second now vs the baseline before (``ratio`` = now / baseline)."""

    rate: float
    baseline: float
    ratio: float


def _selector(metric: str, redis_name: str) -> Selector:
    return Selector((Matcher("__name__", "=", metric), Matcher("redis", "=", redis_name)))


def node_changes(
    lake: Lake, redis_name: str, start: datetime, end: datetime, *, baseline: timedelta = timedelta(hours=1)
) -> list[NodeChange]:
    """Nodes of ``redis_name`` that restarted or joined in [start, end), oldest first.

    ``baseline``: how far before ``start`` a node must have been seen not to count as joining
    (a lake that starts inside the window reports nothing as joined: no history, no claim)."""
    raw = lake.raw(_selector("redis_uptime_seconds", redis_name), start - baseline, end)
    if not raw.height:
        return []
    df = raw.with_columns(pl.col("labels").str.json_path_match("$.node").fill_null("").alias("node"))
    out: list[NodeChange] = []
    first_seen = df.select(pl.col("ts").min()).item()
    for (node,), group in df.sort("ts").group_by(["node"], maintain_order=True):
        ts = group.get_column("ts").to_list()
        up = group.get_column("value").to_list()
        if ts[0] >= start and first_seen < start:
            out.append(NodeChange(str(node), "joined", ts[0]))
        for i in range(1, len(up)):
            if up[i] < up[i - 1] and ts[i] >= start:
                out.append(NodeChange(str(node), "restarted", ts[i]))
    return sorted(out, key=lambda c: (c.at, c.node))


def miss_surge(
    lake: Lake,
    redis_name: str,
    now: datetime,
    *,
    window: timedelta = timedelta(minutes=5),
    baseline: timedelta = timedelta(hours=1),
    factor: float = 3.0,
    min_rate: float = 1.0,
) -> MissSurge | None:
    """A surge when misses/s over the last ``window`` are ≥ ``factor`` × those of the ``baseline``
    before it and at least ``min_rate`` (a quiet cache going from 0.01 to 0.05/s is not a surge).
    ``None`` when there is no surge or not enough history to say."""
    raw = lake.raw(_selector("redis_keyspace_misses_total", redis_name), now - window - baseline, now)
    if not raw.height:
        return None
    lo = now - window
    if raw.select(pl.col("ts").min()).item() > lo - baseline / 2:
        return None  # less than half a baseline of history: too little to call anything a surge
    rate = _increase(raw, lo, now) / window.total_seconds()
    base = _increase(raw, lo - baseline, lo) / baseline.total_seconds()
    if rate < min_rate or rate < factor * base:
        return None
    return MissSurge(rate, base, rate / base if base > 0 else float("inf"))


def _increase(raw: pl.DataFrame, lo: datetime, hi: datetime) -> float:
    """The counters' increase over (lo, hi], summed over series; a drop is a reset (counted from 0)."""
    df = (
        raw.sort("series", "ts")
        .with_columns(pl.col("value").diff().over("series").alias("d"))
        .with_columns(pl.when(pl.col("d") < 0).then(pl.col("value")).otherwise(pl.col("d")).alias("inc"))
        .filter((pl.col("ts") > lo) & (pl.col("ts") <= hi) & pl.col("inc").is_not_null())
    )
    return float(df.get_column("inc").sum())

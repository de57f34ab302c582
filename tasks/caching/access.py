"""An access history: which key was read when, the input of hot-key prediction.

Why a dense array form: prediction computes a dozen features per key over every access (decayed
counts at several half-lives, recency, gaps), and a real history is millions of accesses; as numpy
arrays (one int id per access into a key table, a time, a count) each feature is one ``bincount``
instead of a Python loop. Time is whatever the source has: seconds since the epoch for
``cache_access`` samples and timestamped logs, the request index (virtual time) for traces without
timestamps — ``timestamped`` says which, and only a timestamped history has daily/weekly features.

Sources: ``cache_access`` samples an application pushes to the lake (metric ``cache_access``, label
``key``, value = accesses in that sample), a log file with one access per line (``KEY`` or
``TIMESTAMP KEY``), or any sequence of keys (a trace).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tasks.lake import Lake
from tasks.lake.selector import Matcher, Selector

__all__ = ["ACCESS_METRIC", "MAX_KEY_BYTES", "AccessHistory", "AccessLogError"]

#: The metric an application pushes one sample of per key and interval (value: accesses).
ACCESS_METRIC = "cache_access"
#: Longest key accepted from a log line (Redis allows 512 MB; a warming plan has no use for that).
MAX_KEY_BYTES = 64 * 1024


class AccessLogError(ValueError):
    """A log line that is not an access; the message names the file and line."""


@dataclass(frozen=True)
class AccessHistory:
    """Accesses in time order: ``ids[i]`` indexes ``keys``, at ``times[i]``, ``counts[i]`` times."""

    keys: tuple[str, ...]
    ids: np.ndarray
    times: np.ndarray
    counts: np.ndarray
    timestamped: bool

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_keys(self) -> int:
        return len(self.keys)

    @property
    def start(self) -> float:
        return float(self.times[0]) if len(self) else 0.0

    @property
    def end(self) -> float:
        """The time just after the last access (where a prediction for "now" starts)."""
        return float(self.times[-1]) + (0.0 if self.timestamped else 1.0) if len(self) else 0.0

    @classmethod
    def from_keys(
        cls,
        keys: Iterable[Any],
        times: Sequence[float] | np.ndarray | None = None,
        counts: Sequence[float] | np.ndarray | None = None,
    ) -> AccessHistory:
        """From accesses in order; ``times`` (epoch seconds) makes it timestamped, else time is the index."""
        names = [str(k) for k in keys]
        table: dict[str, int] = {}
        ids = np.fromiter((table.setdefault(k, len(table)) for k in names), dtype=np.int64, count=len(names))
        if times is None:
            t = np.arange(len(names), dtype=np.float64)
        else:
            t = np.asarray(times, dtype=np.float64)
            if t.shape != ids.shape:
                raise ValueError(f"times: {t.shape[0]} times for {ids.shape[0]} accesses")
        c = np.ones(len(names)) if counts is None else np.asarray(counts, dtype=np.float64)
        order = np.argsort(t, kind="stable")
        if not np.all(order == np.arange(len(order))):
            ids, t, c = ids[order], t[order], c[order]
        return cls(tuple(table), ids, t, c, times is not None)

    @classmethod
    def from_ids(cls, ids: np.ndarray, keys: Sequence[str] | None = None) -> AccessHistory:
        """From dense integer ids in order (a trace already encoded), virtual time; keys default to the ids."""
        ids = np.asarray(ids, dtype=np.int64)
        n = int(ids.max()) + 1 if ids.size else 0
        names = tuple(keys) if keys is not None else tuple(str(i) for i in range(n))
        return cls(names, ids, np.arange(ids.size, dtype=np.float64), np.ones(ids.size), False)

    def before(self, t: float) -> AccessHistory:
        """The accesses strictly before ``t`` (same key table: ids stay comparable)."""
        n = int(np.searchsorted(self.times, t, side="left"))
        return AccessHistory(self.keys, self.ids[:n], self.times[:n], self.counts[:n], self.timestamped)

    def between(self, lo: float, hi: float) -> AccessHistory:
        """The accesses in ``[lo, hi)``."""
        a = int(np.searchsorted(self.times, lo, side="left"))
        b = int(np.searchsorted(self.times, hi, side="left"))
        return AccessHistory(self.keys, self.ids[a:b], self.times[a:b], self.counts[a:b], self.timestamped)

    def key_counts(self) -> np.ndarray:
        """Accesses per key id (length ``n_keys``)."""
        return np.bincount(self.ids, weights=self.counts, minlength=self.n_keys)

    # -- sources ----------------------------------------------------------------------------

    @classmethod
    def from_log(cls, path: str | Path, *, max_lines: int = 50_000_000) -> AccessHistory:
        """One access per line: ``KEY`` (virtual time) or ``TIMESTAMP KEY`` (epoch seconds or ISO 8601).

        The whole file is one kind: the first line decides. Blank lines and ``#`` comments are skipped."""
        p = Path(path)
        keys: list[str] = []
        times: list[float] = []
        stamped: bool | None = None
        with p.open("r", encoding="utf-8", errors="strict") as fh:
            for n, raw in enumerate(fh, 1):
                if n > max_lines:
                    raise AccessLogError(f"{p}: more than {max_lines:,} lines")
                line = raw.rstrip("\r\n")
                if not line.strip() or line.startswith("#"):
                    continue
                first, sep, rest = line.partition(" ")
                ts = _parse_ts(first) if sep and rest else None
                if stamped is None:
                    stamped = ts is not None
                if stamped:
                    if ts is None:
                        raise AccessLogError(f"{p}:{n}: expected 'TIMESTAMP KEY', got {line[:80]!r}")
                    times.append(ts)
                    key = rest
                else:
                    key = line
                if len(key.encode()) > MAX_KEY_BYTES:
                    raise AccessLogError(f"{p}:{n}: key longer than {MAX_KEY_BYTES} bytes")
                keys.append(key)
        return cls.from_keys(keys, times if stamped else None)

    @classmethod
    def from_lake(cls, lake: Lake, start: datetime, end: datetime, *, redis: str | None = None) -> AccessHistory:
        """``cache_access`` samples in ``[start, end)`` (label ``key``; ``redis`` filters on that label)."""
        matchers = [Matcher("__name__", "=", ACCESS_METRIC)] + ([] if redis is None else [Matcher("redis", "=", redis)])
        sel = Selector(tuple(matchers))  # built from matchers: the Redis name is user text
        df = lake.raw(sel, start, end)
        if not df.height:
            return cls.from_keys([], [])
        keys: list[str] = []
        times: list[float] = []
        counts: list[float] = []
        for labels, ts, value in zip(df["labels"].to_list(), df["ts"].to_list(), df["value"].to_list(), strict=True):
            key = json.loads(labels).get("key") if labels else None
            if key is None or not value or value <= 0:
                continue
            keys.append(str(key))
            times.append(ts.timestamp())
            counts.append(float(value))
        return cls.from_keys(keys, times, counts)


def _parse_ts(text: str) -> float | None:
    """Epoch seconds or an ISO 8601 time (naive means UTC); ``None`` when it is neither."""
    try:
        v = float(text)
        return v if v == v and abs(v) < 1e11 else None
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

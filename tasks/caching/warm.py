"""Warming: load keys into Redis before the traffic asks for them, never faster than the caps allow.

Why these rules: a warm-up runs beside live traffic, so it is rate limited (``cache.warm.ops_per_s``
and ``bytes_per_s``, token buckets) and it never rewrites a key that is already there (``SET … NX``:
the live value and its remaining TTL win over ours). Values come from a **loader** — a Python
callable ``module:function``, an HTTP URL template, or SQL over the lake — and get the loader's
TTL or ``cache.warm.default_ttl_s``. Writes go in pipelines of ``cache.warm.batch`` keys; on a
Redis Cluster keys are sent sorted by hash slot and redis-py's cluster pipeline sends each node only
its own single-key commands, so no command spans two slots.

A loader that raises stops the run: :class:`WarmReport` says what was written before (``warmed``),
and ``error`` names the loader — never half-written silently.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import re2
from redis.cluster import RedisCluster

from tasks.caching.client import CacheClient
from tasks.config.caching import CacheWarmSettings
from tasks.lake import Lake

__all__ = [
    "CallableLoader",
    "HttpLoader",
    "Loader",
    "LoaderError",
    "SqlLoader",
    "TokenBucket",
    "WarmConfigError",
    "WarmPlan",
    "WarmReport",
    "glob_matcher",
    "parse_loader",
    "plan_warm",
    "warm_keys",
]

LOADER_FIELD = "cache.warm.loader"
#: Largest value a loader may hand back (Redis allows 512 MB; a warm-up has no business near that).
MAX_VALUE_BYTES = 64 * 1024 * 1024

Value = bytes | str | int | float


class WarmConfigError(ValueError):
    """A warming setting that cannot work (a loader spec, a pattern); the message names the field."""


class LoaderError(RuntimeError):
    """The loader failed; one line naming the loader."""


class Loader(Protocol):
    """Values for a batch of keys: ``{key: value}`` or ``{key: (value, ttl_s)}``; a missing key is not loaded."""

    spec: str

    def load(self, keys: Sequence[str]) -> Mapping[str, Any]: ...


@dataclass
class CallableLoader:
    """``module:function`` called with a list of keys."""

    spec: str
    fn: Callable[[list[str]], Mapping[str, Any]]

    def load(self, keys: Sequence[str]) -> Mapping[str, Any]:
        return self.fn(list(keys))


@dataclass
class HttpLoader:
    """GET ``template`` with ``{key}`` replaced by the URL-quoted key; 200 → the body, 404 → not loaded.

    A ``Cache-Control: max-age=N`` answer sets the key's TTL (the origin knows how fresh it is)."""

    spec: str
    timeout_s: float = 10.0
    transport: httpx.BaseTransport | None = None
    _client: httpx.Client | None = field(default=None, repr=False)

    def load(self, keys: Sequence[str]) -> Mapping[str, Any]:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s, transport=self.transport)
        out: dict[str, Any] = {}
        for key in keys:
            r = self._client.get(self.spec.replace("{key}", quote(key, safe="")))
            if r.status_code == 404:
                continue
            r.raise_for_status()
            ttl = _max_age(r.headers.get("cache-control", ""))
            out[key] = (r.content, ttl) if ttl else r.content
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass
class SqlLoader:
    """``sql:`` + a query over the lake's views with the keys bound as ``$keys`` (a list parameter).

    The keys never enter the SQL text: ``WHERE key IN (SELECT unnest($keys))``. The query returns
    ``key, value`` and optionally ``ttl_s``."""

    spec: str
    lake: Lake

    def load(self, keys: Sequence[str]) -> Mapping[str, Any]:
        con = self.lake.views()
        try:
            rel = con.execute(self.spec[len("sql:") :], {"keys": list(keys)})
            names = [d[0] for d in rel.description]
            rows = rel.fetchall()
        finally:
            con.close()
        if names[:2] != ["key", "value"]:
            raise LoaderError(f"{LOADER_FIELD}: the query must return columns key, value[, ttl_s] (got {names})")
        out: dict[str, Any] = {}
        for row in rows:
            ttl = row[2] if len(row) > 2 else None
            out[str(row[0])] = (row[1], ttl) if ttl else row[1]
        return out


def parse_loader(spec: str | None, *, lake: Lake | None = None, timeout_s: float = 10.0) -> Loader:
    """The loader ``cache.warm.loader`` names; a :class:`WarmConfigError` naming that field otherwise."""
    if not spec or not spec.strip():
        raise WarmConfigError(
            f"{LOADER_FIELD}: no loader configured (module:function, an http(s) URL with {{key}}, or sql: …)"
        )
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        if "{key}" not in spec:
            raise WarmConfigError(f"{LOADER_FIELD}: the URL template has no {{key}} ({spec!r})")
        return HttpLoader(spec, timeout_s=timeout_s)
    if spec.startswith("sql:"):
        if "$keys" not in spec:
            raise WarmConfigError(f"{LOADER_FIELD}: the SQL must take the keys as $keys")
        if lake is None:
            raise WarmConfigError(f"{LOADER_FIELD}: an sql: loader needs the lake")
        return SqlLoader(spec, lake)
    module, sep, name = spec.partition(":")
    if not sep or not module or not name or not all(p.isidentifier() for p in [*module.split("."), name]):
        raise WarmConfigError(
            f"{LOADER_FIELD}: {spec!r} is not module:function, an http(s) URL with {{key}}, or sql: …"
        )
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise WarmConfigError(f"{LOADER_FIELD}: cannot import {spec!r}: {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise WarmConfigError(f"{LOADER_FIELD}: {spec!r} is not callable")
    return CallableLoader(spec, fn)


def _max_age(cache_control: str) -> float | None:
    for part in cache_control.split(","):
        k, _, v = part.strip().partition("=")
        if k.lower() == "max-age" and v.isdigit() and int(v) > 0:
            return float(v)
    return None


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take(n)`` waits until n are there.

    ``clock`` and ``sleep`` are injectable so a test can check the cap without timing."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._at = clock()

    def take(self, n: float) -> None:
        """Take ``n`` tokens (more than the burst is allowed: it waits for the debt to be paid)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        if self._tokens < 0:
            self._sleep(-self._tokens / self.rate)
            self._at = self._clock()
            self._tokens = 0.0


@dataclass
class WarmPlan:
    """What a warm-up would do: the keys to load and those already present (left alone)."""

    missing: list[str]
    present: list[str]


@dataclass
class WarmReport:
    """What a warm-up did: keys written, skipped (present, or the loader had no value), failed."""

    requested: int = 0
    warmed: int = 0
    skipped_present: int = 0
    skipped_no_value: int = 0
    failed: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    loader: str = ""
    error: str | None = None
    failed_keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def counts(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "warmed": self.warmed,
            "skipped_present": self.skipped_present,
            "skipped_no_value": self.skipped_no_value,
            "failed": self.failed,
            "bytes": self.bytes,
            "elapsed_s": round(self.elapsed_s, 3),
            "loader": self.loader,
            "error": self.error,
        }


def glob_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate for Redis glob patterns (``*``, ``?``, ``[abc]``, ``[^a]``, ``\\x``), run by RE2 (linear)."""
    if not patterns:
        return lambda _key: False
    parts = []
    for p in patterns:
        if len(p) > 1024:
            raise WarmConfigError(f"cache.warm.patterns: pattern longer than 1024 characters ({p[:40]!r}…)")
        parts.append(_glob_regex(p))
    rx = re2.compile("^(?:" + "|".join(parts) + ")$", options=_re2_options())
    return lambda key: rx.match(key) is not None


def _re2_options() -> Any:
    opts = re2.Options()
    opts.dot_nl = True
    return opts


def _glob_regex(p: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < len(p):
            i += 1
            out.append(re2.escape(p[i]))
        elif c == "[":
            j = p.find("]", i + 1)
            if j < 0:
                raise WarmConfigError(f"cache.warm.patterns: unclosed [ in {p!r}")
            body = p[i + 1 : j]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            chars = "".join("\\" + ch if ch in "\\]^[" else ch for ch in body)
            out.append(f"[{'^' if neg else ''}{chars}]")
            i = j
        else:
            out.append(re2.escape(c))
        i += 1
    return "".join(out)


def _order(client: CacheClient, keys: Iterable[str]) -> list[str]:
    """Distinct keys, by hash slot on a cluster (so each pipeline batch meets few nodes)."""
    uniq = list(dict.fromkeys(keys))
    if client.cluster:
        r = client.redis
        assert isinstance(r, RedisCluster)
        uniq.sort(key=r.keyslot)
    return uniq


def plan_warm(client: CacheClient, keys: Iterable[str], *, batch: int = 100) -> WarmPlan:
    """Which of ``keys`` are missing (to load) and which are present (left alone); reads only."""
    ordered = _order(client, keys)
    missing: list[str] = []
    present: list[str] = []
    for i in range(0, len(ordered), batch):
        chunk = ordered[i : i + batch]
        pipe = client.redis.pipeline(transaction=False)
        for k in chunk:
            pipe.exists(k)
        try:
            found = pipe.execute()
        except Exception as exc:
            raise client.error("EXISTS (warm plan)", exc) from None
        for k, f in zip(chunk, found, strict=True):
            (present if f else missing).append(k)
    return WarmPlan(missing, present)


def _encode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise TypeError("a bool is not a cache value")
    if isinstance(value, int | float):
        return repr(value).encode()
    raise TypeError(f"a {type(value).__name__} is not a cache value (bytes, str or a number)")


def warm_keys(
    client: CacheClient,
    keys: Iterable[str],
    loader: Loader,
    settings: CacheWarmSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WarmReport:
    """Load the missing ones of ``keys`` through ``loader`` and ``SET … NX`` them, within the caps.

    ``progress(done, total)`` is called after every batch. Returns the record; a loader failure
    sets ``error`` (naming the loader) and stops — what was written before stays and is counted."""
    t0 = clock()
    plan = plan_warm(client, keys, batch=settings.batch)
    report = WarmReport(
        requested=len(plan.missing) + len(plan.present), skipped_present=len(plan.present), loader=loader.spec
    )
    ops = TokenBucket(settings.ops_per_s, settings.batch, clock=clock, sleep=sleep)
    byt = TokenBucket(settings.bytes_per_s, max(settings.bytes_per_s / 10, 1.0), clock=clock, sleep=sleep)
    total = len(plan.missing)
    done = 0
    for i in range(0, total, settings.batch):
        chunk = plan.missing[i : i + settings.batch]
        try:
            loaded = loader.load(chunk)
        except Exception as exc:
            report.error = f"{LOADER_FIELD} {loader.spec!r} raised {type(exc).__name__}: {exc}".replace("\n", " ")[:500]
            break
        items: list[tuple[str, bytes, float | None]] = []
        for k in chunk:
            if k not in loaded:
                report.skipped_no_value += 1
                continue
            raw = loaded[k]
            value, ttl = raw if isinstance(raw, tuple) and len(raw) == 2 else (raw, None)
            try:
                data = _encode(value)
            except TypeError as exc:
                report.failed += 1
                report.failed_keys.append(k)
                report.error = report.error or f"{LOADER_FIELD} {loader.spec!r}: key {k!r}: {exc}"
                continue
            if len(data) > MAX_VALUE_BYTES:
                report.failed += 1
                report.failed_keys.append(k)
                continue
            items.append((k, data, float(ttl) if ttl else settings.default_ttl_s))
        if items:
            ops.take(len(items))
            byt.take(sum(len(d) for _, d, _ in items))
            pipe = client.redis.pipeline(transaction=False)
            for k, data, ttl in items:
                pipe.set(k, data, nx=True, px=int(ttl * 1000) if ttl else None)
            try:
                results = pipe.execute(raise_on_error=False)
            except Exception as exc:
                report.failed += len(items)
                report.failed_keys.extend(k for k, _, _ in items)
                report.error = client.redact(f"SET NX (warm): {type(exc).__name__}: {exc}".replace("\n", " "))
                break
            for (k, data, _), res in zip(items, results, strict=True):
                if isinstance(res, Exception):
                    report.failed += 1
                    report.failed_keys.append(k)
                elif res:
                    report.warmed += 1
                    report.bytes += len(data)
                else:  # written by live traffic since the plan: theirs wins
                    report.skipped_present += 1
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    report.failed_keys = report.failed_keys[:100]
    report.elapsed_s = clock() - t0
    return report

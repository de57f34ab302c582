"""Run every source at once under one deadline, and turn each outcome into samples.

Why one daemon thread per source rather than a ``ThreadPoolExecutor``: sources block on sockets
and drivers we do not control. A source that hangs must cost one tick of its own data, never the
whole collection, so the runner waits until the deadline, records the laggard as timed out and
returns without joining its thread (its late result is discarded). ``ThreadPoolExecutor`` with
``shutdown(wait=False)`` returns just as quickly, but its workers are joined at interpreter exit,
so one hung NVML or socket call would keep the flow-run process alive forever and, with
``concurrency_limit: 1``, block every later collection. Daemon threads die with the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import datetime

from tasks.config.settings import Settings
from tasks.lake.schema import Sample, now_utc
from tasks.redact import redact_url
from tasks.sources.base import LOGGER_PREFIX, Source, SourceError
from tasks.sources.gpu import GpuSource
from tasks.sources.prefect_runs import PrefectSource
from tasks.sources.redis_info import RedisSource

__all__ = ["CollectResult", "SourceFailure", "build_sources", "collect_all"]

log = logging.getLogger(f"{LOGGER_PREFIX}.runner")

SOURCE_UP = "cortex_perf_source_up"
SOURCE_DURATION = "cortex_perf_source_duration_seconds"
SOURCE_SAMPLES = "cortex_perf_source_samples"


@dataclass(frozen=True, slots=True)
class SourceFailure:
    """One source that did not deliver this tick; ``error`` is safe to log (secrets redacted)."""

    source: str
    error: str
    timed_out: bool = False


@dataclass(slots=True)
class CollectResult:
    """Everything one collection produced: samples (including the runner's own), failures, and the
    sources skipped with their reason (``Source.skip_reason``: not started, no samples)."""

    samples: list[Sample] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class _Outcome:
    samples: list[Sample]
    duration_s: float
    error: str | None = None


def _run_one(source: Source, now: datetime) -> _Outcome:
    t0 = time.perf_counter()
    try:
        samples = source.collect(now)
        if not isinstance(samples, list):
            samples = list(samples)
        return _Outcome(samples, time.perf_counter() - t0)
    except SourceError as exc:
        return _Outcome(exc.samples, time.perf_counter() - t0, redact_url(str(exc)) or type(exc).__name__)
    except Exception as exc:  # a source bug must not take the others down
        # Not a SourceError, so nobody redacted it: the message may quote a URL with credentials.
        msg = f"{type(exc).__name__}: {redact_url(str(exc))}" if str(exc) else type(exc).__name__
        return _Outcome([], time.perf_counter() - t0, msg)


def _start(source: Source, now: datetime) -> Future[_Outcome]:
    """Run ``source`` in a daemon thread of its own; the future completes when it returns."""
    fut: Future[_Outcome] = Future()

    def target() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(_run_one(source, now))
        except BaseException as exc:  # pragma: no cover - _run_one catches Exception already
            fut.set_exception(exc)

    threading.Thread(target=target, name=f"cortex-source-{source.name}", daemon=True).start()
    return fut


def collect_all(
    sources: Sequence[Source],
    timeout_s: float,
    now: datetime | None = None,
) -> CollectResult:
    """Collect from every source concurrently; return within about ``timeout_s`` whatever happens.

    Each source also yields ``cortex_perf_source_up``, ``cortex_perf_source_duration_seconds`` and
    ``cortex_perf_source_samples`` (label ``source``), stamped ``now``. Failures (errors and
    timeouts) are listed in the result for the caller to log once and record as ``source.failed``.
    """
    now = now or now_utc()
    result = CollectResult()
    if not sources:
        return result
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")

    running = []
    for s in sources:
        reason = s.skip_reason()
        if reason:
            result.skipped[s.name] = reason
        else:
            running.append(s)
    t0 = time.perf_counter()
    futures: dict[Future[_Outcome], Source] = {_start(s, now): s for s in running}
    wait(futures, timeout=timeout_s)  # never join a hung source: its thread is left behind
    waited = time.perf_counter() - t0

    for fut, source in futures.items():
        if fut.done() and not fut.cancelled():
            outcome = fut.result()
            timed_out = False
        else:
            fut.cancel()
            outcome = _Outcome([], waited, f"timed out after {timeout_s:g}s")
            timed_out = True
        up = 1.0 if outcome.error is None else 0.0
        if outcome.error is not None:
            result.failures.append(SourceFailure(source.name, outcome.error, timed_out))
        labels = {"source": source.name}
        result.samples.extend(outcome.samples)
        result.samples.append(Sample(SOURCE_UP, up, now, labels))
        result.samples.append(Sample(SOURCE_DURATION, outcome.duration_s, now, labels))
        result.samples.append(Sample(SOURCE_SAMPLES, float(len(outcome.samples)), now, labels))
        result.durations[source.name] = outcome.duration_s
    return result


def build_sources(settings: Settings) -> list[Source]:
    """The sources the configuration enables, in a stable order: host, gpu, redis, prometheus, prefect.

    Two sources are imported only when enabled, the rest at the top (their own heavy clients are
    lazy inside them): the host source pulls psutil (+66 ms) and the Prometheus source httpx and
    the exposition parser (+0.39 s), measured on top of this module (measured 2026-12-07).
    """
    cfg = settings.sources
    out: list[Source] = []
    if cfg.host.enabled:
        from tasks.sources.host import HostSource

        out.append(HostSource.from_settings(cfg.host))
    if cfg.gpu.enabled:
        out.append(GpuSource.from_settings(cfg.gpu))
    if cfg.redis.enabled:
        out.append(RedisSource.from_settings(cfg.redis))
    if cfg.prometheus:
        from tasks.sources.prometheus import PrometheusSource

        seen: dict[str, int] = {}
        for target in cfg.prometheus:
            src = PrometheusSource(target)
            n = seen.get(src.name, 0) + 1
            seen[src.name] = n
            if n > 1:  # two targets with one job name: keep both, distinguishable
                src.name = f"{src.name}#{n}"
            out.append(src)
    if cfg.prefect.enabled:
        out.append(PrefectSource.from_settings(cfg.prefect))
    return out

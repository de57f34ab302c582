"""Metric sources: where the lake's samples come from.

Public surface::

    from tasks.sources import build_sources, collect_all
    sources = build_sources(settings)            # host, gpu, redis, prometheus targets, prefect
    res = collect_all(sources, timeout_s=settings.collect.source_timeout_s)
    res.samples                                  # list[Sample], incl. cortex_perf_source_up{source}
    res.failures                                 # [SourceFailure(source, error, timed_out)]

Each source is a ``Source`` (``name``, ``collect(now) -> list[Sample]``) taking its client by
injection: ``PrometheusSource(target, client=/transport=)``, ``RedisSource(url,
client_factory=)``, ``GpuSource(nvml=)``, ``PrefectSource(client_factory=)``.
Source classes are resolved lazily (``__getattr__``) so that importing the package for ``Source`` or
``collect_all`` does not pay for the host (psutil, +66 ms) and Prometheus (httpx, +0.39 s) sources.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tasks.sources.base import Source, SourceError, sanitize_label_name, sanitize_metric_name
from tasks.sources.runner import CollectResult, SourceFailure, build_sources, collect_all

if TYPE_CHECKING:
    from tasks.sources.gpu import GpuSource
    from tasks.sources.host import HostSource
    from tasks.sources.prefect_runs import PrefectSource
    from tasks.sources.prometheus import PrometheusSource
    from tasks.sources.redis_info import RedisSource

__all__ = [
    "CollectResult",
    "GpuSource",
    "HostSource",
    "PrefectSource",
    "PrometheusSource",
    "RedisSource",
    "Source",
    "SourceError",
    "SourceFailure",
    "build_sources",
    "collect_all",
    "sanitize_label_name",
    "sanitize_metric_name",
]

_LAZY = {
    "GpuSource": "tasks.sources.gpu",
    "HostSource": "tasks.sources.host",
    "PrefectSource": "tasks.sources.prefect_runs",
    "PrometheusSource": "tasks.sources.prometheus",
    "RedisSource": "tasks.sources.redis_info",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tasks.sources' has no attribute {name!r}")

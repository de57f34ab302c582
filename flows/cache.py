"""The cache flow (every 5 minutes, and on a ``cortex.cache.miss`` event): one cache tick.

The tick (``tasks.caching.service.cache_tick``) reads every node, writes the recommendations,
looks for warming triggers in the lake (a node restarted or joined, a miss surge), retrains the
hot-key model and warms the predicted hot set when a trigger fired (``warm="auto"``) or when asked
(``warm="always"``: the deployment's event trigger passes it). The flow adds the stale-run guard, a
markdown artifact a person reads in the Prefect UI, and log lines for what needs attention.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, nothing_to_do, stale_run
from tasks.caching.client import CacheClient
from tasks.caching.service import CacheTick, WarmWhen, cache_tick

__all__ = ["ARTIFACT_KEY", "CacheSummary", "cache", "cache_stage"]

ARTIFACT_KEY = "cache-tick"
DISABLED_HINT = "set cache.enabled: true and cache.url (or sources.redis.url) in cortex-perf.yaml"


class CacheSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    now: str
    nodes: int
    down: int
    advice: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    miss_surge: dict[str, float] | None
    model: dict[str, Any]
    warm_reason: str | None
    mode: str
    keys: int
    warm_plan: dict[str, int]
    warm: dict[str, Any]
    seconds: float


@task(name="cache-tick", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def tick(rt: Runtime, now: datetime, warm: WarmWhen, mode: Literal["dry-run", "apply"] | None) -> CacheTick:
    """One tick at ``now``. Safe to retry: warming is an action whose id is fixed by the keys, the
    loader and the minute, so a retry in the same minute does not warm twice (SET NX besides)."""
    with CacheClient.from_settings(rt.settings) as client:
        return cache_tick(rt.settings, rt.lake, client, now, warm=warm, mode=mode)


@flow(name="cache", description="Redis stats, recommendations, hot-key model and predictive warming; dry-run default.")
def cache(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    warm: WarmWhen = "auto",
    mode: Literal["dry-run", "apply"] | None = None,
    max_lateness_s: float | None = None,
) -> CacheSummary:
    if (skipped := stale_run("cache", max_lateness_s)) is not None:
        return CacheSummary(**skipped)  # type: ignore[typeddict-item]
    return cache_stage(load(config_path, overrides), warm=warm, mode=mode)


def cache_stage(
    rt: Runtime, *, warm: WarmWhen = "auto", mode: Literal["dry-run", "apply"] | None = None
) -> CacheSummary:
    """The cache flow's work on a built runtime (the pipeline calls it with its own)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    if not rt.settings.cache.enabled:
        idle = nothing_to_do("cache", "cache.enabled is false", hint=DISABLED_HINT, artifact_key=ARTIFACT_KEY,
                             warn=False)  # fmt: skip
        return CacheSummary(**idle)  # type: ignore[typeddict-item]
    now = datetime.now(UTC).replace(microsecond=0)
    res = tick(rt, now, warm, mode)
    create_markdown_artifact(
        markdown=res.markdown(), key=ARTIFACT_KEY, description="Cache tick: nodes, advice, warming"
    )
    for n in res.stats.nodes:
        if not n.up:
            logger.error("cache node %s is down: %s", n.node, n.error)
    for a in res.advice:
        if a.severity != "info":
            logger.warning("cache %s: %s", a.severity, a.message)
    if res.outcome is not None and res.outcome.result.status == "failed":
        logger.error("cache warming failed: %s", res.outcome.result.error)
    summary = res.summary()
    logger.info("cache: %d node(s), %d down, %d finding(s), warm: %s", summary["nodes"], summary["down"],
                len(res.advice), res.warm_reason or "not triggered")  # fmt: skip
    return CacheSummary(flow="cache", **summary, seconds=round(time.perf_counter() - t0, 3))  # type: ignore[typeddict-item]


if __name__ == "__main__":
    cache()

"""The cache flow under Prefect's test harness: a real Redis, a tmp lake with access history and a
node restart; the artifact a person reads in the UI, and the disabled case saying why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from tasks.caching.access import ACCESS_METRIC
from tasks.lake import Lake, Sample

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _lake(overrides: list[str]) -> Lake:
    return Lake(next(o.split("=", 1)[1] for o in overrides if o.startswith("lake.root=")))


def values(keys: list[str]) -> dict[str, bytes]:
    """The loader the flow warms with (``module:function``)."""
    return {k: b"warm" for k in keys}


def _artifact(key: str, flow_run_id: object) -> str:
    """This run's artifact (other tests in the session leave artifacts under the same key)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    (mine,) = [a for a in arts if a.flow_run_id == flow_run_id]
    return str(mine.data)


def test_cache_flow_warms_after_a_restart_and_reports(lake_overrides: list[str], redis_url: str) -> None:
    from flows.cache import ARTIFACT_KEY, cache

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    samples = []
    for m in range(90, 0, -1):
        ts = now - timedelta(minutes=m)
        samples += [Sample(ACCESS_METRIC, 3.0, ts, {"key": f"flow:hot:{i}"}) for i in range(5)]
        uptime = 5000 + 60 * (90 - m) if m > 2 else 30.0  # restarted two minutes ago
        samples.append(Sample("redis_uptime_seconds", uptime, ts, {"redis": "flowtest", "node": "n:1"}))
    _lake(lake_overrides).write_samples(samples)
    r = redis.Redis.from_url(redis_url)
    r.delete(*[f"flow:hot:{i}" for i in range(5)])
    overrides = [*lake_overrides, "cache.enabled=true", f"cache.url={redis_url}", "cache.name=flowtest",
                 "cache.warm.top=5", f"cache.warm.loader={__name__}:values"]  # fmt: skip
    state = cache(overrides=overrides, mode="apply", return_state=True)
    summary = state.result()
    assert summary["warm_reason"] == "node n:1 restarted"
    assert summary["warm"]["status"] == "applied" and summary["warm"]["warmed"] == 5
    assert r.get("flow:hot:0") == b"warm"
    text = _artifact(ARTIFACT_KEY, state.state_details.flow_run_id)
    assert "node n:1 restarted" in text and "5 written" in text and "### Recommendations" in text
    r.delete(*[f"flow:hot:{i}" for i in range(5)])


def test_disabled_cache_flow_says_why(lake_overrides: list[str]) -> None:
    from flows.cache import cache

    summary = cache(overrides=lake_overrides)
    assert summary["skipped"] is True and summary["reason"] == "cache.enabled is false"

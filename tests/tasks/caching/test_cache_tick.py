"""One cache tick against a real Redis and a tmp lake: triggers, the trained model, warming in both modes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tasks.caching.access import ACCESS_METRIC
from tasks.caching.client import CacheClient
from tasks.caching.service import cache_tick, hot_keys, model_path, select_keys
from tasks.config import Settings, load_settings
from tasks.lake import Lake, Sample

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def values(keys: list[str]) -> dict[str, bytes]:
    """The tick's loader (``module:function``): a value for every key."""
    return {k: f"v:{k}".encode() for k in keys}


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.flushdb()
    r.close()


def settings_for(tmp_path: Path, redis_url: str, *extra: str) -> Settings:
    return load_settings(None, [f"lake.root={tmp_path / 'lake'}", f"data_dir={tmp_path / 'data'}",
                                f"state.path={tmp_path / 'state.duckdb'}", f"cache.url={redis_url}", "cache.name=c",
                                f"cache.warm.loader={__name__}:values", *extra])  # fmt: skip


def history(lake: Lake, *, restart: bool = False, surge: bool = False) -> None:
    """Two hours of reads: hot:0..9 read every minute, cold:0..99 once an hour; uptime per minute."""
    samples = []
    for m in range(120, 0, -1):
        ts = NOW - timedelta(minutes=m)
        for i in range(10):
            samples.append(Sample(ACCESS_METRIC, 5.0, ts, {"key": f"hot:{i}"}))
        if m % 60 == 0:
            samples += [Sample(ACCESS_METRIC, 1.0, ts, {"key": f"cold:{i}"}) for i in range(100)]
        up = 10_000 + 60 * (120 - m) if not (restart and m <= 3) else 60 * (3 - m)
        samples.append(Sample("redis_uptime_seconds", up, ts, {"redis": "c", "node": "n:1"}))
        misses = 60.0 * (120 - m) + (6000.0 * (5 - m) if surge and m <= 5 else 0.0)
        samples.append(Sample("redis_keyspace_misses_total", misses, ts + timedelta(seconds=1),
                              {"redis": "c", "node": "n:1"}))  # fmt: skip
    lake.write_samples(samples)


def test_quiet_tick_warms_nothing_but_trains_the_model(tmp_path: Path, redis_url: str, db: redis.Redis) -> None:
    s = settings_for(tmp_path, redis_url, "cache.warm.mode=apply")
    lake = Lake.from_settings(s)
    history(lake)
    with CacheClient.from_settings(s) as client:
        tick = cache_tick(s, lake, client, NOW)
    assert tick.warm_reason is None and tick.outcome is None and db.dbsize() == 0
    assert tick.model["trained"] is True and model_path(s).exists()
    assert len(tick.stats.nodes) == 1
    assert "not warmed" in tick.markdown()
    keys, model = hot_keys(s, lake, 10, NOW)
    assert model == "xgboost" and {k.key for k in keys} == {f"hot:{i}" for i in range(10)}


def test_a_restart_warms_the_hot_set_once(tmp_path: Path, redis_url: str, db: redis.Redis) -> None:
    s = settings_for(tmp_path, redis_url, "cache.warm.mode=apply", "cache.warm.top=10")
    lake = Lake.from_settings(s)
    history(lake, restart=True)
    with CacheClient.from_settings(s) as client:
        tick = cache_tick(s, lake, client, NOW)
        assert tick.warm_reason == "node n:1 restarted"
        assert tick.outcome is not None and tick.outcome.result.status == "applied"
        assert {k.decode() for k in db.keys("hot:*")} == {f"hot:{i}" for i in range(10)}
        assert db.get("hot:3") == b"v:hot:3"
        again = cache_tick(s, lake, client, NOW)  # the same minute: the same action, applied once
    assert again.outcome is not None and again.outcome.result.status == "skipped"
    warmed = lake.events(NOW - timedelta(hours=1), "cache.warmed")
    assert warmed.height == 1


def test_dry_run_mode_plans_and_writes_nothing(tmp_path: Path, redis_url: str, db: redis.Redis) -> None:
    s = settings_for(tmp_path, redis_url, "cache.warm.top=10")
    lake = Lake.from_settings(s)
    history(lake)
    db.set("hot:0", "already")
    with CacheClient.from_settings(s) as client:
        tick = cache_tick(s, lake, client, NOW, warm="always")
    assert tick.mode == "dry-run" and tick.plan is not None and tick.outcome is None
    assert len(tick.plan.missing) == 9 and tick.plan.present == ["hot:0"]
    assert db.dbsize() == 1
    assert "dry run" in tick.markdown()


def test_a_miss_surge_is_a_cache_miss_event_and_a_trigger(tmp_path: Path, redis_url: str, db: redis.Redis) -> None:
    s = settings_for(tmp_path, redis_url)
    lake = Lake.from_settings(s)
    history(lake, surge=True)
    with CacheClient.from_settings(s) as client:
        tick = cache_tick(s, lake, client, NOW, warm="never")
    assert tick.surge is not None and tick.warm_reason is None
    ev = lake.events(NOW - timedelta(hours=1), "cache.miss")
    assert ev.height == 1 and ev["resource"][0] == "cortex.cache.c"


def test_patterns_match_the_history_not_the_keyspace(tmp_path: Path, redis_url: str, db: redis.Redis) -> None:
    s = settings_for(tmp_path, redis_url)
    lake = Lake.from_settings(s)
    history(lake)
    db.set("cold:unread", "x")  # in Redis, never read: not a pattern match
    keys, source = select_keys(s, lake, NOW, patterns=["cold:1?"])
    assert sorted(keys) == [f"cold:1{i}" for i in range(10)] and source == ["patterns"]

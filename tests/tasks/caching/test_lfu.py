"""Hot keys from Redis's own LFU counters (OBJECT FREQ), against real servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from rediscluster import start_node

from tasks.caching.client import CacheClient, CacheError
from tasks.caching.lfu import lfu_hot_keys, lfu_policy
from tasks.caching.service import hot_keys
from tasks.config import load_settings
from tasks.lake import Lake
from tasks.lake.schema import now_utc


def test_object_freq_ranks_the_keys_read_most(tmp_path: Path) -> None:
    node = start_node(tmp_path, cluster=False, extra=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lfu"])
    try:
        r = node.client()
        for i in range(200):
            r.set(f"k:{i}", "v")
        for _ in range(300):
            for hot in ("k:7", "k:42", "k:99"):
                r.get(hot)
        with CacheClient(node.url) as client:
            assert lfu_policy(client) == "allkeys-lfu"
            top = lfu_hot_keys(client, 3)
            assert {k.key for k in top} == {"k:7", "k:42", "k:99"}
            assert lfu_hot_keys(client, 3, sample=10, batch=4)  # a sample answers too, bounded
            # with no access history in the lake, the service asks Redis
            s = load_settings(None, [f"lake.root={tmp_path / 'lake'}", f"data_dir={tmp_path / 'data'}"])
            keys, model = hot_keys(s, Lake.from_settings(s), 3, now_utc(), client=client)
            assert model == "lfu" and {k.key for k in keys} == {"k:7", "k:42", "k:99"}
    finally:
        node.stop()


def test_an_lru_policy_has_no_freq_to_read(redis_url: str) -> None:
    with CacheClient(redis_url) as client:
        assert lfu_policy(client) is None
        with pytest.raises(CacheError, match="LFU maxmemory-policy"):
            lfu_hot_keys(client, 5)

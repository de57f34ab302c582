"""Live stats of every node, against a real cluster with replicas and a real standalone server."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from rediscluster import LocalRedisCluster, start_node

from tasks.caching.client import CacheClient
from tasks.caching.stats import SLOTS, collect_stats


@pytest.mark.slow
def test_cluster_stats_cover_masters_and_replicas() -> None:
    with LocalRedisCluster(masters=3, replicas=1) as cluster:
        rc = RedisCluster.from_url(cluster.url)
        for i in range(600):
            rc.set(f"s{i}", i)
        for i in range(100):
            rc.get(f"s{i}")
            rc.get(f"absent{i}")
        with CacheClient(cluster.url, cluster=True) as client:
            stats = collect_stats(client)
        masters = stats.masters
        replicas = [n for n in stats.nodes if n.role == "replica"]
        assert len(masters) == 3 and len(replicas) == 3
        assert sum(m.slots for m in masters) == SLOTS
        assert sum(m.keys or 0 for m in masters) == 600
        assert sum(m.hits or 0 for m in masters) == 100 and sum(m.misses or 0 for m in masters) == 100
        assert {r.master for r in replicas} == {m.node for m in masters}
        assert all(r.link_up and r.replication_lag_bytes is not None for r in replicas)

        # a replica that dies is reported as down, not dropped
        victim = next(n for n in cluster.nodes if n.address == replicas[0].node)
        victim.stop(signal.SIGKILL)
        with CacheClient(cluster.url, cluster=True, connect_timeout_s=0.5, timeout_s=0.5) as client:
            after = collect_stats(client)
        down = next(n for n in after.nodes if n.node == victim.address)
        assert down.up is False and down.error
        assert len(after.nodes) == 6


def test_standalone_stats_memory_and_evictions(tmp_path: Path) -> None:
    node = start_node(tmp_path, cluster=False, extra=["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"])
    try:
        r = node.client()
        for i in range(5000):
            r.set(f"big{i}", "x" * 1000)
        with CacheClient(node.url) as client:
            stats = collect_stats(client)
        (n,) = stats.nodes
        assert n.role == "master" and n.maxmemory == 2 * 1024 * 1024
        assert n.evicted_keys and n.evicted_keys > 0
        assert n.memory_ratio is not None and n.memory_ratio > 0.8
        assert n.maxmemory_policy == "allkeys-lru"
    finally:
        node.stop()

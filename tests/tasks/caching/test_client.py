"""The cache client against a real standalone Redis and a real 3-master Redis Cluster."""

from __future__ import annotations

import pytest
import redis
from rediscluster import LocalRedisCluster

from tasks.caching.client import CacheClient, CacheError, NodeAddress, node_address
from tasks.config import load_settings


def test_standalone_reads_its_one_server(redis_url: str) -> None:
    with CacheClient(redis_url) as c:
        c.redis.flushdb()
        c.redis.set("client:a", "1")
        c.redis.set("client:b", "2")
        assert c.primaries() == [c.seed()]
        assert c.dbsize() == 2
        assert sorted(c.scan_keys("client:*")) == [b"client:a", b"client:b"]
        assert list(c.info()) == [str(c.seed())]
        c.redis.flushdb()


def test_cluster_wide_reads_cover_every_primary_not_one_node(redis_cluster: LocalRedisCluster) -> None:
    """redis-py's RedisCluster.dbsize() asks one node; ours sums every primary."""
    with CacheClient(redis_cluster.url, cluster=True) as c:
        for i in range(300):
            c.redis.set(f"k{i}", i)
        assert len(c.primaries()) == 3
        assert c.dbsize() == 300
        assert len(set(c.scan_keys())) == 300
        one_node = redis.Redis(host="127.0.0.1", port=redis_cluster.nodes[0].port).dbsize()
        assert 0 < one_node < 300
        assert set(c.info("keyspace")) == {n.address for n in redis_cluster.nodes}
        direct = c.node(redis_cluster.nodes[1].address)
        assert direct.ping()


def test_password_never_in_errors_or_repr() -> None:
    c = CacheClient("redis://:s3cr3t-pw@127.0.0.1:1/0", connect_timeout_s=0.2, timeout_s=0.2)
    assert "s3cr3t" not in repr(c)
    with pytest.raises(CacheError) as err:
        c.ping()
    assert "s3cr3t" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


def test_settings_fall_back_to_the_redis_source() -> None:
    s = load_settings(None, ["sources.redis.url=redis://10.0.0.9:7001/0", "sources.redis.cluster=true"])
    c = CacheClient.from_settings(s)
    assert c.cluster is True and c.seed() == NodeAddress("10.0.0.9", 7001)
    s = load_settings(None, ["cache.url=redis://10.0.0.8:6380/0", "cache.cluster=false"])
    c = CacheClient.from_settings(s)
    assert c.cluster is False and c.seed() == NodeAddress("10.0.0.8", 6380)


def test_bad_url_and_node_address_are_named() -> None:
    with pytest.raises(CacheError, match="cache.url"):
        CacheClient("http://x:6379")
    with pytest.raises(ValueError, match="not a node address"):
        node_address("localhost")
    assert node_address("[::1]:7000") == NodeAddress("::1", 7000)

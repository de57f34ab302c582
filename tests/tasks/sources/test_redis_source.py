"""RedisSource against a real Redis server (and a real one-node Redis Cluster when possible)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis.cluster import RedisCluster
from rediscluster import LocalRedisCluster

from tasks.sources import RedisSource, SourceError, collect_all
from tasks.sources.redis_info import info_to_samples, safe_redis_url

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def value(samples, metric: str, **labels: str) -> float:
    got = [s for s in samples if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (metric, labels, got)
    return got[0].value


def with_credentials(url: str, user: str, password: str) -> str:
    p = urlsplit(url)
    host = p.hostname or "127.0.0.1"
    return urlunsplit((p.scheme, f"{user}:{password}@{host}:{p.port or 6379}", p.path, p.query, ""))


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_info_counters_move_with_traffic(redis_url: str, r: redis.Redis, check_samples) -> None:
    key = f"cortex-test:{uuid.uuid4()}"
    r.set(key, "v")
    src = RedisSource(redis_url, redis_name="cache")
    before = check_samples(src.collect(NOW))
    for _ in range(3):
        assert r.get(key) == b"v"
    for _ in range(2):
        assert r.get(key + ":missing") is None
    after = check_samples(src.collect(NOW))
    r.delete(key)

    p = urlsplit(redis_url)
    node = f"{p.hostname}:{p.port}"
    assert all(s.labels["redis"] == "cache" and s.labels["node"] == node for s in after)
    assert value(after, "redis_keyspace_hits_total") - value(before, "redis_keyspace_hits_total") >= 3
    assert value(after, "redis_keyspace_misses_total") - value(before, "redis_keyspace_misses_total") >= 2
    assert value(after, "redis_commands_processed_total") > value(before, "redis_commands_processed_total")
    assert 0.0 < value(after, "redis_keyspace_hit_ratio") <= 1.0
    db = f"db{r.connection_pool.connection_kwargs.get('db', 0)}"
    assert value(after, "redis_db_keys", db=db) >= 1
    assert value(after, "redis_memory_used_bytes") > 0
    assert value(after, "redis_connected_clients") >= 1
    assert value(after, "redis_uptime_seconds") >= 0
    assert value(after, "redis_up") == 1.0
    assert value(after, "redis_instance_info", role="master") == 1.0
    for m in ("redis_instantaneous_ops_per_sec", "redis_memory_max_bytes", "redis_blocked_clients"):
        assert value(after, m) >= 0
    for m in ("redis_evicted_keys_total", "redis_expired_keys_total"):
        assert value(after, m) >= 0


@pytest.fixture
def acl_user(r: redis.Redis) -> Iterator[tuple[str, str]]:
    """A Redis ACL user with a password (left on the shared server only for this test)."""
    user, password = f"cortex_{uuid.uuid4().hex[:8]}", "Pw-" + uuid.uuid4().hex
    r.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    yield user, password
    r.execute_command("ACL", "DELUSER", user)


def test_password_never_leaks(redis_url: str, acl_user: tuple[str, str], caplog, check_samples) -> None:
    user, password = acl_user
    good = RedisSource(with_credentials(redis_url, user, password), redis_name="secure")
    samples = check_samples(good.collect(NOW))
    assert value(samples, "redis_up") == 1.0
    assert not [s for s in samples if any(password in v for v in s.labels.values())]
    assert password not in repr(good) and "***" in good.safe_url

    wrong = "Wrong-" + password
    bad = RedisSource(with_credentials(redis_url, user, wrong), redis_name="secure")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SourceError) as info:
            bad.collect(NOW)
        res = collect_all([bad], timeout_s=5, now=NOW)
    assert "Authentication" in str(info.value) or "WRONGPASS" in str(info.value)
    assert wrong not in str(info.value) and password not in str(info.value)
    assert value(info.value.samples, "redis_up") == 0.0
    assert len(res.failures) == 1 and wrong not in res.failures[0].error
    assert wrong not in caplog.text
    assert not [s for s in res.samples if any(wrong in v for v in s.labels.values())]


def test_unreachable_server_reports_node_without_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = RedisSource(f"redis://:Hunter2-secret@127.0.0.1:{port}/0", timeout_s=1)
    with pytest.raises(SourceError) as info:
        src.collect(NOW)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "Hunter2-secret" not in str(info.value)
    assert value(info.value.samples, "redis_up", node=f"127.0.0.1:{port}") == 0.0


def test_info_mapping_and_extra_fields_are_sanitised(check_samples) -> None:
    info = {
        "keyspace_hits": 0,
        "keyspace_misses": 0,
        "role": "slave",
        "db3": {"keys": 10, "expires": 2, "avg_ttl": 0},
        "mem_fragmentation_ratio": 1.25,
        "7d-hit.rate": "0.5",
        "not_a_number": "abc",
    }
    samples = check_samples(
        info_to_samples(info, {"redis": "r", "node": "n:1"}, NOW, ["7d-hit.rate", "not_a_number", "absent"])
    )
    assert value(samples, "redis_db_keys", db="db3") == 10
    assert value(samples, "redis_db_keys_expiring", db="db3") == 2
    assert value(samples, "redis_master") == 0.0
    assert value(samples, "redis_memory_fragmentation_ratio") == 1.25
    assert value(samples, "redis__7d_hit_rate") == 0.5
    assert not [s for s in samples if s.metric == "redis_keyspace_hit_ratio"]  # 0/0 is no ratio
    assert not [s for s in samples if "not_a_number" in s.metric or "absent" in s.metric]


def test_safe_redis_url() -> None:
    assert safe_redis_url("redis://u:p%40ss@h:1/0") == "redis://u:***@h:1/0"
    assert safe_redis_url("redis://h:1/0") == "redis://h:1/0"
    assert safe_redis_url("rediss://:pw@[::1]:6380") == "rediss://:***@[::1]:6380"


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free and valid too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 55000)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real one-node Redis Cluster (all 16384 slots on one node), started for this module."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server binary not available for the cluster test")
    workdir: Path = tmp_path_factory.mktemp("redis-cluster")
    port = _cluster_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"), "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        client = redis.Redis(host="127.0.0.1", port=port)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start (exit {proc.poll()})") from None
                time.sleep(0.05)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("one-node cluster did not become ready")
            time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_cluster_mode_reads_every_node(cluster_url: str, check_samples) -> None:
    port = urlsplit(cluster_url).port
    samples = check_samples(RedisSource(cluster_url, redis_name="c", cluster=True).collect(NOW))
    nodes = {s.labels["node"] for s in samples}
    assert nodes == {f"127.0.0.1:{port}"}
    assert value(samples, "redis_up") == 1.0
    assert value(samples, "redis_instance_info", redis_mode="cluster") == 1.0


@pytest.mark.slow
def test_cluster_with_replicas_exports_replication_and_slot_ranges(check_samples) -> None:
    """Every node (replicas too), each replica's lag on its master, slots and keys per slot range."""
    with LocalRedisCluster(masters=3, replicas=1) as cluster:
        rc = RedisCluster.from_url(cluster.url)
        for i in range(900):
            rc.set(f"r{i}", i)
        samples = check_samples(RedisSource(cluster.url, redis_name="c", cluster=True).collect(NOW))
    assert {s.labels["node"] for s in samples} == {n.address for n in cluster.nodes}
    slots = [s for s in samples if s.metric == "redis_cluster_node_slots"]
    assert sum(s.value for s in slots) == 16384 and len(slots) == 3
    ranges = [s for s in samples if s.metric == "redis_cluster_slot_range_keys"]
    assert sum(s.value for s in ranges) == 900
    assert {s.labels["slots"] for s in ranges} == {"0-5460", "5461-10921", "10922-16383"}
    assert len([s for s in samples if s.metric == "redis_connected_slave_lag_seconds"]) == 3
    assert len([s for s in samples if s.metric == "redis_connected_slave_lag_bytes"]) == 3
    links = [s for s in samples if s.metric == "redis_master_link_up"]
    assert len(links) == 3 and all(s.value == 1.0 for s in links)

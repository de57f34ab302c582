"""Recommendations from node stats: each rule fires on the case it is for and stays quiet otherwise."""

from __future__ import annotations

from redis.crc import key_slot

from tasks.caching.advice import advise
from tasks.caching.stats import CacheStats, NodeStats


def master(addr: str, slots: tuple[int, int] | None, **kw: object) -> NodeStats:
    ranges = [slots] if slots else []
    base: dict[str, object] = {"maxmemory": 100, "used_memory": 10, "maxmemory_policy": "allkeys-lru", "hits": 100,
                               "misses": 0, "evicted_keys": 0, "ops_per_s": 500.0}  # fmt: skip
    base.update(kw)
    n = NodeStats(addr, "master", slot_ranges=ranges, slots=sum(b - a + 1 for a, b in ranges))
    for k, v in base.items():
        setattr(n, k, v)
    return n


def even() -> list[NodeStats]:
    return [master("a:1", (0, 5460)), master("b:1", (5461, 10921)), master("c:1", (10922, 16383))]


def kinds(stats: CacheStats, **kw: object) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in advise(stats, **kw):  # type: ignore[arg-type]
        out.setdefault(a.kind, []).append(a.node)
    return out


def test_healthy_even_cluster_has_no_advice() -> None:
    assert kinds(CacheStats("x", True, even())) == {}


def test_memory_rules() -> None:
    nodes = even()
    nodes[0].used_memory = 95
    nodes[1].used_memory, nodes[1].maxmemory_policy = 92, "noeviction"
    nodes[2].maxmemory = 0
    got = kinds(CacheStats("x", True, nodes))
    assert got["memory-headroom"] == ["a:1"]
    assert got["memory-full-noeviction"] == ["b:1"]
    assert got["no-maxmemory"] == ["c:1"]
    # severity order: the write-failing one first
    assert advise(CacheStats("x", True, nodes))[0].kind == "memory-full-noeviction"


def test_eviction_pressure_needs_a_real_share_of_lookups() -> None:
    nodes = even()
    nodes[0].evicted_keys = 5  # 5 % of 100 lookups
    nodes[1].evicted_keys = 0
    assert kinds(CacheStats("x", True, nodes))["eviction-pressure"] == ["a:1"]


def test_slot_imbalance_idle_master_and_threshold() -> None:
    nodes = [master("a:1", (0, 8191)), master("b:1", (8192, 16383)), master("c:1", None)]
    got = kinds(CacheStats("x", True, nodes))
    assert got["idle-master"] == ["c:1"]
    assert got["slot-imbalance"] == ["a:1", "b:1"]
    # 1 % off an even share is inside redis-cli's 2 % threshold
    near = [master("a:1", (0, 5515)), master("b:1", (5516, 10921)), master("c:1", (10922, 16383))]
    assert "slot-imbalance" not in kinds(CacheStats("x", True, near))
    assert "slot-imbalance" in kinds(CacheStats("x", True, near), threshold_pct=0.5)


def test_idle_node_and_memory_imbalance() -> None:
    nodes = even()
    nodes[2].ops_per_s = 1.0
    nodes[0].used_memory = 60
    got = kinds(CacheStats("x", True, nodes))
    assert got["idle-node"] == ["c:1"]
    assert got["memory-imbalance"] == ["a:1"]


def test_replica_rules() -> None:
    nodes = even()
    r1 = NodeStats("r:1", "replica", master="a:1", link_up=False)
    r2 = NodeStats("r:2", "replica", master="b:1", link_up=True, replication_lag_bytes=5 * 1024 * 1024)
    got = kinds(CacheStats("x", True, [*nodes, r1, r2]))
    assert got["replica-link-down"] == ["r:1"]
    assert got["replica-lag"] == ["r:2"]
    assert got["no-replica"] == ["c:1"]


def test_hot_slot_names_its_owner() -> None:
    hot = [(b"{user:42}:profile", 50.0), (b"{user:42}:cart", 30.0)] + [(f"k{i}".encode(), 1.0) for i in range(40)]
    got = advise(CacheStats("x", True, even()), hot_keys=hot)
    (finding,) = [a for a in got if a.kind == "hot-slot"]
    slot = key_slot(b"{user:42}:profile")
    owner = next(n.node for n in even() for a, b in n.slot_ranges if a <= slot <= b)
    assert finding.node == owner and finding.numbers["slot"] == slot
    # a standalone server has no slots to split
    assert not [a for a in advise(CacheStats("x", False, even()[:1]), hot_keys=hot) if a.kind == "hot-slot"]


def test_down_node_is_critical() -> None:
    nodes = even()
    nodes[1].up, nodes[1].error = False, "Connection refused"
    first = advise(CacheStats("x", True, nodes))[0]
    assert first.kind == "node-down" and first.severity == "critical" and "Connection refused" in first.message

"""Cluster operations against a real 3-master Redis Cluster on loopback, keys checked before and after."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from rediscluster import LocalRedisCluster

from tasks.caching.client import CacheClient, CacheError
from tasks.caching.cluster_check import check_cluster
from tasks.caching.cluster_migrate import move_slots
from tasks.caching.cluster_ops import ClusterManager
from tasks.caching.cluster_plan import SlotMove
from tasks.caching.topology import SLOTS
from tasks.config.caching import CacheClusterOpsSettings

N_KEYS = 2000


TAGGED = 25  # keys in one slot (a hashtag): a slot whose move takes several MIGRATE batches


def _names(n: int) -> list[str]:
    return [f"key:{i}" for i in range(n)] + [f"{{tag}}:{i}" for i in range(TAGGED)]


def _fill(c: CacheClient, n: int = N_KEYS) -> None:
    pipe = c.redis.pipeline()
    for k in _names(n):
        pipe.set(k, f"value-{k}")
    pipe.execute()


def _assert_keys(c: CacheClient, n: int = N_KEYS) -> None:
    assert c.dbsize() == n + TAGGED
    names = _names(n)
    assert [c.redis.get(k) for k in names] == [f"value-{k}".encode() for k in names]


def _manager(c: CacheClient) -> ClusterManager:
    return ClusterManager(c, CacheClusterOpsSettings(node_ready_timeout_s=20))


@pytest.mark.slow
def test_add_master_rebalance_then_drain_and_remove(redis_cluster: LocalRedisCluster) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c)
        m = _manager(c)
        assert check_cluster(c).ok
        spare = redis_cluster.spare()
        add = m.plan_add_node(spare.address)
        m.execute(add)
        assert m.observe(add) == add.expect
        # an empty master takes part only with use_empty_masters (redis-cli's rule)
        assert m.plan_rebalance().moves == []
        plan = m.plan_rebalance(use_empty_masters=True)
        assert plan.moves and sum(plan.keys.values()) > 0
        assert {mv.target for mv in plan.moves} == {m.topology().find(spare.address).id}  # type: ignore[union-attr]
        stats = m.execute(plan)
        assert stats["slots_moved"] == len(plan.moves)
        counts = [len(n.slots) for n in m.topology().masters]
        assert len(counts) == 4 and sum(counts) == SLOTS
        share = SLOTS / 4
        assert all(abs(100 - 100 * share / k) <= 2.0 for k in counts)
        c.close()
        _assert_keys(c)
        assert check_cluster(c).ok
        # drain + remove: its slots spread evenly over the three others, then it is forgotten
        remove = m.plan_remove_node(spare.address)
        assert {mv.source for mv in remove.moves} == {m.topology().find(spare.address).id}  # type: ignore[union-attr]
        m.execute(remove)
        assert m.observe(remove) == remove.expect
        counts = sorted(len(n.slots) for n in m.topology().masters)
        assert len(counts) == 3 and counts[-1] - counts[0] <= 1
        with spare.client() as sc:
            assert sc.execute_command("CLUSTER", "NODES").count(b"\n") <= 1  # RESET SOFT: knows only itself
        c.close()
        _assert_keys(c)
        assert check_cluster(c).ok


@pytest.mark.slow
def test_reshard_moves_exactly_n_slots_and_keeps_keys(redis_cluster: LocalRedisCluster) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c)
        m = _manager(c)
        target = redis_cluster.nodes[2].address
        before = len(m.topology().find(target).slots)  # type: ignore[union-attr]
        op = m.plan_reshard(300, target, [redis_cluster.nodes[0].address])
        assert len(op.moves) == 300
        m.execute(op)
        assert len(m.topology().find(target).slots) == before + 300  # type: ignore[union-attr]
        c.close()
        _assert_keys(c)
        assert check_cluster(c).ok


def test_check_on_a_healthy_cluster_finds_nothing(redis_cluster: LocalRedisCluster) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        report = check_cluster(c)
        assert report.ok, report.problems
        assert sum(r["slots"] for r in report.nodes()) == SLOTS
        assert _manager(c).plan_rebalance().moves == []  # 5461/5461/5462: within 2 %


def test_open_slot_found_and_fixed_with_every_key_readable(redis_cluster: LocalRedisCluster) -> None:
    """The first half of a move by hand (IMPORTING, MIGRATING, some keys), as a killed rebalance leaves it."""
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c)
        topo = _manager(c).topology()
        slot = c.redis.keyslot("{tag}")
        src = next(n for n in topo.masters if slot in n.slots)
        dst = next(n for n in topo.masters if n.id != src.id)
        keys = c.node(src.address).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        c.node(dst.address).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.id)
        c.node(src.address).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id)
        c.node(src.address).execute_command("MIGRATE", dst.address.host, dst.address.port, "", 0, 5000, "KEYS", keys[0])
        report = check_cluster(c)
        assert {p.kind for p in report.problems} == {"open"}
        assert report.open_slots() == [slot]
        m = _manager(c)
        fix = m.plan_fix()
        assert [(s.slot, s.action, s.owner) for s in fix.fix_steps] == [(slot, "finish", dst.addr)]
        m.execute(fix)
        assert m.observe(fix) == fix.expect
        assert check_cluster(c).ok
        assert int(c.node(dst.address).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == len(keys)
        c.close()
        _assert_keys(c)


def test_importing_only_and_uncovered_slots_are_fixed(redis_cluster: LocalRedisCluster) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c)
        topo = _manager(c).topology()
        a, b = topo.masters[0], topo.masters[1]
        opened = min(a.slots)
        c.node(b.address).execute_command("CLUSTER", "SETSLOT", opened, "IMPORTING", a.id)  # killed right after
        conn_b = c.node(b.address)
        empty = next(s for s in sorted(b.slots) if not int(conn_b.execute_command("CLUSTER", "COUNTKEYSINSLOT", s)))
        for n in topo.masters:  # an uncovered slot, in every node's view
            c.node(n.address).execute_command("CLUSTER", "DELSLOTS", empty)
        report = check_cluster(c)
        assert opened in report.open_slots()
        assert empty in report.uncovered_slots()
        m = _manager(c)
        fix = m.plan_fix()
        actions = {s.slot: (s.action, s.owner) for s in fix.fix_steps}
        assert actions[opened] == ("close", a.addr)
        fewest = min(m.topology().masters, key=lambda n: (len(n.slots), n.address))
        assert actions[empty] == ("assign", fewest.addr)  # no keys anywhere: the master with the fewest slots
        m.execute(fix)
        report = check_cluster(c)
        assert report.ok, report.problems
        c.close()
        _assert_keys(c)


@pytest.mark.slow
def test_failover_promotes_the_replica() -> None:
    with LocalRedisCluster(masters=3, replicas=1) as cluster, CacheClient(cluster.url, cluster=True) as c:
        _fill(c, 500)
        m = _manager(c)
        replica = next(n for n in m.topology().nodes if n.is_replica)
        op = m.plan_failover(replica.addr)
        m.execute(op)
        assert m.observe(op) == op.expect
        c.close()
        _assert_keys(c, 500)


def _error(fn: Callable[[], object]) -> str:
    with pytest.raises(CacheError) as err:
        fn()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_input_is_one_line_and_changes_nothing(redis_cluster: LocalRedisCluster, redis_url: str) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c, 100)
        m = _manager(c)
        before = m.topology().fingerprint()
        assert "'127.0.0.1:1' is not a member" in _error(lambda: m.plan_remove_node("127.0.0.1:1"))
        assert "not a member" in _error(lambda: m.plan_rebalance({"127.0.0.1:2": 2.0}))
        assert "already a member" in _error(lambda: m.plan_add_node(redis_cluster.nodes[1].address))
        spare = redis_cluster.spare()
        with spare.client() as sc:  # a node with data (it must serve the key's slot to take a write)
            sc.config_set("cluster-require-full-coverage", "no")
            sc.execute_command("CLUSTER", "ADDSLOTS", c.redis.keyslot("x"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    sc.set("x", "1")
                    break
                except redis.exceptions.ClusterDownError:
                    time.sleep(0.05)
        assert "not empty (1 keys)" in _error(lambda: m.plan_add_node(spare.address))
        standalone = redis_url.removeprefix("redis://").split("/")[0]
        assert "not in cluster mode" in _error(lambda: m.plan_add_node(standalone))
        assert "is not a replica" in _error(lambda: m.plan_failover(redis_cluster.nodes[0].address))
        assert "--slots must be between 1 and" in _error(lambda: m.plan_reshard(0, redis_cluster.nodes[0].address))
        assert m.topology().fingerprint() == before
        _assert_keys(c, 100)
    with CacheClient(redis_url) as s:
        assert "standalone Redis" in _error(lambda: ClusterManager(s).plan_rebalance())


@pytest.mark.slow
def test_add_replica_then_remove_its_master_repoints_it(redis_cluster: LocalRedisCluster) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c, 200)
        m = _manager(c)
        master, replica = redis_cluster.spare(), redis_cluster.spare()
        m.execute(m.plan_add_node(master.address))
        add = m.plan_add_node(replica.address, master=master.address)
        assert add.expect == {"node": replica.address, "member": True, "role": "replica", "master": master.address}
        m.execute(add)
        assert m.observe(add) == add.expect
        remove = m.plan_remove_node(master.address)
        assert remove.moves == [] and any("re-point replica" in s for s in remove.steps)
        m.execute(remove)
        assert m.observe(remove)["member"] is False
        topo = m.topology()
        rep = topo.find(replica.address)
        assert rep is not None and rep.is_replica
        assert topo.by_id(rep.master_id or "") in topo.masters  # now replicating one of the three
        assert check_cluster(c).ok
        c.close()
        _assert_keys(c, 200)


def test_busy_key_on_the_target_stops_the_move_and_fix_replaces_it(redis_cluster: LocalRedisCluster) -> None:
    """MIGRATE's BUSYKEY: a plain move stops (naming fix), fix moves with REPLACE; the source's copy wins."""
    with CacheClient(redis_cluster.url, cluster=True) as c:
        _fill(c)
        topo = _manager(c).topology()
        slot = c.redis.keyslot("{tag}")
        src = next(n for n in topo.masters if slot in n.slots)
        dst = next(n for n in topo.masters if n.id != src.id)
        c.node(dst.address).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.id)
        pipe = c.node(dst.address).pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.execute_command("SET", "{tag}:3", "stale copy on the target")
        pipe.execute()
        with pytest.raises(CacheError, match="BUSYKEY.*cache cluster fix"):
            move_slots(c, topo, [SlotMove(slot, src.id, dst.id)], pipeline=10)
        assert check_cluster(c).open_slots() == [slot]
        m = _manager(c)
        m.execute(m.plan_fix())
        assert check_cluster(c).ok
        c.close()
        _assert_keys(c)  # "{tag}:3" holds the source's value again

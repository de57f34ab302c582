"""Cluster operations as actions: applied once per plan, dry run touches nothing, failures recorded."""

from __future__ import annotations

from pathlib import Path

from rediscluster import LocalRedisCluster

from tasks.actuators import ActionLedger, actuator_class
from tasks.caching.client import CacheClient
from tasks.caching.cluster_actuator import RedisClusterActuator, run_cluster_op
from tasks.caching.cluster_ops import ClusterManager
from tasks.lake import Lake


def test_applied_once_recorded_and_dry_run_changes_nothing(redis_cluster: LocalRedisCluster, tmp_path: Path) -> None:
    assert actuator_class("redis_cluster") is RedisClusterActuator  # the entry point in pyproject.toml
    ledger = ActionLedger(str(tmp_path / "state.duckdb"))
    lake = Lake(str(tmp_path / "lake"))
    with CacheClient(redis_cluster.url, cluster=True) as c:
        for i in range(200):
            c.redis.set(f"k{i}", i)
        m = ClusterManager(c)
        target = redis_cluster.nodes[1].address
        op = m.plan_reshard(10, target)
        before = m.topology().fingerprint()
        dry = run_cluster_op(m, op, ledger=ledger, lake=lake, dry_run=True)
        assert dry.status == "dry-run" and m.topology().fingerprint() == before
        assert ledger.history() == []
        done = run_cluster_op(m, op, ledger=ledger, lake=lake, dry_run=False)
        assert done.status == "applied", done.error
        assert done.observed == op.expect and done.detail["slots_moved"] == 10
        again = run_cluster_op(m, op, ledger=ledger, lake=lake, dry_run=False)
        assert again.status == "skipped" and again.detail["reason"] == "already applied"
        # a stale plan (the cluster moved on) fails, is recorded, and changes nothing
        stale = m.plan_reshard(5, target)
        run_cluster_op(m, m.plan_reshard(5, redis_cluster.nodes[2].address), ledger=ledger, dry_run=False)
        after = m.topology().fingerprint()
        failed = run_cluster_op(m, stale, ledger=ledger, lake=lake, dry_run=False)
        assert failed.status == "failed" and "changed since the plan" in (failed.error or "")
        assert m.topology().fingerprint() == after
        names = lake.events()["name"].to_list()
        assert names == ["action.applied", "action.failed"]
        assert [c.redis.get(f"k{i}") for i in range(200)] == [str(i).encode() for i in range(200)]

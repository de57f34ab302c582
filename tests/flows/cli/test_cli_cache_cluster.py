"""``cortex-perf cache cluster …`` against a real 3-master Redis Cluster (and a standalone Redis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rediscluster import LocalRedisCluster
from typer.testing import CliRunner

from flows.cli import app
from tasks.actuators import ActionLedger
from tasks.caching.client import CacheClient
from tasks.caching.cluster_check import check_cluster
from tasks.lake import Lake

runner = CliRunner()


def _args(url: str, tmp_path: Path, *cmd: str) -> list[str]:
    sets = [f"cache.url={url}", "cache.cluster=true", f"state.path={tmp_path / 'state.duckdb'}",
            f"lake.root={tmp_path / 'lake'}"]  # fmt: skip
    return [a for s in sets for a in ("--set", s)] + ["cache", "cluster", *cmd]


def _fill(url: str, n: int = 300) -> None:
    with CacheClient(url, cluster=True) as c:
        for i in range(n):
            c.redis.set(f"k{i}", i)


def _all_there(url: str, n: int = 300) -> bool:
    with CacheClient(url, cluster=True) as c:
        return [c.redis.get(f"k{i}") for i in range(n)] == [str(i).encode() for i in range(n)]


def test_check_healthy_then_dry_run_changes_nothing(redis_cluster: LocalRedisCluster, tmp_path: Path) -> None:
    url = redis_cluster.url
    _fill(url)
    r = runner.invoke(app, _args(url, tmp_path, "check", "--json"))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["ok"] and sum(n["keys"] for n in out["nodes"]) == 300
    spare = redis_cluster.spare()
    r = runner.invoke(app, _args(url, tmp_path, "add-node", spare.address))  # dry run by default
    assert r.exit_code == 0, r.output
    assert "CLUSTER MEET" in r.stdout and "nothing changed" in r.stdout
    with CacheClient(url, cluster=True) as c:
        assert len(check_cluster(c).topology.nodes) == 3
    target = redis_cluster.nodes[0].address
    r = runner.invoke(app, _args(url, tmp_path, "reshard", "--slots", "100", "--to", target, "--dry-run", "--json"))
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["status"] == "dry-run" and plan["slots_moving"] == 100
    assert {m["to"] for m in plan["moves"]} == {target}
    with CacheClient(url, cluster=True) as c:
        assert len(c.node(target).execute_command("CLUSTER", "NODES").splitlines()) == 3
        assert check_cluster(c).ok


@pytest.mark.slow
def test_add_rebalance_remove_applied_and_recorded(redis_cluster: LocalRedisCluster, tmp_path: Path) -> None:
    url = redis_cluster.url
    _fill(url)
    spare = redis_cluster.spare()
    r = runner.invoke(app, _args(url, tmp_path, "add-node", spare.address, "--apply", "--json"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "applied"
    r = runner.invoke(app, _args(url, tmp_path, "rebalance", "--use-empty-masters", "--apply", "--json"))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "applied" and out["observed"] == out["expect"]
    assert out["expect"]["slots"][spare.address] == 4096
    assert _all_there(url)
    r = runner.invoke(app, _args(url, tmp_path, "remove-node", spare.address, "--apply"))
    assert r.exit_code == 0, r.output
    assert "applied" in r.stdout
    assert _all_there(url)
    r = runner.invoke(app, _args(url, tmp_path, "check"))
    assert r.exit_code == 0 and "OK" in r.stdout
    # every applied operation is an action.applied event on cortex.cache.default in the lake
    events = Lake(str(tmp_path / "lake")).events(name="action.applied")
    assert events["resource"].to_list() == ["cortex.cache.default"] * 3
    ops = [json.loads(p)["detail"] for p in events["payload"]]
    assert ops[1]["slots_moved"] == 4096 and ops[1]["keys_moved"] > 0
    # the same decision on the same cluster is applied once: the ledger holds each action
    ledger = ActionLedger(str(tmp_path / "state.duckdb"))
    assert [row.status for row in ledger.history("default")] == ["applied"] * 3


def test_bad_input_is_one_line_exit_2(redis_cluster: LocalRedisCluster, redis_url: str, tmp_path: Path) -> None:
    url = redis_cluster.url
    cases = [
        (["remove-node", "127.0.0.1:1"], "is not a member"),
        (["rebalance", "--weight", "oops"], "--weight 'oops'"),
        (["rebalance", "--weight", "127.0.0.1:1=2"], "is not a member"),
        (["add-node", redis_url.removeprefix("redis://").split("/")[0]], "not in cluster mode"),
        (["add-node", "not-an-address"], "not a node address"),
        (["failover", redis_cluster.nodes[0].address], "is not a replica"),
    ]
    for cmd, message in cases:
        r = runner.invoke(app, _args(url, tmp_path, *cmd, "--apply"))
        assert r.exit_code == 2, (cmd, r.output)
        assert message in r.output and r.output.count("error:") == 1, (cmd, r.output)
    r = runner.invoke(app, _args(redis_url, tmp_path, "check"))
    assert r.exit_code == 2 and "standalone Redis" in r.output
    with CacheClient(url, cluster=True) as c:
        assert check_cluster(c).ok and len(check_cluster(c).topology.nodes) == 3


def test_every_command_has_help() -> None:
    for cmd in ["check", "add-node", "remove-node", "rebalance", "reshard", "fix", "failover"]:
        r = runner.invoke(app, ["cache", "cluster", cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output, cmd

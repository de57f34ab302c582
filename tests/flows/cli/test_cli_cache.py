"""``cortex-perf cache …`` against a real Redis (standalone and a 3-master cluster)."""

from __future__ import annotations

import json

from rediscluster import LocalRedisCluster
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_ping_lists_every_primary_of_a_cluster(redis_cluster: LocalRedisCluster) -> None:
    r = runner.invoke(app, ["--set", f"cache.url={redis_cluster.url}", "--set", "cache.cluster=true", "cache", "ping",
                            "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert sorted(out["primaries"]) == sorted(n.address for n in redis_cluster.nodes)


def test_ping_down_server_is_one_line_without_the_password() -> None:
    r = runner.invoke(app, ["--set", "cache.url=redis://:hunter2@127.0.0.1:1/0", "cache", "ping"])
    assert r.exit_code == 2
    assert "hunter2" not in r.output
    assert "PING 127.0.0.1:1" in r.output


def test_stats_and_advise_on_a_cluster(redis_cluster: LocalRedisCluster) -> None:
    base = ["--set", f"cache.url={redis_cluster.url}", "--set", "cache.cluster=true", "cache"]
    r = runner.invoke(app, [*base, "stats", "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["cluster"] is True and len(stats["nodes"]) == 3
    assert sum(n["slots"] for n in stats["nodes"]) == 16384
    r = runner.invoke(app, [*base, "stats"])
    assert r.exit_code == 0 and redis_cluster.nodes[0].address in r.stdout
    r = runner.invoke(app, [*base, "advise", "--json"])
    assert r.exit_code == 0, r.output
    assert [a["kind"] for a in json.loads(r.stdout)] == ["no-maxmemory"]  # the fixture sets no maxmemory

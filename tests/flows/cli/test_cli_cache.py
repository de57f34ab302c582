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

"""``cortex-perf cache …`` against a real Redis (standalone and a 3-master cluster)."""

from __future__ import annotations

import json
import time
from pathlib import Path

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


def test_import_log_feeds_the_hot_keys(tmp_path: Path) -> None:
    """A timestamped access log becomes cache_access samples per key and minute; `cache hot` ranks them."""
    now = int(time.time()) // 60 * 60
    lines = []
    for m in range(180, 0, -1):
        t = now - 60 * m
        lines += [f"{t + i} item:{i % 3}" for i in range(30)]  # item:0..2 read 10×/min
        if m % 30 == 0:
            lines.append(f"{t} rare")
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    base = ["--set", f"lake.root={tmp_path / 'lake'}", "--set", f"data_dir={tmp_path / 'data'}", "cache"]
    r = runner.invoke(app, [*base, "import-log", str(log), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["keys"] == 4 and out["written"] == out["samples"] == 3 * 180 + 6
    r = runner.invoke(app, [*base, "hot", "--top", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert {k["key"] for k in json.loads(r.stdout)["keys"]} == {"item:0", "item:1", "item:2"}


def test_import_log_without_timestamps_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "keys.log"
    log.write_text("a\nb\n")
    r = runner.invoke(app, ["--set", f"lake.root={tmp_path / 'lake'}", "cache", "import-log", str(log)])
    assert r.exit_code == 2 and "no timestamps" in r.output
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))

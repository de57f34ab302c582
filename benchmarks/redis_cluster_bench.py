"""Cluster operations under load: ours vs ``redis-cli --cluster``, on the same cluster set-up, same run.

Twice, on a fresh real 3-master Redis Cluster on loopback each time (``tests/rediscluster.py``:
``redis-server`` processes, ``cluster-node-timeout 1000``), with N keys (default 20,000) and a
client thread reading and writing them through redis-py's ``RedisCluster`` the whole time:

1. **ours**: add a 4th master (``ClusterManager.plan_add_node``), rebalance with empty masters
   (timed: plan + run), then remove it (drain + forget + reset; timed);
2. **redis-cli**: ``redis-cli --cluster add-node``, wait for the new node's ``cluster_state:ok``,
   ``redis-cli --cluster rebalance --cluster-use-empty-masters`` (timed), then
   ``rebalance --cluster-weight <id>=0`` + ``del-node`` (timed).

After each, every key is read back and compared with the last value the load wrote (a write that
raised counts as either value). ``client_errors``: exceptions that reached the load thread — redis-py
already retries MOVED / ASK / TRYAGAIN, so anything here is an error a user would see.

    uv run python benchmarks/redis_cluster_bench.py            # tables of figures
    uv run python benchmarks/redis_cluster_bench.py --json     # one JSON object (last line)
    options: --keys N (20000), --load-ops OPS (client ops/s, default 2000), --slots-per-round N

``--json`` prints ``{"keys_lost", "client_errors", "ours_rebalance_s", "redis_cli_rebalance_s"}``
(ours) plus ``ours_drain_s``, ``redis_cli_drain_s``, ``redis_cli_keys_lost``,
``redis_cli_client_errors``, ``keys``, ``slots_moved``, ``load_ops``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):  # run as a script from anywhere: `tasks` and the cluster launcher
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from redis.cluster import RedisCluster  # noqa: E402
from rediscluster import LocalRedisCluster, RedisNode, wait_cluster_ok  # noqa: E402

from tasks.caching.client import CacheClient  # noqa: E402
from tasks.caching.cluster_ops import ClusterManager  # noqa: E402
from tasks.config.caching import CacheClusterOpsSettings  # noqa: E402


@dataclass
class Load:
    """A client thread reading and writing the keys at about ``ops_per_s`` until stopped."""

    url: str
    keys: int
    ops_per_s: float
    expected: dict[int, set[bytes]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    ops: int = 0
    phase: str = "load"
    tracebacks: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(7)
        client = RedisCluster.from_url(self.url, socket_timeout=10)
        period = 1.0 / self.ops_per_s
        next_at = time.monotonic()
        n = 0
        while not self._stop.is_set():
            i = rng.randrange(self.keys)
            try:
                if rng.random() < 0.5:
                    client.get(f"key:{i}")
                else:
                    n += 1
                    value = f"w{n}".encode()
                    before = self.expected[i]
                    self.expected[i] = before | {value}  # either value, until the write is confirmed
                    client.set(f"key:{i}", value)
                    self.expected[i] = {value}
            except Exception as exc:  # every error a user would see (redis-py retried MOVED/ASK/TRYAGAIN)
                self.errors[f"{self.phase}: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                self.tracebacks.append(traceback.format_exc(limit=-4))
            self.ops += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)


def fill(url: str, keys: int) -> dict[int, set[bytes]]:
    client = RedisCluster.from_url(url)
    pipe = client.pipeline()
    for i in range(keys):
        pipe.set(f"key:{i}", f"v{i}")
    pipe.execute()
    client.close()
    return {i: {f"v{i}".encode()} for i in range(keys)}


def verify(url: str, load: Load) -> tuple[int, int]:
    """(keys missing, keys with a value the load never wrote)."""
    client = RedisCluster.from_url(url)
    lost = wrong = 0
    names = [f"key:{i}" for i in range(load.keys)]
    for lo in range(0, len(names), 1000):
        values = client.mget_nonatomic(names[lo : lo + 1000])
        for j, v in enumerate(values):
            if v is None:
                lost += 1
            elif v not in load.expected[lo + j]:
                wrong += 1
    client.close()
    return lost, wrong


def ours(keys: int, ops_per_s: float, slots_per_round: int) -> dict[str, Any]:
    with LocalRedisCluster(masters=3) as cluster:
        load = Load(cluster.url, keys, ops_per_s)
        load.expected = fill(cluster.url, keys)
        load.start()
        with CacheClient(cluster.url, cluster=True) as client:
            m = ClusterManager(client, CacheClusterOpsSettings(slots_per_round=slots_per_round))
            spare = cluster.spare()
            load.phase = "add-node"
            m.execute(m.plan_add_node(spare.address))
            load.phase = "rebalance"
            t0 = time.monotonic()
            plan = m.plan_rebalance(use_empty_masters=True)
            stats = m.execute(plan)
            rebalance_s = time.monotonic() - t0
            t0 = time.monotonic()
            load.phase = "remove-node"
            m.execute(m.plan_remove_node(spare.address))
            drain_s = time.monotonic() - t0
        load.stop()
        lost, wrong = verify(cluster.url, load)
        for tb in load.tracebacks[:3]:
            print(tb, file=sys.stderr)
    return {"rebalance_s": rebalance_s, "drain_s": drain_s, "slots_moved": stats["slots_moved"],
            "keys_moved": stats["keys_moved"], "lost": lost, "wrong": wrong, "errors": dict(load.errors),
            "load_ops": load.ops}  # fmt: skip


def _cli(*args: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(["redis-cli", "--cluster", *args], capture_output=True, text=True, input="yes\n")
    if proc.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster {' '.join(args)} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return time.monotonic() - t0


def redis_cli(keys: int, ops_per_s: float) -> dict[str, Any]:
    with LocalRedisCluster(masters=3) as cluster:
        load = Load(cluster.url, keys, ops_per_s)
        load.expected = fill(cluster.url, keys)
        load.start()
        spare: RedisNode = cluster.spare()
        seed = cluster.nodes[0].address
        load.phase = "add-node"
        _cli("add-node", spare.address, seed)
        wait_cluster_ok([*cluster.nodes, spare])  # the new node's own cluster_state:ok (CONVENTIONS.md 11)
        load.phase = "rebalance"
        rebalance_s = _cli("rebalance", seed, "--cluster-use-empty-masters")
        load.phase = "remove-node"
        t0 = time.monotonic()
        _cli("rebalance", seed, "--cluster-weight", f"{spare.node_id()}=0")
        _cli("del-node", seed, spare.node_id())
        drain_s = time.monotonic() - t0
        load.stop()
        lost, wrong = verify(cluster.url, load)
        for tb in load.tracebacks[:3]:
            print(tb, file=sys.stderr)
    return {"rebalance_s": rebalance_s, "drain_s": drain_s, "lost": lost, "wrong": wrong,
            "errors": dict(load.errors), "load_ops": load.ops}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--load-ops", type=float, default=2000.0)
    ap.add_argument("--slots-per-round", type=int, default=CacheClusterOpsSettings().slots_per_round)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    a = ours(args.keys, args.load_ops, args.slots_per_round)
    b = redis_cli(args.keys, args.load_ops)
    out = {
        "keys_lost": a["lost"],
        "client_errors": sum(a["errors"].values()),
        "ours_rebalance_s": round(a["rebalance_s"], 3),
        "redis_cli_rebalance_s": round(b["rebalance_s"], 3),
        "ours_drain_s": round(a["drain_s"], 3),
        "redis_cli_drain_s": round(b["drain_s"], 3),
        "keys_wrong": a["wrong"],
        "redis_cli_keys_lost": b["lost"],
        "redis_cli_client_errors": sum(b["errors"].values()),
        "keys": args.keys,
        "slots_moved": a["slots_moved"],
        "keys_moved": a["keys_moved"],
        "load_ops": {"ours": a["load_ops"], "redis_cli": b["load_ops"]},
        "error_kinds": {"ours": a["errors"], "redis_cli": b["errors"]},
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.keys:,} keys, 3 masters + 1 added, client load ~{args.load_ops:g} ops/s")
        print(f"{'':<12}{'rebalance s':>12}{'drain+remove s':>16}{'keys lost':>11}{'client errors':>15}")
        print(f"{'ours':<12}{a['rebalance_s']:>12.3f}{a['drain_s']:>16.3f}{a['lost']:>11}{out['client_errors']:>15}")
        print(f"{'redis-cli':<12}{b['rebalance_s']:>12.3f}{b['drain_s']:>16.3f}{b['lost']:>11}"
              f"{out['redis_cli_client_errors']:>15}")  # fmt: skip
        print(f"ours moved {a['slots_moved']} slots, {a['keys_moved']} keys; error kinds: {out['error_kinds']}")
    return 0 if a["lost"] == 0 and a["wrong"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

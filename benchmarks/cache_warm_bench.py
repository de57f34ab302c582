"""Warming quality: restart a cache mid-trace, warm it by each policy, measure the next 10 % of requests.

Protocol (issue 13, "Proof → Warming quality"): replay a real key trace (the ARC OLTP trace, or the
CloudPhysics sample with ``--trace cloudphysics``) through a cache holding 5 % / 10 % of its unique
keys, restart (flush) it at ``--restart-at`` of the trace, pre-load K = cache-size keys chosen by
each policy from the requests *before* the restart only, and report the hit ratio over the next
10 % of requests:

- ``cold``: nothing pre-loaded; ``topk_prev``: the K most-read keys of the previous window;
  ``predicted``: our XGBoost ranker (``tasks.caching.hotkeys.XGBRanker``, trained on the history
  before the restart); ``never_restarted``: the cache that kept running; ``clairvoyant``: the K
  most-read keys of the evaluation window itself (the best static pre-load by count).

Twice: through the exact LRU simulator (``tasks.caching.lru``, where the datasets' README figures
come from) and through a real ``redis-server`` (``maxmemory`` sized to hold K keys, measured,
``allkeys-lru``; pipelined GETs, SET on a miss; pre-loaded by ``tasks.caching.warm.warm_keys``).
``warm_s`` is the time our warm-up took for the K predicted keys (10 % size) on the real server.
``time_to_warm`` (Zhang et al., HotCloud '20): requests after the restart until the hit ratio, in
blocks of 5 % of the window, stays within 5 % of the never-restarted cache's.

    uv run python benchmarks/cache_warm_bench.py --json [--trace arc|cloudphysics] [--restart-at 0.5] [--no-redis]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.caching.access import AccessHistory
from tasks.caching.client import CacheClient
from tasks.caching.hotkeys import DecayPredictor, TopKPrevPredictor, build_predictor, ranked_ids
from tasks.caching.lru import LRUCache
from tasks.caching.warm import CallableLoader, warm_keys
from tasks.config.caching import CacheWarmSettings

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SIZES = (5, 10)
VALUE = b"v" * 64
POLICIES = ("cold", "topk_prev", "predicted", "never_restarted", "clairvoyant")


def load_trace(name: str) -> np.ndarray:
    """The trace's keys in request order, as int64."""
    if name == "arc":
        path = DATASETS / "arc-oltp" / "OLTP.lis.zst"
        if not path.exists():
            sys.exit(f"cache_warm_bench: {path} is absent (the ARC OLTP trace, see datasets/README.md)")
        try:
            import zstandard  # optional: not a dependency; the zstd binary does the same

            text = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read().decode()
        except ImportError:
            if not shutil.which("zstd"):
                sys.exit("cache_warm_bench: neither the zstandard package nor the zstd binary is available")
            text = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout.decode()
        return np.array([int(line.split(" ", 1)[0]) for line in text.splitlines() if line], dtype=np.int64)
    if name == "cloudphysics":
        path = DATASETS / "cloudphysics-sample" / "cloudPhysicsIO.csv"
        if not path.exists():
            sys.exit(f"cache_warm_bench: {path} is absent (the CloudPhysics sample, see datasets/README.md)")
        rows = path.read_text().splitlines()[1:]
        return np.array([int(r.rsplit(",", 1)[1]) for r in rows if r], dtype=np.int64)
    sys.exit(f"cache_warm_bench: unknown trace {name!r} (arc, cloudphysics)")


def topk_counts(ids: np.ndarray, k: int) -> np.ndarray:
    """The K most-read keys of ``ids``, ties by first read (as the datasets' README figures)."""
    seen, first, c = np.unique(ids, return_index=True, return_counts=True)
    return seen[np.lexsort((first, -c))][:k]


def time_to_warm(hits: np.ndarray, base: np.ndarray, block: int) -> int | None:
    """Requests until every later block's hit ratio is ≥ 95 % of the never-restarted one's."""
    n = len(hits) // block
    ok = [hits[i * block : (i + 1) * block].mean() >= 0.95 * base[i * block : (i + 1) * block].mean() for i in range(n)]
    for i in range(n):
        if all(ok[i:]):
            return i * block
    return None


# -- exact LRU --------------------------------------------------------------------------------


def lru_hits(cache: LRUCache, window: Sequence[int]) -> np.ndarray:
    return np.fromiter((cache.access(k) for k in window), dtype=bool, count=len(window))


def exact_lru(ids: np.ndarray, r: int, w: int, k: int, rankings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    window = ids[r : r + w].tolist()
    out: dict[str, np.ndarray] = {}
    for policy, ranked in rankings.items():
        c = LRUCache(k)
        c.preload(ranked[:k].tolist())
        out[policy] = lru_hits(c, window)
    c = LRUCache(k)
    c.replay(ids[:r].tolist())
    out["never_restarted"] = lru_hits(c, window)
    return out


# -- real Redis ---------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server (no persistence) on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="warm-bench-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory-policy", "allkeys-lru"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = CacheClient(self.url)
        for _ in range(200):
            try:
                self.client.redis.ping()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def size_for(server: RedisServer, k: int) -> int:
    """``maxmemory`` that holds K keys of our shape: fill K, read ``used_memory``, add 0.5 %."""
    r = server.client.redis
    r.config_set("maxmemory", 0)
    r.flushall()
    for i in range(0, k, 5000):
        pipe = r.pipeline(transaction=False)
        for j in range(i, min(k, i + 5000)):
            pipe.set(f"k:{j}", VALUE)
        pipe.execute()
    used = int(r.info("memory")["used_memory"])
    r.flushall()
    return int(used * 1.005)


def redis_replay(server: RedisServer, keys: Sequence[int], chunk: int = 100) -> np.ndarray:
    """GET each key (pipelined by ``chunk``), SET it on a miss; a repeat inside one chunk after a
    miss counts as the hit it would have been one request at a time."""
    r = server.client.redis
    hits = np.zeros(len(keys), dtype=bool)
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        pipe = r.pipeline(transaction=False)
        for k in part:
            pipe.get(f"k:{k}")
        got = pipe.execute()
        seen: set[int] = set()
        pipe = r.pipeline(transaction=False)
        for j, (k, v) in enumerate(zip(part, got, strict=True)):
            if v is not None or k in seen:
                hits[i + j] = True
            elif k not in seen:
                pipe.set(f"k:{k}", VALUE)
            seen.add(k)
        pipe.execute()
    return hits


def redis_policies(
    server: RedisServer, ids: np.ndarray, r: int, w: int, k: int, rankings: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    rc = server.client.redis
    rc.config_set("maxmemory", size_for(server, k))
    window = ids[r : r + w].tolist()
    settings = CacheWarmSettings(ops_per_s=1e7, bytes_per_s=1e11, batch=1000)
    loader = CallableLoader("bench:value", lambda keys: dict.fromkeys(keys, VALUE))
    out: dict[str, np.ndarray] = {}
    warm: dict[str, float] = {}
    for policy, ranked in rankings.items():
        rc.flushall()
        if len(ranked):
            # best last, so it ends most recently used: the order `cache warm --hot` hands warm_keys
            keys = [f"k:{int(x)}" for x in ranked[:k][::-1]]
            rep = warm_keys(server.client, keys, loader, settings)
            warm[policy] = rep.elapsed_s
        out[policy] = redis_replay(server, window)
    rc.flushall()
    redis_replay(server, ids[:r].tolist())
    out["never_restarted"] = redis_replay(server, window)
    rc.flushall()
    return out, warm


# -- the run ------------------------------------------------------------------------------------


def run(trace: str, restart_at: float, use_redis: bool, log: Callable[[str], None]) -> dict[str, Any]:
    raw = load_trace(trace)
    _, ids = np.unique(raw, return_inverse=True)
    ids = ids.astype(np.int64)
    n, u = len(ids), int(ids.max()) + 1
    r, w = int(n * restart_at), int(n * 0.1)
    if r + w > n:
        sys.exit(f"cache_warm_bench: --restart-at {restart_at} leaves less than 10 % of the trace after it")
    hist = AccessHistory.from_ids(ids[:r])
    t0 = time.perf_counter()
    # the predictor `cortex-perf cache hot/warm --hot` builds for cache.hot.model = xgboost (the default)
    model = build_predictor("xgboost", window=float(w), half_life=float(w))
    model.fit(hist, float(r))  # type: ignore[union-attr]
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kmax = int(u * max(SIZES) / 100)
    rankings = {
        "cold": np.zeros(0, dtype=np.int64),
        "topk_prev": ranked_ids(TopKPrevPredictor(float(w)), hist, float(r), kmax),
        "predicted": ranked_ids(model, hist, float(r), kmax),
        "clairvoyant": topk_counts(ids[r : r + w], kmax),
    }
    predict_s = time.perf_counter() - t0
    decay = ranked_ids(DecayPredictor(float(w)), hist, float(r), kmax)
    log(f"{trace}: {n:,} requests, {u:,} keys, restart at {r:,}, window {w:,}; fit {fit_s:.1f}s, rank {predict_s:.1f}s")
    block = max(w // 20, 1)
    result: dict[str, Any] = {
        "exact_lru": {},
        "redis": {},
        "warm_s": None,
        "time_to_warm": {"exact_lru": {}, "redis": {}},
    }
    extra: dict[str, Any] = {"decay_exact_lru": {}}
    for size in SIZES:
        k = int(u * size / 100)
        hits = exact_lru(ids, r, w, k, rankings)
        result["exact_lru"][str(size)] = {p: round(float(hits[p].mean()), 4) for p in POLICIES}
        result["time_to_warm"]["exact_lru"][str(size)] = {
            p: time_to_warm(hits[p], hits["never_restarted"], block) for p in POLICIES
        }
        extra["decay_exact_lru"][str(size)] = round(float(exact_lru(ids, r, w, k, {"decay": decay})["decay"].mean()), 4)
        log(f"exact LRU {size}%: {result['exact_lru'][str(size)]}")
    if use_redis:
        server = RedisServer()
        try:
            for size in SIZES:
                k = int(u * size / 100)
                hits, warm = redis_policies(server, ids, r, w, k, rankings)
                result["redis"][str(size)] = {p: round(float(hits[p].mean()), 4) for p in POLICIES}
                result["time_to_warm"]["redis"][str(size)] = {
                    p: time_to_warm(hits[p], hits["never_restarted"], block) for p in POLICIES
                }
                result["warm_s"] = round(warm["predicted"], 3)  # the last (largest) size's
                log(f"redis {size}%: {result['redis'][str(size)]}; warm {warm['predicted']:.2f}s for {k:,} keys")
        finally:
            server.close()
    result["meta"] = {
        "trace": trace,
        "restart_at": restart_at,
        "requests": n,
        "unique_keys": u,
        "window": w,
        "k": {str(s): int(u * s / 100) for s in SIZES},
        "fit_s": round(fit_s, 2),
        "time_to_warm_block": block,
        **extra,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", choices=["arc", "cloudphysics"], default="arc")
    ap.add_argument("--restart-at", type=float, default=0.5, help="where the restart falls (0.2–0.9 of the trace)")
    ap.add_argument("--no-redis", action="store_true", help="exact-LRU replay only (no redis-server)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    if not 0.2 <= a.restart_at <= 0.9:
        ap.error(f"--restart-at: {a.restart_at} is not within 0.2 … 0.9")
    res = run(a.trace, a.restart_at, not a.no_redis, log=lambda s: print(s, file=sys.stderr))
    if a.json:
        print(json.dumps(res))
    else:
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

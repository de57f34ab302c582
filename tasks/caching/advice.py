"""Recommendations for a Redis or Redis Cluster from what its nodes say (``cortex-perf cache advise``).

Why rules and not a model: each finding is something an operator acts on by hand (raise
``maxmemory``, rebalance, split a hot hashtag, add a replica) and must be able to check; every
piece of advice carries the numbers it rests on and the command that acts on it. Thresholds are
the common operator ones: 90 % of ``maxmemory`` is "near full" (Redis starts evicting at 100 %),
redis-cli's rebalance threshold (``cache.cluster_ops.threshold_pct``, 2 %) for slot balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import Any, Literal

from redis.crc import key_slot

from tasks.caching.stats import SLOTS, CacheStats

__all__ = ["Advice", "advise"]

Severity = Literal["critical", "warning", "info"]
_ORDER = {"critical": 0, "warning": 1, "info": 2}

MEMORY_NEAR_FULL = 0.90
HOT_SLOT_SHARE = 0.20  # one slot taking this share of the predicted hot traffic is a hot spot
MEMORY_IMBALANCE = 1.5  # a master holding this many times the masters' mean memory
IDLE_OPS_SHARE = 0.05  # a master serving under 5 % of the masters' mean ops/s ...
IDLE_MIN_MEAN_OPS = 100.0  # ... while the others are busy (mean ≥ 100 ops/s)
REPLICA_LAG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Advice:
    """One finding: what, where, how bad, the numbers, and what to run about it."""

    kind: str
    severity: Severity
    node: str
    message: str
    action: str = ""
    numbers: dict[str, float | int | str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def advise(
    stats: CacheStats,
    *,
    hot_keys: Sequence[tuple[bytes | str, float]] = (),
    threshold_pct: float = 2.0,
) -> list[Advice]:
    """Every finding for ``stats`` (most severe first). ``hot_keys``: (key, score) from the hot-key
    predictor, for the hot-slot check (a cluster only: a standalone server has no slots to split)."""
    out: list[Advice] = []
    for n in stats.nodes:
        if not n.up:
            out.append(Advice("node-down", "critical", n.node, f"{n.node} does not answer: {n.error}",
                              "cortex-perf cache cluster check"))  # fmt: skip
    up = [n for n in stats.nodes if n.up]
    out += _memory(up)
    if stats.cluster:
        out += _balance(stats, threshold_pct)
        out += _replicas(stats)
        out += _hot_slots(stats, hot_keys)
    return sorted(out, key=lambda a: (_ORDER[a.severity], a.kind, a.node))


def _memory(nodes: list[Any]) -> list[Advice]:
    out: list[Advice] = []
    masters = [n for n in nodes if n.role == "master"]
    unlimited = [n for n in masters if not n.maxmemory]
    if unlimited:
        where = "every master" if len(unlimited) == len(masters) > 1 else ", ".join(n.node for n in unlimited)
        out.append(Advice("no-maxmemory", "info", where,
                          f"no maxmemory on {where}: Redis grows until the host runs out of memory",
                          "CONFIG SET maxmemory <~75 % of the host's RAM> and an allkeys-* eviction policy",
                          {"nodes": len(unlimited)}))  # fmt: skip
    for n in masters:
        nums = {"used_memory": n.used_memory, "maxmemory": n.maxmemory, "policy": n.maxmemory_policy,
                "evicted_keys": n.evicted_keys}  # fmt: skip
        ratio = n.memory_ratio
        if not n.maxmemory:
            continue
        assert ratio is not None
        nums["memory_ratio"] = round(ratio, 4)
        if ratio >= MEMORY_NEAR_FULL and n.maxmemory_policy == "noeviction":
            out.append(Advice("memory-full-noeviction", "critical", n.node,
                              f"{n.node} is at {ratio:.0%} of maxmemory with policy noeviction: writes will fail",
                              "raise maxmemory, choose an allkeys-lru/lfu policy, or add a master", nums))  # fmt: skip
        elif ratio >= MEMORY_NEAR_FULL:
            evicted = f"; {n.evicted_keys} keys evicted since start" if n.evicted_keys else ""
            out.append(Advice("memory-headroom", "warning", n.node,
                              f"{n.node} is at {ratio:.0%} of maxmemory{evicted}",
                              "raise maxmemory or add a master (cortex-perf cache cluster add-node ...)",
                              nums))  # fmt: skip
        if n.evicted_keys and n.hits is not None and n.misses is not None and n.hits + n.misses > 0:
            pressure = n.evicted_keys / (n.hits + n.misses)
            if pressure >= 0.01:
                nums["evictions_per_lookup"] = round(pressure, 4)
                out.append(Advice("eviction-pressure", "warning", n.node,
                                  f"{n.node} evicted {n.evicted_keys} keys ({pressure:.1%} of lookups); "
                                  f"hit ratio {n.hit_ratio:.1%}",
                                  "give the cache more memory, or warm only the predicted hot set", nums))  # fmt: skip
    return out


def _balance(stats: CacheStats, threshold_pct: float) -> list[Advice]:
    out: list[Advice] = []
    masters = [n for n in stats.masters if n.up]
    if not masters:
        return out
    share = SLOTS / len(masters)
    for n in masters:
        if n.slots == 0:
            out.append(Advice("idle-master", "warning", n.node, f"{n.node} is a master with no slots: serves nothing",
                              "cortex-perf cache cluster rebalance --use-empty-masters, or remove-node",
                              {"slots": 0}))  # fmt: skip
        elif abs(n.slots - share) / share * 100 > threshold_pct:
            out.append(Advice("slot-imbalance", "warning", n.node,
                              f"{n.node} holds {n.slots} slots, {(n.slots - share) / share:+.0%} off an even share "
                              f"({share:.0f})", "cortex-perf cache cluster rebalance",
                              {"slots": n.slots, "share": round(share, 1)}))  # fmt: skip
    mems = [n.used_memory for n in masters if n.used_memory]
    if len(mems) >= 2:
        avg = mean(mems)
        for n in masters:
            if n.used_memory and n.used_memory >= MEMORY_IMBALANCE * avg:
                out.append(Advice("memory-imbalance", "warning", n.node,
                                  f"{n.node} uses {n.used_memory / avg:.1f}× the masters' mean memory: big keys or "
                                  "crowded slots", "find big keys (redis-cli --bigkeys) or reshard slots away from it",
                                  {"used_memory": n.used_memory, "mean": round(avg)}))  # fmt: skip
    ops = [n.ops_per_s or 0.0 for n in masters if n.slots]
    if len(ops) >= 2 and mean(ops) >= IDLE_MIN_MEAN_OPS:
        avg = mean(ops)
        for n in masters:
            if n.slots and (n.ops_per_s or 0.0) < IDLE_OPS_SHARE * avg:
                out.append(Advice("idle-node", "info", n.node,
                                  f"{n.node} serves {n.ops_per_s or 0:.0f} ops/s while masters average {avg:.0f}",
                                  "move hot slots to it (reshard) or remove it to save its cost",
                                  {"ops_per_s": n.ops_per_s, "mean": round(avg, 1)}))  # fmt: skip
    return out


def _replicas(stats: CacheStats) -> list[Advice]:
    out: list[Advice] = []
    replicas = [n for n in stats.nodes if n.role == "replica"]
    covered = {r.master for r in replicas}
    if replicas:
        for m in stats.masters:
            if m.slots and m.node not in covered:
                out.append(Advice("no-replica", "warning", m.node,
                                  f"{m.node} has no replica: if it fails, its {m.slots} slots go down with it",
                                  "cortex-perf cache cluster add-node <new> --replica-of " + m.node,
                                  {"slots": m.slots}))  # fmt: skip
    for r in replicas:
        if r.up and r.link_up is False:
            out.append(Advice("replica-link-down", "critical", r.node, f"{r.node} lost its link to {r.master}",
                              "check the network and the master; the replica serves stale data",
                              {"master": r.master}))  # fmt: skip
        elif r.replication_lag_bytes is not None and r.replication_lag_bytes >= REPLICA_LAG_BYTES:
            out.append(Advice("replica-lag", "warning", r.node,
                              f"{r.node} is {r.replication_lag_bytes} bytes behind {r.master}",
                              "check the replica's load and network; reads from it are stale",
                              {"lag_bytes": r.replication_lag_bytes}))  # fmt: skip
    return out


def _hot_slots(stats: CacheStats, hot_keys: Sequence[tuple[bytes | str, float]]) -> list[Advice]:
    total = sum(max(0.0, s) for _, s in hot_keys)
    if total <= 0:
        return []
    per_slot: dict[int, float] = {}
    example: dict[int, bytes | str] = {}
    for key, score in hot_keys:
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        per_slot[slot] = per_slot.get(slot, 0.0) + max(0.0, score)
        example.setdefault(slot, key)
    owner = {s: n.node for n in stats.masters for a, b in n.slot_ranges for s in range(a, b + 1) if s in per_slot}
    out: list[Advice] = []
    for slot, score in per_slot.items():
        share = score / total
        if share >= HOT_SLOT_SHARE:
            key = example[slot]
            text = key.decode(errors="backslashreplace") if isinstance(key, bytes) else key
            node = owner.get(slot, "?")
            out.append(Advice("hot-slot", "warning", node,
                              f"slot {slot} (on {node}) takes {share:.0%} of the predicted hot traffic "
                              f"(e.g. key {text!r})",
                              "split the hashtag so these keys spread over slots, or read from replicas "
                              "(READONLY) for this slot",
                              {"slot": slot, "share": round(share, 4)}))  # fmt: skip
    return out

"""Which slots move where: pure planning for rebalance, drain and reshard (no server needed).

Why apart from the code that moves slots: a plan is what a dry run prints, what an action records
and what a test can check without a cluster. Inputs are the masters' slots by node id (from a
``Topology``); outputs are :class:`SlotMove` lists in the order they will run.

The rebalance follows ``redis-cli --cluster rebalance`` (redis 7.0 ``clusterManagerCommandRebalance``)
so that people who know it get the same result: each master's share is ``16384 / total weight ×
weight`` (truncated); nothing moves unless some master is more than ``threshold_pct`` off its share;
empty masters take part only with ``use_empty_masters`` (or a weight given explicitly); rounding is
absorbed by the receivers; then the master owing the most slots gives to the one lacking the most,
slots taken in ascending order from the giver, until every balance is zero.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tasks.caching.topology import SLOTS, slot_ranges

__all__ = [
    "SlotMove",
    "describe_slots",
    "group_moves",
    "parse_weights",
    "plan_drain",
    "plan_rebalance",
    "plan_reshard",
]


@dataclass(frozen=True, order=True)
class SlotMove:
    """Move ``slot`` (and its keys) from master ``source`` to master ``target`` (node ids)."""

    slot: int
    source: str
    target: str


def parse_weights(items: Sequence[str]) -> dict[str, float]:
    """``["host:port=2", "<node id>=0"]`` → ``{name: weight}``; a ``ValueError`` naming the bad item.

    Names are resolved against the cluster later (an unknown node is an error there)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name.strip() or not math.isfinite(weight) or not 0 <= weight <= 1e6:
            raise ValueError(f"--weight {item!r}: expected NODE=WEIGHT (NODE: host:port or node id, 0 ≤ WEIGHT ≤ 1e6)")
        out[name.strip()] = weight
    return out


def _take(slots: dict[str, list[int]], source: str, n: int, target: str) -> list[SlotMove]:
    """The ``n`` lowest slots of ``source`` go to ``target`` (and leave ``slots[source]``)."""
    taken, slots[source] = slots[source][:n], slots[source][n:]
    slots.setdefault(target, []).extend(taken)
    slots[target].sort()
    return [SlotMove(s, source, target) for s in taken]


def plan_rebalance(
    slots_by_node: Mapping[str, Sequence[int]],
    *,
    weights: Mapping[str, float] | None = None,
    threshold_pct: float = 2.0,
    use_empty_masters: bool = False,
) -> list[SlotMove]:
    """The moves that bring every master to its weighted share (``[]`` when within the threshold).

    ``weights`` by node id (default 1); a weight of 0 drains the node. See the module docstring."""
    weights = dict(weights or {})
    slots = {n: sorted(s) for n, s in slots_by_node.items()}
    weight: dict[str, float] = {}
    for n, owned in slots.items():
        w = weights.get(n, 1.0)
        if not use_empty_masters and not owned and n not in weights:
            w = 0.0
        weight[n] = w
    total_weight = sum(weight.values())
    if total_weight <= 0:
        raise ValueError("rebalance: every master has weight 0 (nothing could own the slots)")
    balance: dict[str, int] = {}
    reached = False
    for n in sorted(slots):
        expected = int(SLOTS / total_weight * weight[n])
        count = len(slots[n])
        balance[n] = count - expected
        if threshold_pct > 0:
            off = abs(100 - 100.0 * expected / count) > threshold_pct if count else expected > 1
            reached = reached or off
        elif balance[n] != 0:
            reached = True
    if not reached:
        return []
    # Truncation leaves the givers owing more than the receivers lack: receivers absorb the rest.
    total = sum(balance.values())
    while total > 0:
        for n in sorted(slots):
            if balance[n] <= 0 and total > 0:
                balance[n] -= 1
                total -= 1
    order = sorted(slots, key=lambda n: (balance[n], n))
    moves: list[SlotMove] = []
    dst_i, src_i = 0, len(order) - 1
    while dst_i < src_i:
        dst, src = order[dst_i], order[src_i]
        k = min(abs(balance[dst]), abs(balance[src]))
        if k > 0:
            moves += _take(slots, src, k, dst)
            balance[dst] += k
            balance[src] -= k
        if balance[dst] == 0:
            dst_i += 1
        if balance[src] == 0:
            src_i -= 1
        if k == 0 and balance[dst] != 0 and balance[src] != 0:
            break  # cannot happen with integer balances summing to 0; a guard against a loop
    return moves


def plan_drain(slots_by_node: Mapping[str, Sequence[int]], leaving: str) -> list[SlotMove]:
    """Move every slot of ``leaving`` to the other masters so their counts end as even as possible.

    Each receiver gets one contiguous run of the leaving node's slots (fewer, larger moves to
    print and to read), the emptiest receivers first."""
    if leaving not in slots_by_node:
        raise ValueError(f"drain: {leaving} is not a master")
    giving = sorted(slots_by_node[leaving])
    receivers = sorted(n for n in slots_by_node if n != leaving)
    if giving and not receivers:
        raise ValueError("drain: no other master to take its slots")
    heap = [(len(slots_by_node[n]), n) for n in receivers]
    heapq.heapify(heap)
    quota: dict[str, int] = dict.fromkeys(receivers, 0)
    for _ in giving:
        count, n = heapq.heappop(heap)
        quota[n] += 1
        heapq.heappush(heap, (count + 1, n))
    moves: list[SlotMove] = []
    i = 0
    for n in sorted(receivers, key=lambda r: (len(slots_by_node[r]), r)):
        moves += [SlotMove(s, leaving, n) for s in giving[i : i + quota[n]]]
        i += quota[n]
    return moves


def plan_reshard(
    slots_by_node: Mapping[str, Sequence[int]], count: int, target: str, sources: Sequence[str] | None = None
) -> list[SlotMove]:
    """Move ``count`` slots to ``target`` from ``sources`` (default: every other master).

    Like ``redis-cli --cluster reshard``: each source gives in proportion to the slots it owns
    (largest remainders round up, so exactly ``count`` move), its lowest slots first."""
    if target not in slots_by_node:
        raise ValueError(f"reshard: target {target} is not a master")
    srcs = sorted(set(sources) if sources else set(slots_by_node) - {target})
    if target in srcs:
        raise ValueError("reshard: the target cannot also be a source")
    for s in srcs:
        if s not in slots_by_node:
            raise ValueError(f"reshard: source {s} is not a master")
    available = sum(len(slots_by_node[s]) for s in srcs)
    if not 1 <= count <= available:
        raise ValueError(f"reshard: --slots must be between 1 and {available} (the sources' slots), got {count}")
    shares = {s: count * len(slots_by_node[s]) / available for s in srcs}
    take = {s: int(shares[s]) for s in srcs}
    short = count - sum(take.values())
    for s in sorted(srcs, key=lambda s: (-(shares[s] - take[s]), -len(slots_by_node[s]), s))[:short]:
        take[s] += 1
    slots = {n: sorted(v) for n, v in slots_by_node.items()}
    moves: list[SlotMove] = []
    for s in sorted(srcs, key=lambda s: (-len(slots_by_node[s]), s)):
        moves += _take(slots, s, take[s], target)
    return moves


def group_moves(moves: Sequence[SlotMove]) -> list[tuple[str, str, list[int]]]:
    """Moves as ``(source, target, slots)`` groups, in first-seen order: what a plan table shows."""
    groups: dict[tuple[str, str], list[int]] = {}
    for m in moves:
        groups.setdefault((m.source, m.target), []).append(m.slot)
    return [(src, dst, sorted(slots)) for (src, dst), slots in groups.items()]


def describe_slots(slots: Sequence[int], limit: int = 6) -> str:
    """``0-99,200`` (at most ``limit`` ranges, then ``…``): slots in a line a person can read."""
    ranges = slot_ranges(slots)
    text = ",".join(ranges[:limit])
    return text + (f",… ({len(ranges) - limit} more ranges)" if len(ranges) > limit else "")

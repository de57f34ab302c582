"""Pure planning and parsing: no server."""

from __future__ import annotations

import pytest

from tasks.caching.cluster_plan import (
    SlotMove,
    describe_slots,
    group_moves,
    parse_weights,
    plan_drain,
    plan_rebalance,
    plan_reshard,
)
from tasks.caching.topology import SLOTS, parse_cluster_nodes, slot_ranges


def thirds() -> dict[str, list[int]]:
    return {"a": list(range(0, 5461)), "b": list(range(5461, 10922)), "c": list(range(10922, SLOTS))}


def apply(slots: dict[str, list[int]], moves: list[SlotMove]) -> dict[str, set[int]]:
    out = {n: set(s) for n, s in slots.items()}
    for m in moves:
        out[m.source].remove(m.slot)
        out[m.target].add(m.slot)
    return out


def test_balanced_cluster_needs_nothing_and_empty_master_waits_for_the_flag() -> None:
    assert plan_rebalance(thirds()) == []
    with_empty = {**thirds(), "d": []}
    assert plan_rebalance(with_empty) == []
    moves = plan_rebalance(with_empty, use_empty_masters=True)
    after = apply(with_empty, moves)
    assert {m.target for m in moves} == {"d"}
    assert sorted(len(s) for s in after.values()) == [4096, 4096, 4096, 4096]
    assert sum(len(s) for s in after.values()) == SLOTS


def test_weights_and_threshold_follow_redis_cli() -> None:
    moves = plan_rebalance(thirds(), weights={"a": 2})  # a: 8192, b and c: 4096
    after = apply(thirds(), moves)
    assert len(after["a"]) == 8192 and len(after["b"]) == len(after["c"]) == 4096
    # 1.5 % off: under the 2 % threshold nothing moves, with 1 % it does
    uneven = {"a": list(range(0, 5540)), "b": list(range(5540, 10922)), "c": list(range(10922, SLOTS))}
    assert plan_rebalance(uneven) == []
    assert plan_rebalance(uneven, threshold_pct=1.0)
    # weight 0 drains a node
    after = apply(thirds(), plan_rebalance(thirds(), weights={"c": 0}))
    assert not after["c"] and len(after["a"]) == len(after["b"]) == 8192
    with pytest.raises(ValueError, match="weight 0"):
        plan_rebalance(thirds(), weights={"a": 0, "b": 0, "c": 0})


def test_moves_take_the_givers_lowest_slots_first() -> None:
    moves = plan_rebalance({**thirds(), "d": []}, use_empty_masters=True)
    for src, dst, slots in group_moves(moves):
        assert dst == "d"
        assert slots == sorted(thirds()[src])[: len(slots)]


def test_drain_spreads_evenly_in_contiguous_runs() -> None:
    four = {"a": list(range(0, 4000)), "b": list(range(4000, 8000)), "c": list(range(8000, 12000)),
            "d": list(range(12000, SLOTS))}  # fmt: skip
    moves = plan_drain(four, "d")
    after = apply(four, moves)
    assert not after["d"]
    counts = sorted(len(after[n]) for n in "abc")
    assert counts[-1] - counts[0] <= 1
    assert len(group_moves(moves)) == 3
    with pytest.raises(ValueError, match="not a master"):
        plan_drain(four, "zz")


def test_reshard_moves_exactly_n_proportionally() -> None:
    moves = plan_reshard(thirds(), 1000, "c")
    assert len(moves) == 1000 and {m.target for m in moves} == {"c"}
    per = {s: sum(1 for m in moves if m.source == s) for s in "ab"}
    assert per == {"a": 500, "b": 500}
    assert len(plan_reshard(thirds(), 7, "a", ["b"])) == 7
    with pytest.raises(ValueError, match="between 1 and"):
        plan_reshard(thirds(), 20000, "a")
    with pytest.raises(ValueError, match="cannot also be a source"):
        plan_reshard(thirds(), 5, "a", ["a"])


def test_weights_parse_or_name_the_bad_item() -> None:
    assert parse_weights(["127.0.0.1:7000=2", "abcdef12=0.5"]) == {"127.0.0.1:7000": 2.0, "abcdef12": 0.5}
    for bad in ["127.0.0.1:7000", "=2", "n=x", "n=-1", "n=inf"]:
        with pytest.raises(ValueError, match="--weight"):
            parse_weights([bad])


NODES = (
    "aaa 127.0.0.1:7000@17000 myself,master - 0 0 3 connected 0-99 105 [100->-bbb] [101-<-ccc]\n"
    "bbb 127.0.0.1:7001@17001,host-b master - 0 1 5 connected 200-300\n"
    "ccc 127.0.0.1:7002@17002 slave,fail aaa 0 1 3 disconnected\n"
)


def test_cluster_nodes_parse_into_typed_nodes() -> None:
    a, b, c = parse_cluster_nodes(NODES)
    assert a.is_myself and a.is_master and len(a.slots) == 101 and 105 in a.slots
    assert a.migrating == {100: "bbb"} and a.importing == {101: "ccc"}
    assert str(b.address) == "127.0.0.1:7001" and b.config_epoch == 5 and not b.migrating
    assert c.is_replica and c.master_id == "aaa" and c.failing and not c.connected
    with pytest.raises(ValueError, match="does not parse"):
        parse_cluster_nodes("garbage line\n")


def test_slot_ranges_read_like_redis() -> None:
    assert slot_ranges([5, 1, 2, 3, 9]) == ["1-3", "5", "9"]
    assert describe_slots(list(range(0, 20, 2)), limit=3) == "0,2,4,… (7 more ranges)"

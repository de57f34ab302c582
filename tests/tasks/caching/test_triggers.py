"""Warming triggers read from the lake: restarts, joins and miss surges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.caching.triggers import miss_surge, node_changes
from tasks.lake import Lake, Sample

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def minutes(n: int) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in range(n, 0, -1)]


def test_restart_and_join_are_seen_between_runs(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    samples = []
    for i, ts in enumerate(minutes(120)):
        samples.append(Sample("redis_uptime_seconds", 10_000 + 60 * i, ts, {"redis": "c", "node": "a:1"}))
        # b restarts 10 minutes ago: its uptime drops back to 0
        up_b = 5_000 + 60 * i if i < 110 else 60 * (i - 110)
        samples.append(Sample("redis_uptime_seconds", up_b, ts, {"redis": "c", "node": "b:1"}))
        if i >= 115:  # c:1 joins 5 minutes ago
            samples.append(Sample("redis_uptime_seconds", 60 * (i - 115), ts, {"redis": "c", "node": "c:1"}))
        # another Redis named differently never counts
        samples.append(Sample("redis_uptime_seconds", 1.0, ts, {"redis": "other", "node": "z:1"}))
    lake.write_samples(samples)
    got = node_changes(lake, "c", NOW - timedelta(minutes=30), NOW)
    assert [(c.node, c.kind) for c in got] == [("b:1", "restarted"), ("c:1", "joined")]
    assert got[0].at == NOW - timedelta(minutes=10)
    # a window before both: nothing
    assert node_changes(lake, "c", NOW - timedelta(minutes=60), NOW - timedelta(minutes=30)) == []
    # no history before the window: a first sample is not a join
    got = node_changes(lake, "c", NOW - timedelta(hours=5), NOW, baseline=timedelta(0))
    assert [(c.node, c.kind) for c in got] == [("b:1", "restarted")]


def test_miss_surge_compares_with_the_baseline(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    samples, total = [], 0.0
    for i, ts in enumerate(minutes(90)):
        total += 600 if i >= 85 else 60  # 1 miss/s, then 10/s over the last 5 minutes
        samples.append(
            Sample("redis_keyspace_misses_total", total, ts + timedelta(seconds=30), {"redis": "c", "node": "a:1"})
        )
    lake.write_samples(samples)
    surge = miss_surge(lake, "c", NOW)
    assert surge is not None and 8 <= surge.ratio <= 12 and 9 <= surge.rate <= 11
    assert miss_surge(lake, "c", NOW, factor=20) is None
    assert miss_surge(lake, "c", NOW - timedelta(minutes=10)) is None  # before the surge
    assert miss_surge(lake, "nope", NOW) is None


def test_a_counter_reset_is_not_a_surge(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    samples, total = [], 0.0
    for i, ts in enumerate(minutes(90)):
        total = 60.0 * (i - 87) if i >= 87 else total + 60  # the node restarted 3 minutes ago
        samples.append(Sample("redis_keyspace_misses_total", max(total, 0.0), ts + timedelta(seconds=30),
                              {"redis": "c", "node": "a:1"}))  # fmt: skip
    lake.write_samples(samples)
    assert miss_surge(lake, "c", NOW) is None

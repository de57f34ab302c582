"""Access histories from keys, log files and the lake's ``cache_access`` samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tasks.caching.access import ACCESS_METRIC, AccessHistory, AccessLogError
from tasks.lake import Lake, Sample


def test_from_keys_is_virtual_time_and_slices() -> None:
    h = AccessHistory.from_keys(["a", "b", "a", "c"])
    assert not h.timestamped and h.keys == ("a", "b", "c")
    assert h.key_counts().tolist() == [2, 1, 1]
    assert h.before(2).key_counts().tolist() == [1, 1, 0]
    assert h.between(1, 3).key_counts().tolist() == [1, 1, 0]
    assert h.end == 4


def test_log_with_and_without_timestamps(tmp_path: Path) -> None:
    plain = tmp_path / "plain.log"
    plain.write_text("# comment\nuser:1\nuser:2\n\nuser:1\n")
    h = AccessHistory.from_log(plain)
    assert h.keys == ("user:1", "user:2") and len(h) == 3 and not h.timestamped
    stamped = tmp_path / "stamped.log"
    stamped.write_text("1700000010 b\n2023-11-14T22:13:20Z a key with spaces\n")
    h = AccessHistory.from_log(stamped)
    assert h.timestamped and h.keys == ("b", "a key with spaces")
    assert h.times.tolist() == sorted(h.times.tolist())  # sorted by time: the ISO line is earlier


def test_log_mixing_kinds_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.log"
    p.write_text("1700000000 a\nb\n")
    with pytest.raises(AccessLogError, match=r"bad.log:2: expected 'TIMESTAMP KEY'"):
        AccessHistory.from_log(p)


def test_from_lake_reads_cache_access_samples(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    t0 = datetime(2024, 5, 1, 9, tzinfo=UTC)
    lake.write_samples(
        [
            Sample(ACCESS_METRIC, 3, t0, {"key": "user:1", "redis": "default"}),
            Sample(ACCESS_METRIC, 1, t0 + timedelta(minutes=1), {"key": "user:2", "redis": "default"}),
            Sample(ACCESS_METRIC, 5, t0 + timedelta(minutes=1), {"key": "other", "redis": "other"}),
        ]
    )
    h = AccessHistory.from_lake(lake, t0, t0 + timedelta(hours=1), redis="default")
    assert h.timestamped and dict(zip(h.keys, h.key_counts().tolist(), strict=True)) == {"user:1": 3, "user:2": 1}
    assert np.all(np.diff(h.times) >= 0)


def test_from_lake_filters_on_the_redis_label_quotes_and_all(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    now = datetime.now(UTC) - timedelta(minutes=1)
    lake.write_samples([Sample(ACCESS_METRIC, 2.0, now, {"key": "a", "redis": 'odd"name\\'}),
                        Sample(ACCESS_METRIC, 3.0, now, {"key": "b", "redis": "other"})])  # fmt: skip
    got = AccessHistory.from_lake(lake, now - timedelta(hours=1), now + timedelta(minutes=1), redis='odd"name\\')
    assert got.keys == ("a",)
    both = AccessHistory.from_lake(lake, now - timedelta(hours=1), now + timedelta(minutes=1))
    assert set(both.keys) == {"a", "b"}

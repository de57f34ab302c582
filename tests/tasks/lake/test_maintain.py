from datetime import timedelta

import pytest

from tasks.lake import Sample


def _fill(lake, now, minutes=180, hosts=("a", "b")):
    batch = [
        Sample("cpu", float(i % 17) + (10 if h == "b" else 0), now - timedelta(minutes=minutes - i), {"host": h})
        for h in hosts
        for i in range(minutes)
    ]
    lake.write_samples(batch, now=now)


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count", "last"])
def test_rollups_answer_like_raw(lake, now, agg):
    _fill(lake, now)
    start, end = now - timedelta(hours=3), now
    before = {step: lake.query("cpu", start, end, step=timedelta(minutes=step), agg=agg) for step in (5, 60)}
    rep = lake.build_rollups(now=now)
    assert rep.rows_written["rollup_1m"] == 360 and rep.rows_written["rollup_1h"] >= 6
    for step, df in before.items():
        after = lake.query("cpu", start, end, step=timedelta(minutes=step), agg=agg)
        assert after.equals(df), (step, agg)


def test_queries_use_the_coarsest_rollup(lake, now, monkeypatch):
    _fill(lake, now)
    lake.build_rollups(now=now)
    used = []
    orig = lake._rollup_agg

    def spy(table, *a, **k):
        used.append(table)
        return orig(table, *a, **k)

    monkeypatch.setattr(lake, "_rollup_agg", spy)
    lake.query("cpu", now - timedelta(hours=3), now, step=timedelta(hours=1))
    lake.query("cpu", now - timedelta(hours=3), now, step=timedelta(minutes=10))
    lake.query("cpu", now - timedelta(hours=3), now, step=timedelta(minutes=3))
    assert used == ["rollup_1h", "rollup_5m", "rollup_1m"]


def test_data_after_the_watermark_comes_from_raw(lake, now):
    _fill(lake, now - timedelta(hours=1))
    lake.build_rollups(now=now - timedelta(hours=1))
    # new samples after the rollup build are still seen by bucket queries
    lake.write_samples([Sample("cpu", 1000.0, now - timedelta(minutes=30), {"host": "a"})], now=now)
    df = lake.query('cpu{host="a"}', now - timedelta(hours=4), now, step=timedelta(minutes=5), agg="max")
    assert df.get_column("value").max() == 1000.0


def test_rollups_rebuild_only_changed_partitions(lake, now):
    _fill(lake, now)
    assert lake.build_rollups(now=now).partitions_rebuilt == 1
    assert lake.build_rollups(now=now).partitions_rebuilt == 0
    lake.write_samples([Sample("cpu", 5.0, now - timedelta(seconds=30), {"host": "a"})], now=now)
    assert lake.build_rollups(now=now).partitions_rebuilt == 1


def test_compaction_merges_small_files(lake, now):
    for i in range(6):
        lake.write_samples([Sample("m", float(i), now - timedelta(minutes=i))], now=now)
    assert len(lake.storage.files("samples")) == 6
    dry = lake.compact(now=now, dry_run=True)
    assert dry.files_before == 6 and len(lake.storage.files("samples")) == 6
    rep = lake.compact(now=now)
    assert rep.files_before == 6 and rep.files_after == 1
    assert len(lake.storage.files("samples")) == 1
    assert lake.raw("m", now - timedelta(hours=1), now + timedelta(seconds=1)).height == 6
    # today's partition with fewer than min_files is left alone
    lake.write_samples([Sample("m", 9.0, now + timedelta(seconds=1))], now=now)
    assert lake.compact(now=now).partitions == 0  # 2 files < min_files=4
    assert lake.compact(now=now, min_files=3).partitions == 0


def test_retention_drops_old_partitions(lake, now):
    lake.write_samples([Sample("m", 1.0, now - timedelta(days=d)) for d in range(5)], now=now)
    rep = lake.apply_retention({"samples": 2}, now=now)
    assert rep.partitions_dropped["samples"] == ["2026-11-23", "2026-11-24"]
    assert [d.isoformat() for d in lake.storage.partitions("samples")] == ["2026-11-25", "2026-11-26", "2026-11-27"]
    with pytest.raises(ValueError, match="unknown table 'sample'"):
        lake.apply_retention({"sample": 1}, now=now)


def test_stats_shape(lake, now):
    _fill(lake, now, minutes=10)
    st = lake.stats()["tables"]
    assert set(st) >= {"samples", "events", "series", "rollup_1m", "rollup_5m", "rollup_1h"}
    s = st["samples"]
    assert s["rows"] == 20 and s["series"] == 2 and s["files"] == 1 and s["bytes"] > 0
    assert s["oldest"] == "2026-11-27T11:50:00Z" and s["newest"] == "2026-11-27T11:59:00Z"


def test_crash_leftovers_are_swept(lake, now):
    import os
    import time

    _fill(lake, now, minutes=5)
    d = lake.storage.partition_dir("samples", now.date())
    junk = f"{d}/_dead.partial"
    with open(junk, "wb") as fh:
        fh.write(b"PAR1 half a file")
    old = time.time() - 7200
    os.utime(junk, (old, old))
    assert lake.raw("cpu", now - timedelta(hours=1), now).height == 10  # readers ignore it
    assert lake.compact(now=now).temp_files_removed == 1
    assert not os.path.exists(junk)


@pytest.mark.parametrize("bad", [0, -1, -3650])
def test_retention_refuses_a_non_positive_number_and_deletes_nothing(lake, now, bad):
    """Defence in depth: a retention of 0 or less days would drop today's partition (or every one),
    so the lake refuses it before touching any table, even one listed before the bad entry."""
    lake.write_samples([Sample("m", 1.0, now - timedelta(days=d)) for d in range(5)], now=now)
    before = lake.storage.partitions("samples")
    with pytest.raises(ValueError, match=r"lake\.retention_days\.series: .*at least 1"):
        lake.apply_retention({"samples": 1, "series": bad}, now=now)
    assert lake.storage.partitions("samples") == before


def test_retention_keeps_a_series_while_any_of_its_samples_lives(lake, now, monkeypatch):
    """The catalogue is partitioned by first-seen day: dropping that partition must not orphan a
    series whose recent samples (or rollups) are still in the lake."""
    from tasks.lake import maintain

    monkeypatch.setattr(maintain, "SERIES_WRITE_GRACE_S", 0.0, raising=False)  # the files below are seconds old
    old = now - timedelta(days=5000)
    lake.write_samples([Sample("m", 1.0, old, {"h": "a"}), Sample("m", 2.0, now, {"h": "a"})], now=now)
    lake.write_samples([Sample("gone", 1.0, old)], now=now)  # only an old sample: may go with it
    retention = {"series": 3650, "samples": 30}
    dry = lake.apply_retention(retention, now=now, dry_run=True)
    assert lake.catalogue().height == 2  # a dry run changes nothing
    rep = lake.apply_retention(retention, now=now)
    assert dry.series_kept == rep.series_kept == 1
    assert lake.catalogue().get_column("series").to_list() == ['m{h="a"}']
    df = lake.raw("m", now - timedelta(hours=1), now + timedelta(seconds=1))
    assert df.get_column("value").to_list() == [2.0]
    # once its last sample is gone, the series goes on the next run
    lake.apply_retention(retention, now=now + timedelta(days=31))
    assert lake.catalogue().height == 0


def test_retention_never_judges_a_just_written_series_entry(lake, now):
    """A writer commits a series' entry before its samples: a young entry is kept as it is."""
    lake.write_samples([Sample("m", 1.0, now - timedelta(days=5000))], now=now)
    rep = lake.apply_retention({"series": 3650, "samples": 30}, now=now)
    assert rep.series_kept == 1 and lake.catalogue().height == 1

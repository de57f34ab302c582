from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow.parquet as pq
import pytest

from tasks.lake import Lake, Sample
from tasks.lake.write import LakeWriteError, Limits, content_hash


def _samples(now, n=10, metric="cpu", host="a", start=0.0):
    return [Sample(metric, start + i, now - timedelta(minutes=n - i), {"host": host}) for i in range(n)]


def test_bad_rows_are_reported_and_good_rows_kept(lake, now):
    batch = _samples(now, 5) + [
        Sample("cpu", float("nan"), now, {"host": "a"}),
        Sample("cpu-x", 1.0, now),
        Sample("cpu", 1.0, now.replace(tzinfo=None)),
        Sample("cpu", 1.0, now, {"bad-label": "x"}),
        Sample("cpu", 1.0, now + timedelta(days=1)),
    ]
    res = lake.write_samples(batch, now=now)
    assert (res.accepted, res.rejected) == (5, 5)
    text = "\n".join(res.reasons)
    for needle in (
        "value: non-finite",
        "metric: invalid metric name 'cpu-x'",
        "ts: naive timestamp",
        "labels: invalid label name 'bad-label'",
        "in the future",
    ):
        assert needle in text
    assert lake.raw("cpu", now - timedelta(hours=1), now + timedelta(seconds=1)).height == 5


def test_strict_mode_refuses_the_whole_batch(tmp_path, now):
    lake = Lake(str(tmp_path / "l"), limits=Limits(strict=True))
    with pytest.raises(LakeWriteError, match="1 bad row"):
        lake.write_samples([*_samples(now, 3), Sample("cpu", float("inf"), now)], now=now)
    assert lake.stats()["tables"]["samples"]["rows"] == 0
    assert lake.storage.files("samples") == []


def test_resent_batch_is_harmless(lake, now):
    batch = _samples(now, 20)
    first = lake.write_samples(batch, now=now)
    again = lake.write_samples(batch, now=now)
    assert first.files and not again.files and again.duplicate_files == 1
    assert lake.raw("cpu", now - timedelta(hours=1), now).height == 20


def test_overlapping_batches_keep_the_last_write(lake, now):
    lake.write_samples([Sample("g", 1.0, now)], now=now)
    lake.write_samples([Sample("g", 2.0, now), Sample("g", 3.0, now + timedelta(seconds=1))], now=now)
    df = lake.raw("g", now, now + timedelta(seconds=2))
    assert df.get_column("value").to_list() == [2.0, 3.0]
    rep = lake.compact(now=now + timedelta(days=1))
    assert rep.duplicates_dropped == 1
    assert len(lake.storage.files("samples")) == 1
    assert lake.raw("g", now, now + timedelta(seconds=2)).get_column("value").to_list() == [2.0, 3.0]


def test_files_are_partitioned_by_day_and_sorted(lake, now):
    batch = [Sample("m", float(i), now - timedelta(hours=i * 6), {"k": str(i % 3)}) for i in range(8)]
    lake.write_samples(batch, now=now)
    files = lake.storage.files("samples")
    assert sorted({f.day.isoformat() for f in files}) == ["2026-11-25", "2026-11-26", "2026-11-27"]
    for f in files:
        assert f.path.split("/")[-2] == f"date={f.day.isoformat()}"
        t = pq.read_table(f.path)
        assert t.schema.field("ts").type.tz == "UTC"
        ids = t.column("series_id").to_pylist()
        assert ids == sorted(ids)


def test_bulk_frame_path_validates_columns(lake, now):
    df = pl.DataFrame(
        {
            "metric": ["a", "a", "b"],
            "labels": ['{"x":"1"}', '{"x":"1"}', "not json"],
            "ts": [now, now - timedelta(seconds=1), now],
            "value": [1.0, 2.0, 3.0],
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ms"))
    res = lake.write_samples(df, now=now)
    assert (res.accepted, res.rejected) == (2, 1)
    assert "labels: not valid JSON" in res.reasons[0]
    naive = df.with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(LakeWriteError, match="ts: naive timestamps"):
        lake.write_samples(naive, now=now)
    other_tz = df.with_columns(pl.col("ts").dt.convert_time_zone("Europe/Paris"))
    with pytest.raises(LakeWriteError, match="ts: timestamps are in Europe/Paris, not UTC"):
        lake.write_samples(other_tz, now=now)
    with pytest.raises(LakeWriteError, match=r"missing column\(s\) \['value'\]"):
        lake.write_samples(df.drop("value"), now=now)


def test_series_cardinality_limit(tmp_path, now):
    lake = Lake(str(tmp_path / "l"), limits=Limits(max_series_per_metric=3))
    res = lake.write_samples([Sample("m", 1.0, now, {"id": str(i)}) for i in range(5)], now=now)
    assert (res.accepted, res.rejected) == (3, 2)
    assert "series limit reached (3 series per metric)" in res.reasons[0]
    # existing series still accepted, new ones still refused in a later batch
    res2 = lake.write_samples(
        [Sample("m", 2.0, now + timedelta(seconds=1), {"id": "0"}), Sample("m", 2.0, now, {"id": "9"})], now=now
    )
    assert (res2.accepted, res2.rejected) == (1, 1)
    assert lake.catalogue().height == 3


def test_events_round_trip(lake, now):
    from tasks.lake import Event
    from tasks.lake.schema import SchemaError

    lake.write_events([Event("metrics.collected", "cortex.flow.collect", {"samples": 3}, ts=now)])
    ev = lake.events(since=now - timedelta(minutes=1))
    assert ev.get_column("name").to_list() == ["metrics.collected"]
    assert '"samples": 3' in ev.get_column("payload")[0]
    with pytest.raises(SchemaError, match="unknown event 'metrics.colected'"):
        lake.write_events([Event("metrics.colected", "x")])


def test_datetime_now_helper_is_utc_ms():
    from tasks.lake.schema import now_utc

    n = now_utc()
    assert n.tzinfo == UTC and n.microsecond % 1000 == 0
    assert abs((datetime.now(UTC) - n).total_seconds()) < 5


def test_duplicates_inside_one_batch_keep_the_last_row(lake, now):
    batch = [Sample("g", 1.0, now), Sample("g", 5.0, now - timedelta(seconds=5)), Sample("g", 2.0, now)]
    res = lake.write_samples(batch, now=now)
    assert res.accepted == 2  # one identity appears twice: the later row wins
    df = lake.raw("g", now - timedelta(minutes=1), now + timedelta(seconds=1))
    assert df.get_column("value").to_list() == [5.0, 2.0]


def test_derived_tables_round_trip_and_refuse_bad_rows(lake, now):
    from tasks.lake import schema as S

    row = {
        "series_id": 1,
        "metric": "cpu",
        "labels": "{}",
        "issued_at": now,
        "ts": now + timedelta(minutes=5),
        "step": 1,
        "p10": 0.1,
        "p50": 0.5,
        "p90": 0.9,
        "p99": 0.99,
        "model": "xgboost",
        "version": "v1",
    }
    df = pl.DataFrame([row]).with_columns(pl.col("issued_at", "ts").dt.cast_time_unit("ms"))
    assert lake.write_rows(S.FORECASTS, df).accepted == 1
    lake.write_rows(S.FORECASTS, df.with_columns(pl.lit(0.6).alias("p50")))  # re-issued: last write wins
    got = lake.read_rows(S.FORECASTS, now - timedelta(hours=1), now + timedelta(hours=1))
    assert got.height == 1 and got.get_column("p50")[0] == 0.6
    with pytest.raises(LakeWriteError, match=r"forecasts: missing column\(s\) \['version'\]"):
        lake.write_rows(S.FORECASTS, df.drop("version"))
    with pytest.raises(LakeWriteError, match="forecasts.p90: non-finite"):
        lake.write_rows(S.FORECASTS, df.with_columns(pl.lit(float("nan")).alias("p90")))
    with pytest.raises(LakeWriteError, match="not a derived table"):
        lake.write_rows("samples", df)


def test_derived_rows_with_null_text_are_written_and_told_apart(lake, now):
    """router_outcomes' nullable text (``error``, ``kind``): a null is not the empty string."""
    from tasks.lake import schema as S

    row = {
        "outcome_id": "o1", "ts": now, "pool": "api", "target": "t1", "strategy": "p2c_ewma", "method": "GET",
        "path": "/", "kind": None, "size": 0, "latency_ms": 1.5, "status": 200, "ok": True, "error": None,
        "attempt": 1, "hedged": False, "features": "{}",
    }  # fmt: skip
    df = pl.DataFrame([row], schema_overrides={"kind": pl.String, "error": pl.String, "status": pl.Int32,
                                               "attempt": pl.Int32})  # fmt: skip
    assert lake.write_rows(S.ROUTER_OUTCOMES, df).accepted == 1
    # the same row with "" instead of null is different content (a new file, not a skipped re-send)
    assert lake.write_rows(S.ROUTER_OUTCOMES, df.with_columns(pl.lit("").alias("error"))).accepted == 1
    got = lake.read_rows(S.ROUTER_OUTCOMES, now - timedelta(hours=1), now + timedelta(hours=1))
    assert got.height == 1 and got["error"].to_list() == [""] and got["kind"].to_list() == [None]


def test_content_hash_takes_nullable_text_and_tells_null_from_empty() -> None:
    """router_outcomes has nullable text columns (kind, error): a batch with a null there must be
    writable, and must not share a file name with the same batch holding "" instead."""
    with_null = pl.DataFrame({"kind": [None, "a"]}, schema={"kind": pl.String})
    with_empty = pl.DataFrame({"kind": ["", "a"]}, schema={"kind": pl.String})
    assert content_hash(with_null, ["kind"]) != content_hash(with_empty, ["kind"])

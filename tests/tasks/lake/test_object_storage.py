"""The lake on object storage: a real S3 API (moto's server) on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

from tasks.config import load_settings
from tasks.lake import Lake, Sample


def test_lake_round_trip_on_s3(s3_endpoint, now):
    settings = load_settings(
        overrides={
            "lake.root": "s3://metrics/cortex",
            "lake.s3_endpoint": s3_endpoint,
            "lake.s3_region": "us-east-1",
            "lake.s3_access_key_id": "k",
            "lake.s3_secret_access_key": "s",
        }
    )
    lake = Lake.from_settings(settings)
    res = lake.write_samples(
        [Sample("cpu", float(i), now - timedelta(minutes=i), {"h": "a"}) for i in range(30)], now=now
    )
    assert res.accepted == 30 and all(f.startswith("metrics/cortex/") for f in res.files)
    again = lake.write_samples(
        [Sample("cpu", float(i), now - timedelta(minutes=i), {"h": "a"}) for i in range(30)], now=now
    )
    assert again.duplicate_files == 1
    lake.write_samples([Sample("cpu", 100.0, now, {"h": "a"})], now=now)  # overwrites the value at `now`
    raw = lake.raw("cpu", now - timedelta(hours=1), now + timedelta(seconds=1))
    assert raw.height == 30 and raw.get_column("value")[-1] == 100.0
    rep = lake.compact(now=now + timedelta(days=1))
    assert rep.duplicates_dropped == 1
    lake.build_rollups(now=now + timedelta(hours=1))
    q = lake.query("cpu", now - timedelta(minutes=30), now, step=timedelta(minutes=10), agg="max")
    assert q.get_column("value").to_list() == [29.0, 20.0, 10.0]  # samples i minutes ago have value i
    last = lake.query("cpu", now, now + timedelta(seconds=1), step=timedelta(minutes=10), agg="max")
    assert last.get_column("value").to_list() == [100.0]
    assert lake.stats()["tables"]["samples"]["rows"] == 30

from datetime import timedelta

import polars as pl
import pytest

from tasks.lake.importer import LakeImportError, mapping_from_cli

CSV = """time,cpu,host
2026-11-27T10:00:00Z,0.5,a
2026-11-27T10:01:00Z,abc,a
2026-11-27T10:02:00,0.7,a
1795780000,0.8,b
2026-11-27T10:03:00+00:00,nan,b
2026-11-27T10:04:00.250+00:00,0.9,b
"""


def test_csv_import_reports_line_and_column(lake, now, tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(CSV)
    res = lake.import_file(
        str(p), time_col="time", value_col="cpu", metric="cpu_utilization", label_cols={"host": "host"}
    )
    assert (res.accepted, res.rejected) == (3, 3)
    assert res.reasons == [
        "line 3, column 'cpu': not a number: 'abc'",
        "line 4, column 'time': naive timestamp 2026-11-27T10:02:00 (add Z or a UTC offset)",
        "line 6, column 'cpu': non-finite value 'nan'",
    ]
    df = lake.raw("cpu_utilization", now - timedelta(days=30), now)
    assert sorted(df.get_column("value").to_list()) == [0.5, 0.8, 0.9]
    assert df.filter(pl.col("value") == 0.9).get_column("ts")[0].microsecond == 250_000


def test_strict_import_imports_nothing(lake, tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(CSV)
    with pytest.raises(LakeImportError, match="3 bad row"):
        lake.import_file(str(p), time_col="time", value_col="cpu", metric="m", strict=True)
    assert lake.storage.files("samples") == []


def test_missing_columns_and_bad_mapping(lake, tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(CSV)
    with pytest.raises(LakeImportError, match=r"no column\(s\) \['tim'\]; the file has \['time', 'cpu', 'host'\]"):
        lake.import_file(str(p), time_col="tim", value_col="cpu", metric="m")
    with pytest.raises(LakeImportError, match="--metric: metric: invalid metric name 'bad-name'"):
        lake.import_file(str(p), time_col="time", value_col="cpu", metric="bad-name")
    with pytest.raises(LakeImportError, match="exactly one of a metric name"):
        lake.import_file(str(p), time_col="time", value_col="cpu")
    with pytest.raises(LakeImportError, match="no such file"):
        lake.import_file(str(tmp_path / "nope.csv"), time_col="t", value_col="v", metric="m")


def test_parquet_import_with_metric_column(lake, now, tmp_path):
    p = tmp_path / "m.parquet"
    pl.DataFrame(
        {
            "t": [now - timedelta(minutes=2), now - timedelta(minutes=1)],
            "name": ["req_total", "bad name"],
            "v": [1, 2],
            "svc": ["api", "api"],
        }
    ).with_columns(pl.col("t").dt.convert_time_zone("UTC")).write_parquet(p)
    m = mapping_from_cli("t", "v", None, "name", ["service=svc"])
    from tasks.lake.importer import import_file

    res = import_file(lake, p, m)
    assert (res.accepted, res.rejected) == (1, 1)
    assert res.reasons == ["row 2, column 'name': invalid metric name 'bad name'"]
    assert lake.raw('req_total{service="api"}', now - timedelta(hours=1), now).height == 1


def test_dry_run_writes_nothing(lake, tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(CSV)
    res = lake.import_file(str(p), time_col="time", value_col="cpu", metric="m", dry_run=True)
    assert res.accepted == 3 and lake.storage.files("samples") == []

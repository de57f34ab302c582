from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tasks.lake.importer import ColumnMapping, LakeImportError, parse_label_maps

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
    m = ColumnMapping("t", "v", None, "name", tuple(parse_label_maps(["service=svc"]).items()))
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


def test_epoch_seconds_and_milliseconds_columns(lake, now, tmp_path):
    """--help promises epoch timestamps: a column of only numbers must import (seconds or ms)."""
    secs = int((now - timedelta(minutes=5)).timestamp())
    p = tmp_path / "e.csv"
    p.write_text(f"t,v\n{secs},1\n{secs + 60},2\n{(secs + 120) * 1000},3\n")
    res = lake.import_file(str(p), time_col="t", value_col="v", metric="m")
    assert (res.accepted, res.rejected) == (3, 0), res.reasons
    df = lake.raw("m", now - timedelta(hours=1), now)
    assert [int(t.timestamp()) for t in df.get_column("ts").to_list()] == [secs, secs + 60, secs + 120]


@pytest.mark.parametrize("bad", ["4611686018427387904", "1e16", "-1e16", "9.9e300"])
def test_out_of_range_epoch_is_rejected_naming_line_and_column(lake, now, tmp_path, bad):
    """2^62 ms used to be stored as 1970-01-01 and 1e16 to panic: both are out of range."""
    p = tmp_path / "e.csv"
    p.write_text(f"when,v\n{now.isoformat()},1\n{bad},2\n")
    res = lake.import_file(str(p), time_col="when", value_col="v", metric="m")
    assert (res.accepted, res.rejected) == (1, 1)
    assert len(res.reasons) == 1
    assert res.reasons[0].startswith(f"line 3, column 'when': timestamp {bad} is out of range")
    assert lake.raw("m", now - timedelta(days=400_000), now + timedelta(seconds=1)).height == 1


def test_out_of_range_parquet_datetime_is_rejected(lake, now, tmp_path):
    p = tmp_path / "e.parquet"
    us = [int(now.timestamp() * 1e6), 300_000_000_000_000_000]  # now; the year 11476
    pl.DataFrame({"t": pl.Series(us).cast(pl.Datetime("us", "UTC")), "v": [1.0, 2.0]}).write_parquet(p)
    res = lake.import_file(str(p), time_col="t", value_col="v", metric="m")
    assert (res.accepted, res.rejected) == (1, 1)
    assert res.reasons[0].startswith("row 2, column 't': timestamp +11476-08-15T05:20:00Z is out of range")


def test_write_stage_rejections_name_the_file_line(lake, now, tmp_path):
    """Rows refused after the importer's own checks (future skew, series limit) name the file's
    line and column, not their position among the good rows ("row 0")."""
    from tasks.lake.write import Limits

    lake.limits = Limits(max_series_per_metric=1)
    p = tmp_path / "f.csv"
    future = datetime.now(UTC) + timedelta(days=1)  # the importer checks against the real clock
    p.write_text(f"t,v,h\nbad,0,a\n{now.isoformat()},1,a\n{future.isoformat()},2,a\n{now.isoformat()},3,b\n")
    res = lake.import_file(str(p), time_col="t", value_col="v", metric="m", label_cols={"h": "h"})
    assert (res.accepted, res.rejected) == (1, 3)
    assert res.reasons[0] == "line 2, column 't': cannot parse timestamp bad"
    assert res.reasons[1].startswith("line 4, column 't': more than 3600s in the future")
    assert res.reasons[2].startswith("line 5: labels: series limit reached")


def _many_rows_csv(path, now, n, bad_every=0):
    """n samples one minute apart over several days, two hosts; every ``bad_every``-th value is bad."""
    lines = ["t,v,h"]
    for i in range(n):
        ts = now - timedelta(minutes=n - i)
        v = "oops" if bad_every and i % bad_every == bad_every - 1 else str(i)
        lines.append(f"{ts.isoformat()},{v},{'ab'[i % 2]}")
    path.write_text("\n".join(lines) + "\n")


def test_import_in_chunks_loses_and_duplicates_nothing(tmp_path, now):
    """A file of several chunks (the chunk size is a setting) over several days: every row once,
    rejections named by their file line in every chunk, one visible commit at the end."""
    from tasks.config import load_settings
    from tasks.lake import Lake

    settings = load_settings(None, [f"lake.root={tmp_path / 'lake'}", "lake.import_chunk_rows=1000"])
    lake = Lake.from_settings(settings)
    assert lake.limits.import_chunk_rows == 1000
    n = 4321  # 5 chunks, 4 days
    p = tmp_path / "big.csv"
    _many_rows_csv(p, datetime.now(UTC).replace(microsecond=0), n, bad_every=1500)
    res = lake.import_file(str(p), time_col="t", value_col="v", metric="m", label_cols={"h": "h"})
    assert (res.accepted, res.rejected) == (n - 2, 2)
    assert res.reasons == ["line 1501, column 'v': not a number: 'oops'", "line 3001, column 'v': not a number: 'oops'"]
    df = lake.raw("m", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1))
    assert df.height == n - 2
    assert df.select("series", "ts").is_duplicated().sum() == 0
    assert sorted(df.get_column("value").cast(int).to_list()) == [i for i in range(n) if i % 1500 != 1499]
    assert res.new_series == 2 and lake.catalogue().height == 2
    # the same import again changes nothing a reader sees
    again = lake.import_file(str(p), time_col="t", value_col="v", metric="m", label_cols={"h": "h"})
    assert again.accepted == n - 2 and again.files == [] and again.duplicate_files > 0
    assert lake.raw("m", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1)).height == n - 2


def test_strict_chunked_import_refused_in_a_later_chunk_imports_nothing(tmp_path):
    from tasks.lake import Lake
    from tasks.lake.write import Limits

    lake = Lake(str(tmp_path / "lake"), limits=Limits(import_chunk_rows=100))
    p = tmp_path / "big.csv"
    _many_rows_csv(p, datetime.now(UTC).replace(microsecond=0), 450, bad_every=400)
    with pytest.raises(LakeImportError, match=r"1 bad row\(s\), nothing imported: line 401, column 'v'"):
        lake.import_file(str(p), time_col="t", value_col="v", metric="m", strict=True)
    assert lake.storage.files("samples") == [] and lake.storage.files("series") == []
    assert lake.storage.temp_files("samples") == []  # the staged chunks were discarded


# ---- --label LABEL=COLUMN: one parser for the CLI and the importer ----------------------------
def test_label_maps_good_map():
    assert parse_label_maps(["host=machine", " service = svc "]) == {"host": "machine", "service": "svc"}
    assert parse_label_maps(None) == {} and parse_label_maps([]) == {}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["host"], "--label 'host': expected LABEL=COLUMN, e.g. --label host=hostname"),
        (["=machine"], "--label '=machine': expected LABEL=COLUMN"),
        ([" =machine"], "--label ' =machine': expected LABEL=COLUMN"),
        (["host="], "--label 'host=': expected LABEL=COLUMN"),
        (["host=a", "host=b"], "--label 'host=b': label 'host' is already taken from column 'a'"),
        (["bad-name=col"], "--label 'bad-name=col': labels: invalid label name 'bad-name'"),
        (["__name__=col"], "--label '__name__=col': labels: label name '__name__' is reserved"),
    ],
    ids=["missing-equals", "empty-name", "blank-name", "empty-column", "duplicate", "invalid-name", "reserved-name"],
)
def test_label_maps_refused(items, message):
    with pytest.raises(LakeImportError) as err:
        parse_label_maps(items)
    assert str(err.value).startswith(message)

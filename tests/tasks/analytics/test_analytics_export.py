"""export(): CSV / Parquet / JSON lines round-trip to the lake's own rows; errors; empty lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tasks.analytics import AnalyticsError, export
from tasks.demo import generate_demo_history
from tasks.lake import schema as S
from tasks.lake.lake import Lake, QueryError

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START, END = NOW - timedelta(hours=12), NOW - timedelta(hours=2)
READERS = {"csv": "read_csv", "parquet": "read_parquet", "jsonl": "read_json"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    frame = generate_demo_history(NOW, days=1)
    lake.write_samples(frame)
    lake.write_samples(frame.filter(pl.col("ts") >= NOW - timedelta(hours=3)))  # a re-sent batch
    lake.write_events([S.Event("alert.firing", "alert.x", {"n": i}, ts=NOW - timedelta(hours=i)) for i in range(1, 6)])
    return lake


def _read(path: Path, fmt: str) -> pl.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    df = con.sql(f"SELECT * FROM {READERS[fmt]}('{path}')").pl()
    return df.with_columns(pl.col("ts").cast(S.POLARS_TS)) if "ts" in df.columns else df


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_selector_export_round_trips(lake: Lake, tmp_path: Path, fmt: str) -> None:
    sel = 'host_cpu_utilization_ratio{host=~"web-.*"}'
    out = tmp_path / f"cpu.{fmt}"
    res = export(lake, sel, fmt, out, start=START, end=END)
    expected = lake.raw(sel, START, END).select("metric", "labels", "ts", "value").sort("labels", "ts")
    got = _read(out, fmt).select("metric", "labels", "ts", "value").sort("labels", "ts")
    assert res.rows == expected.height == got.height == 3 * 600
    assert res.bytes == out.stat().st_size > 0 and res.fmt == fmt
    assert got["metric"].to_list() == expected["metric"].to_list()
    assert got["labels"].to_list() == expected["labels"].to_list()
    assert got["ts"].to_list() == expected["ts"].to_list()
    assert (got["value"] - expected["value"]).abs().max() == 0.0
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary name was renamed away


def test_table_export_deduplicates_resent_rows(lake: Lake, tmp_path: Path) -> None:
    start, end = NOW - timedelta(hours=4), NOW + timedelta(minutes=1)
    res = export(lake, "samples", "parquet", tmp_path / "s.parquet", start=start, end=end)
    n_series = lake.catalogue().height
    # the last 3 hours were written twice, but each (series, ts) comes out once
    assert res.rows == lake.raw('{__name__=~".+"}', start, end).height == n_series * (4 * 60 + 1)
    got = _read(tmp_path / "s.parquet", "parquet")
    assert got.select("series_id", "ts").is_unique().all()
    ev = export(lake, "events", "jsonl", tmp_path / "e.jsonl", start=NOW - timedelta(hours=3, minutes=30), end=NOW)
    assert ev.rows == 3
    assert sorted(_read(tmp_path / "e.jsonl", "jsonl")["name"].to_list()) == ["alert.firing"] * 3


def test_bad_table_format_and_output_are_clear_errors(lake: Lake, tmp_path: Path) -> None:
    with pytest.raises(AnalyticsError, match="fmt: unknown format 'xlsx'"):
        export(lake, "samples", "xlsx", tmp_path / "x.xlsx", start=START, end=END)
    with pytest.raises(AnalyticsError, match="table_or_selector: 'samples{' is neither a lake table"):
        export(lake, "samples{", "csv", tmp_path / "x.csv", start=START, end=END)
    with pytest.raises(AnalyticsError, match="table_or_selector: 'series'"):
        export(lake, "series", "csv", tmp_path / "x.csv", start=START, end=END)
    with pytest.raises(AnalyticsError, match="out: folder"):
        export(lake, "samples", "csv", tmp_path / "nope" / "x.csv", start=START, end=END)
    with pytest.raises(AnalyticsError, match="out: .* is a directory"):
        export(lake, "samples", "csv", tmp_path, start=START, end=END)
    with pytest.raises(AnalyticsError, match="end"):
        export(lake, "samples", "csv", tmp_path / "x.csv", start=END, end=START)
    assert not isinstance(AnalyticsError("x"), QueryError)


def test_empty_lake_exports_zero_rows(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    res = export(lake, "samples", "csv", tmp_path / "e.csv", start=START, end=END)
    assert res.rows == 0
    assert (tmp_path / "e.csv").read_text().splitlines() == ["series_id,metric,labels,ts,value"]
    res2 = export(lake, "host_load1", "parquet", tmp_path / "e.parquet", start=START, end=END)
    assert res2.rows == 0 and _read(tmp_path / "e.parquet", "parquet").height == 0


def test_export_writes_through_a_symlink(lake: Lake, tmp_path: Path) -> None:
    """Issue 11 #10: the link stays a link and the file it points to gets the export."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "cpu.csv"
    target.write_text("old\n")
    link = tmp_path / "cpu.csv"
    link.symlink_to(target)
    res = export(lake, "host_cpu_utilization_ratio", "csv", link, start=START, end=END)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert res.rows > 0 and _read(target, "csv").height == res.rows
    assert not list((tmp_path / "real").glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))


#: Runs an export that is SIGKILLed right after DuckDB wrote the whole output, before it is renamed.
KILLED_EXPORT = """
import os, signal, sys
from datetime import datetime
from tasks.analytics import export
from tasks.lake.lake import Lake

class KillAfterCopy:
    def __init__(self, con):
        self.con = con
    def execute(self, *args):
        self.con.execute(*args)
        os.kill(os.getpid(), signal.SIGKILL)
    def close(self):
        self.con.close()

real = Lake.views
Lake.views = lambda self: KillAfterCopy(real(self))
root, out, start, end = sys.argv[1:]
export(Lake(root), "samples", "csv", out, start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))
"""


def test_killed_export_leaves_the_target_alone_and_its_temp_file_is_swept(lake: Lake, tmp_path: Path) -> None:
    """Issue 11 #10: a killed export changes nothing a reader of its target sees, and its temp file
    does not stay behind: the next export into the folder removes it (its process is gone)."""
    out = tmp_path / "a.csv"
    out.write_text("old\n")
    args = [lake.storage.base, str(out), START.isoformat(), END.isoformat()]
    proc = subprocess.run([sys.executable, "-c", KILLED_EXPORT, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert out.read_text() == "old\n"
    assert list(tmp_path.glob(".*.tmp"))  # what SIGKILL leaves: a complete, never renamed temp file
    res = export(lake, "samples", "csv", tmp_path / "b.csv", start=START, end=END)
    assert res.rows > 0
    assert not list(tmp_path.glob(".*.tmp"))
    assert out.read_text() == "old\n"

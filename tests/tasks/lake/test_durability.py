"""A writer killed mid-batch loses nothing committed; concurrent writers lose and duplicate nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pyarrow.parquet as pq

from tasks.lake import Lake

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    import numpy as np, polars as pl
    from tasks.lake import Lake
    root, tag, n_batches, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lake = Lake(root)
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    for b in range(n_batches):
        ts = [now - timedelta(milliseconds=rows * n_batches - (b * rows + i)) for i in range(rows)]
        df = pl.DataFrame({"metric": ["w"] * rows, "labels": ['{"writer":"%s"}' % tag] * rows,
                           "ts": ts, "value": np.full(rows, float(b))}).with_columns(
                           pl.col("ts").dt.cast_time_unit("ms").dt.replace_time_zone("UTC"))
        res = lake.write_samples(df, now=now)
        assert res.rejected == 0, res.reasons
        print(f"committed {b}", flush=True)
    """
)


def _spawn(root, tag, n, rows):
    env = dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, root, tag, str(n), str(rows)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=os.getcwd(),
    )


def test_writer_killed_mid_batch_leaves_no_partial_file_and_loses_nothing(tmp_path, now):
    root = str(tmp_path / "lake")
    rows = 200_000
    proc = _spawn(root, "k", 50, rows)
    committed = -1
    # wait for a few commits, then kill at an arbitrary point inside a later batch
    while committed < 2:
        line = proc.stdout.readline()
        assert line, "writer died early"
        committed = int(line.split()[1])
    time.sleep(0.15)
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate()
    committed = max([committed] + [int(x.split()[1]) for x in rest.splitlines() if x.startswith("committed")])
    lake = Lake(root)
    for f in lake.storage.files("samples"):
        pq.read_metadata(f.path)  # every visible file is a complete Parquet file
    df = lake.raw("w", now - timedelta(days=2), now + timedelta(seconds=1))
    batches = set(df.get_column("value").cast(int).unique().to_list())
    # every acknowledged batch is fully there; at most the in-flight one may also have landed, whole
    assert set(range(committed + 1)) <= batches
    assert len(batches) in (committed + 1, committed + 2)
    assert df.height == len(batches) * rows
    assert df.select("series", "ts").is_duplicated().sum() == 0


def test_two_writers_at_once_lose_and_duplicate_nothing(tmp_path, now):
    root = str(tmp_path / "lake")
    n, rows = 8, 20_000
    procs = [_spawn(root, tag, n, rows) for tag in ("a", "b")]
    # a third writer re-sends writer a's batches concurrently (same content → same identities)
    procs.append(_spawn(root, "a", n, rows))
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        assert out.count("committed") == n
    lake = Lake(root)
    df = lake.raw("w", now - timedelta(days=2), now + timedelta(seconds=1))
    assert df.height == 2 * n * rows
    assert df.select("series", "ts").is_duplicated().sum() == 0
    assert lake.catalogue().height == 2
    lake.compact(now=now + timedelta(days=2))
    assert lake.stats()["tables"]["samples"]["rows"] == 2 * n * rows

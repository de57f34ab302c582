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


#: Runs ``cortex-perf lake import`` in this process, SIGKILLed (deterministically) as the writer
#: starts its second samples file: the first one is written by then.
KILLED_IMPORT = textwrap.dedent(
    """
    import os, signal, sys
    from tasks.lake.storage import LakeStorage
    real = LakeStorage.write_temp
    seen = []
    def write_temp(self, table, day, data):
        if table == "samples":
            seen.append(day)
            if len(seen) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(self, table, day, data)
    LakeStorage.write_temp = write_temp
    from flows.cli import app
    app(sys.argv[1:])
    """
)


def test_import_killed_midway_shows_nothing_and_reimport_completes_it_exactly(tmp_path):
    """Issue 11 #10: a multi-day import killed after its first file shows readers nothing of it
    (its parts are published together at the end); running it again imports each row once."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(microsecond=0)
    n = 3 * 1440
    p = tmp_path / "days.csv"
    p.write_text("t,v\n" + "".join(f"{(now - timedelta(minutes=n - i)).isoformat()},{i}\n" for i in range(n)))
    root = tmp_path / "lake"
    args = ["--set", f"lake.root={root}", "lake", "import", str(p)]
    args += ["--time-col", "t", "--value-col", "v", "--metric", "imported"]
    killed = subprocess.run([sys.executable, "-c", KILLED_IMPORT, *args], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    lake = Lake(str(root))
    window = (now - timedelta(days=5), now + timedelta(seconds=1))
    assert lake.raw("imported", *window).height == 0  # nothing of the killed import is visible
    assert lake.catalogue().height == 0
    cli = "import sys; from flows.cli import app; app(sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    df = Lake(str(root)).raw("imported", *window)
    assert sorted(df.get_column("value").cast(int).to_list()) == list(range(n))
    # the killed writer's staged files are swept by maintenance once old (its pid is gone)
    leftovers = [f for t in ("samples", "series") for f in lake.storage.temp_files(t)]
    assert leftovers
    for f in leftovers:
        os.utime(f, (time.time() - 7200, time.time() - 7200))
    assert lake.compact(now=now + timedelta(days=2)).temp_files_removed == len(leftovers)

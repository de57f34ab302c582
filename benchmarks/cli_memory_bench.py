"""Peak memory of the CLI's lake commands on a multi-million-row lake (issue 11, item 7).

Run ``uv run python benchmarks/cli_memory_bench.py`` (2 M samples: 200 series x 10,000 minutes,
an 89 MB CSV; a few minutes) or ``--quick`` (40 k samples, a CI smoke run). ``--json`` makes the
last output line one JSON object of the figures.

What is measured, each command a real ``cortex-perf`` process run the way a user runs it, its peak
RSS read by GNU ``time -f %M`` (the maximum resident set of the command itself):

1. ``lake import`` of the generated CSV (``--metric imp --label h=h``), which reads the file in
   ``lake.import_chunk_rows`` chunks and publishes the batch at once;
2. ``lake query '{__name__=~".+"}' --since 0001-01-01`` as ``--json`` and ``--csv`` (streamed:
   every row to /dev/null) and as the table view (50 rows);
3. the baseline, side by side in the same run: a plain ``polars.read_csv`` of the same file in a
   fresh Python process (what "load the whole file" costs on this machine), so the import's figure
   reads as a ratio to it and to the file's size.

Before the fix (main at b504c7e, same machine, same lake) these were 4,694 MB (query --json),
828 MB (--csv), 500 MB (table view) and 1,036 MB (import of the 89 MB CSV).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

TIME = shutil.which("time") or "/usr/bin/time"


def make_csv(path: Path, series: int, minutes: int) -> int:
    """``t,h,v`` rows: ``series`` hosts x ``minutes`` one-minute samples ending an hour ago."""
    end = int(time.time()) - 3600
    start = end - 60 * minutes
    ts = np.arange(start, end, 60, dtype=np.int64)
    rng = np.random.default_rng(7)
    frame = pl.DataFrame(
        {
            "t": pl.Series(np.tile(ts, series) * 1000).cast(pl.Datetime("ms", "UTC")),
            "h": np.repeat([f"host-{i:04d}" for i in range(series)], len(ts)),
            "v": rng.normal(50, 10, series * len(ts)).round(3),
        }
    )
    frame.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%SZ")
    return frame.height


def peak_mb(cmd: list[str], env: dict[str, str], stdout: int | None = subprocess.DEVNULL) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one command, measured by GNU time; fails loudly if it fails."""
    t0 = time.monotonic()
    res = subprocess.run([TIME, "-f", "%M", *cmd], env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}")
    kb = int(res.stderr.strip().splitlines()[-1])
    return kb / 1024.0, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 k samples: a smoke run")
    ap.add_argument("--series", type=int, default=None)
    ap.add_argument("--minutes", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="last line: the figures as one JSON object")
    ap.add_argument("--dir", default=None, help="parent of the temporary lake and CSV")
    args = ap.parse_args()
    if not os.path.exists(TIME):
        raise SystemExit("GNU time is needed (Debian: apt-get install time)")
    series = args.series or (20 if args.quick else 200)
    minutes = args.minutes or (2_000 if args.quick else 10_000)

    work = Path(tempfile.mkdtemp(prefix="cortex-cli-mem-", dir=args.dir))
    try:
        csv = work / "in.csv"
        rows = make_csv(csv, series, minutes)
        lake = work / "lake"
        env = {**os.environ, "CORTEX_PERF_CONFIG": str(work / "none.yaml"), "CORTEX_PERF_DEBUG": ""}
        (work / "none.yaml").write_text("# defaults\n")
        # the console script of this environment: exactly the command a user runs
        cli = [str(Path(sys.executable).with_name("cortex-perf")), "--set", f"lake.root={lake}"]
        figures: dict[str, object] = {
            "samples": rows,
            "series": series,
            "csv_mb": round(csv.stat().st_size / 2**20, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        }
        base_mb, _ = peak_mb([sys.executable, "-c", f"import polars as pl; pl.read_csv({str(csv)!r})"], env)
        figures["baseline_polars_read_csv_mb"] = round(base_mb, 1)
        imp = [*cli, "lake", "import", str(csv), "--time-col", "t", "--value-col", "v", "--metric", "imp"]
        mb, took = peak_mb([*imp, "--label", "h=h"], env)
        figures["import_mb"], figures["import_s"] = round(mb, 1), round(took, 1)
        query = [*cli, "lake", "query", '{__name__=~".+"}', "--since", "0001-01-01"]
        for name, extra in (("query_json", ["--json"]), ("query_csv", ["--csv"]), ("query_table", [])):
            mb, took = peak_mb([*query, *extra], env)
            figures[f"{name}_mb"], figures[f"{name}_s"] = round(mb, 1), round(took, 1)
        figures["import_vs_read_csv"] = round(float(figures["import_mb"]) / base_mb, 2)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Report benchmark: wall time and peak memory of rendering the report notebooks on a demo lake.

Seeds a temporary lake with the demo history (``--days``, default 7; ``--quick``: 1 day and only
the performance report), then renders every report notebook the daily ``report`` flow renders
(papermill → nbconvert HTML, ``tasks.reports.run_report``) over the whole history, one by one, and
prints per report: wall seconds, plots, HTML size; plus the kernel start-up alone (an empty
notebook run through papermill) and the process tree's peak RSS (this process and its kernels,
sampled every 0.1 s). Target (issue 6): the daily report under 60 s and 2 GB on this machine.

    uv run python benchmarks/report_bench.py [--days N] [--quick] [--json]

``--json``: the last output line is one JSON object (``reports``, ``total_s``, ``kernel_startup_s``,
``peak_rss_mb``, ``samples``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_S = 60.0
TARGET_MB = 2048.0


class PeakRSS:
    """Peak resident memory of this process and its children (the notebook kernels)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a kernel may exit between listing and reading
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> PeakRSS:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def kernel_startup_s(tmp: Path) -> float:
    """One empty notebook through papermill: what every report pays before its first cell."""
    import nbformat
    import papermill as pm

    from tasks.reports import ensure_kernel

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
    src, out = tmp / "empty.ipynb", tmp / "empty.out.ipynb"
    nbformat.write(nb, src)
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(out), kernel_name=ensure_kernel(), progress_bar=False)
    return time.perf_counter() - t0


def run(days: float, names: list[str], console: Console) -> dict[str, Any]:
    from tasks.demo import seed_demo
    from tasks.lake import Lake
    from tasks.reports import run_report

    with tempfile.TemporaryDirectory(prefix="report-bench-") as d:
        tmp = Path(d)
        lake = Lake(str(tmp / "lake"))
        with console.status(f"seeding {days:g} day(s) of demo history"):
            seeded = seed_demo(lake, days=days)
        samples = int(getattr(seeded, "rows", 0) or lake.stats()["tables"]["samples"]["rows"])
        startup = kernel_startup_s(tmp)
        reports = []
        with PeakRSS() as rss:
            t_all = time.perf_counter()
            for name in names:
                with console.status(f"rendering {name}"):
                    t0 = time.perf_counter()
                    res = run_report(name, lake_root=str(tmp / "lake"), out_dir=tmp / "reports", since=f"{days:g}d")
                    secs = time.perf_counter() - t0
                html = Path(res.html)
                reports.append(
                    {
                        "report": name,
                        "seconds": round(secs, 2),
                        "images": res.images,
                        "html_kb": html.stat().st_size // 1024,
                    }
                )
            total = time.perf_counter() - t_all
        return {
            "reports": reports,
            "total_s": round(total, 2),
            "kernel_startup_s": round(startup, 2),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            "samples": samples,
            "days": days,
        }


def main(argv: list[str] | None = None) -> int:
    from tasks.reports import NOTEBOOKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=None, help="days of demo history (default 7; quick 1)")
    ap.add_argument("--quick", action="store_true", help="1 day, the performance report only: the CI smoke run")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = ap.parse_args(argv)
    days = args.days or (1.0 if args.quick else 7.0)
    if days <= 0:
        ap.error("--days must be positive")
    names = ["performance_report"] if args.quick else list(NOTEBOOKS)
    console = Console(stderr=True)
    r = run(days, names, console)
    t = Table(title=f"Report rendering on {r['samples']:,} demo samples ({days:g} days)")
    for col in ("report", "seconds", "plots", "HTML"):
        t.add_column(col, justify="left" if col == "report" else "right")
    for rep in r["reports"]:
        t.add_row(rep["report"], f"{rep['seconds']:.1f}", str(rep["images"]), f"{rep['html_kb']} KiB")
    ok = "[green]ok[/]"
    bad = "[red]missed[/]"
    t.add_row("all", f"{r['total_s']:.1f}", "", f"target ≤ {TARGET_S:.0f} s {ok if r['total_s'] <= TARGET_S else bad}")
    console.print(t)
    console.print(
        f"kernel start-up alone {r['kernel_startup_s']:.1f} s; peak RSS (with kernels) {r['peak_rss_mb']:.0f} MB "
        f"(target ≤ {TARGET_MB:.0f} MB {ok if r['peak_rss_mb'] <= TARGET_MB else bad})"
    )
    console.print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Lake benchmark: ingestion, queries over a week-long lake, one collect tick, and memory.

Run ``uv run python benchmarks/lake_bench.py`` (full: a 60 M-sample lake, several minutes) or
``--quick`` (small sizes, a CI smoke run under a minute). ``--json`` makes the last output line
one JSON object of the figures. Everything it needs is generated or started here: the data
(numpy), a ``redis-server`` on a free loopback port and 10 Prometheus scrape targets served
in-process. The lake lives in a temporary directory (or ``--dir``) and is deleted afterwards.

What is measured, in one run:

1. Ingestion: ``Lake.write_samples(frame)`` on batches of 1 M samples vs DuckDB writing the same
   Arrow table (metric, labels, ts, value) to one zstd Parquet file. Rounds are interleaved and
   the median taken (5 rounds; 3 in --quick), because a shared machine is noisy.
2. A lake of 1,000 series x 7 days at 10 s (60.5 M samples), written day by day in ~1 M-row
   batches, then compacted and rolled up. Then p50/p95 over ``--reps`` repetitions of (a) the
   last hour of one series (``raw``), (b) a 5-minute average of all 1,000 series over the week
   (``query``, answered from rollups) and (c) the top 10 series by 1-hour average (``top_k``).
3. One collect tick: host + Redis + 10 scrape targets through ``tasks.sources.runner.collect_all``
   and one ``write_samples``, in a child process (so its RSS is the collect process's own).
4. Peak RSS of the lake part (this process) and of the collect child.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` importable
    sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from rich.columns import Columns  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.lake import Lake  # noqa: E402

METRIC = "bench_cpu_utilization"
STEP_S = 10
DATASETS = ROOT.parent / "shared" / "datasets"

#: key → (target, "min" | "max", unit shown)
TARGETS: dict[str, tuple[float, str]] = {
    "ingest_samples_per_s": (1_000_000, "min"),
    "ingest_ratio_vs_raw": (0.5, "min"),
    "last_hour_p95_s": (0.050, "max"),
    "week_rollup_p95_s": (1.0, "max"),
    "collect_tick_s": (1.0, "max"),
    "peak_rss_mb": (2048, "max"),
    "collect_rss_mb": (300, "max"),
}


@dataclass(frozen=True)
class Sizes:
    series: int
    days: int
    ingest_rows: int
    ingest_rounds: int
    reps: int
    ticks: int
    targets: int
    metrics_per_target: int
    build_batch_rows: int


FULL = Sizes(
    series=1000,
    days=7,
    ingest_rows=1_000_000,
    ingest_rounds=5,
    reps=20,
    ticks=5,
    targets=10,
    metrics_per_target=50,
    build_batch_rows=1_000_000,
)
QUICK = Sizes(
    series=20,
    days=1,
    ingest_rows=200_000,
    ingest_rounds=3,
    reps=20,
    ticks=5,
    targets=10,
    metrics_per_target=50,
    build_batch_rows=50_000,  # several files per day, so compaction has work to do
)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    return None


def _maxrss_mb() -> float:
    """Peak RSS of this process.

    ``VmHWM`` (this process's own high-water mark) where Linux offers it: ``ru_maxrss`` of a
    child started by fork+exec also counts the parent's RSS at fork time, which would make the
    collect child look as big as the benchmark that started it.
    """
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    """Current RSS of this process."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pct(xs: list[float], q: float) -> float:
    """Percentile by linear interpolation (numpy's default), for small samples of timings."""
    return float(np.percentile(np.asarray(xs, dtype=float), q * 100))


def _timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    out: list[float] = []
    last: Any = None
    for _ in range(reps):
        t0 = time.perf_counter()
        last = fn()
        out.append(time.perf_counter() - t0)
    return out, last


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _labels_for(n: int) -> list[str]:
    return [json.dumps({"host": f"h{i:04d}", "region": f"r{i % 7}"}, separators=(",", ":")) for i in range(n)]


def _frame(
    labels: pl.Series, sidx: np.ndarray, ts_ms: np.ndarray, values: np.ndarray, metrics: pl.Series | None = None
) -> pl.DataFrame:
    """A bulk samples frame in the lake's input shape: metric, labels (JSON text), ts (ms, UTC), value.

    ``metrics`` (one name per series, like ``labels``) defaults to ``METRIC`` for every row.
    """
    metric = pl.repeat(METRIC, len(ts_ms), dtype=pl.String, eager=True) if metrics is None else metrics.gather(sidx)
    return pl.DataFrame(
        {
            "metric": metric,
            "labels": labels.gather(sidx),
            "ts": pl.Series(ts_ms, dtype=pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            "value": values,
        }
    )


def _values(rng: np.random.Generator, sidx: np.ndarray, ts_ms: np.ndarray, n_series: int) -> np.ndarray:
    """A daily cycle per series (own level and phase) plus noise: a plausible CPU gauge."""
    level = np.linspace(0.1, 0.7, n_series)[sidx]
    phase = (sidx * 0.37) % (2 * np.pi)
    day = 2 * np.pi * (ts_ms / 86_400_000.0)
    v = level + 0.15 * np.sin(day + phase) + rng.normal(0.0, 0.03, len(ts_ms))
    return np.clip(v, 0.0, 1.0)


def _grid(n_series: int, t0_ms: int, n_ts: int, step_s: int = STEP_S) -> tuple[np.ndarray, np.ndarray]:
    """Row layout of one batch: every series at n_ts consecutive ``step_s`` timestamps from t0."""
    ts = t0_ms + np.arange(n_ts, dtype=np.int64) * step_s * 1000
    return np.repeat(np.arange(n_series, dtype=np.int64), n_ts), np.tile(ts, n_series)


# ---------------------------------------------------------------------------------------------
# 1. ingestion: project write path vs raw DuckDB → Parquet
# ---------------------------------------------------------------------------------------------
def bench_ingest(workdir: Path, sizes: Sizes, now: datetime, console: Console) -> dict[str, Any]:
    n_series = max(1, min(1000, sizes.ingest_rows // 1000))  # 1,000 series x 1,000 timestamps per 1 M
    n_ts = sizes.ingest_rows // n_series
    rows = n_series * n_ts
    labels = pl.Series("labels", _labels_for(n_series), dtype=pl.String)
    rng = np.random.default_rng(1)
    lake = Lake(str(workdir / "ingest-lake"))
    raw_dir = workdir / "ingest-raw"
    raw_dir.mkdir()
    con = duckdb.connect(":memory:")
    end_ms = int(now.timestamp() * 1000) // 1000 * 1000

    def batch(k: int) -> pl.DataFrame:
        # round k covers its own time window (ending at `now` for the last round): distinct
        # content, so the lake's duplicate-batch check never short-circuits a write.
        t0 = end_ms - (sizes.ingest_rounds + 1 - k) * n_ts * STEP_S * 1000
        sidx, ts = _grid(n_series, t0, n_ts)
        return _frame(labels, sidx, ts, _values(rng, sidx, ts, n_series))

    # Warm-up (not timed): registers the series, as in steady state where series are known,
    # and pays one-off imports / DuckDB start-up on both sides.
    warm = batch(0)
    lake.write_samples(warm, now=now)
    tbl = warm.to_arrow()
    con.register("tbl", tbl)
    con.sql(f"COPY (SELECT * FROM tbl) TO '{raw_dir}/warm.parquet' (FORMAT parquet, COMPRESSION zstd)")
    con.unregister("tbl")

    lake_s: list[float] = []
    raw_s: list[float] = []
    for k in range(1, sizes.ingest_rounds + 1):
        df = batch(k)
        tbl = df.to_arrow()  # the same canonical columns, prepared outside the timed region
        t0 = time.perf_counter()
        res = lake.write_samples(df, now=now)
        lake_s.append(time.perf_counter() - t0)
        if res.accepted != rows or res.rejected:
            raise RuntimeError(f"ingest round {k}: accepted {res.accepted}/{rows}, reasons {res.reasons}")
        con.register("tbl", tbl)
        t0 = time.perf_counter()
        con.sql(f"COPY (SELECT * FROM tbl) TO '{raw_dir}/r{k}.parquet' (FORMAT parquet, COMPRESSION zstd)")
        raw_s.append(time.perf_counter() - t0)
        con.unregister("tbl")
        console.log(f"ingest round {k}: lake {rows / lake_s[-1]:,.0f}/s, raw DuckDB {rows / raw_s[-1]:,.0f}/s")
    con.close()
    lake_med, raw_med = statistics.median(lake_s), statistics.median(raw_s)
    ingest, raw = rows / lake_med, rows / raw_med
    return {
        "ingest_samples_per_s": ingest,
        "raw_samples_per_s": raw,
        "ingest_ratio_vs_raw": ingest / raw,
        "ingest_batch_rows": rows,
        "ingest_rounds": sizes.ingest_rounds,
        "ingest_lake_batch_s": lake_s,
        "ingest_raw_batch_s": raw_s,
    }


# ---------------------------------------------------------------------------------------------
# 2. the big lake: build, then query
# ---------------------------------------------------------------------------------------------
#: values of one batch: (rng, series index per row, ts in epoch ms per row) -> value per row
ValuesFn = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]


def build_lake(
    lake: Lake,
    labels: pl.Series,
    values: ValuesFn,
    *,
    start: datetime,
    days: int,
    now: datetime,
    err: Console,
    metrics: pl.Series | None = None,
    step_s: int = STEP_S,
    batch_rows: int = 1_000_000,
    seed: int = 7,
    compact: bool = True,
) -> dict[str, Any]:
    """Write ``days`` of samples of every series (``labels[i]``, ``metrics[i]``) from ``start`` at
    ``step_s``, then compact and build the rollups, as the maintain flow would.

    Shared by this benchmark and ``report_bench.py --big`` so both measure the same kind of lake.
    Each write covers every series over a slice of a day (~``batch_rows`` rows, what a collector
    batch looks like); with ``batch_rows`` ≥ a whole day each day is one file, already the
    compacted layout, and ``compact=False`` skips the pass. Returns the build figures.
    """
    n_series = len(labels)
    per_day = 86_400 // step_s
    ts_per_batch = max(1, min(per_day, batch_rows // n_series))
    batches_per_day = -(-per_day // ts_per_batch)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    written = 0
    write_s = 0.0
    t_build = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as prog:
        task = prog.add_task("building lake", total=days * batches_per_day, rate="")
        for d in range(days):
            day0 = int((start + timedelta(days=d)).timestamp() * 1000)
            for b in range(batches_per_day):
                n_ts = min(ts_per_batch, per_day - b * ts_per_batch)
                sidx, ts = _grid(n_series, day0 + b * ts_per_batch * step_s * 1000, n_ts, step_s)
                df = _frame(labels, sidx, ts, values(rng, sidx, ts), metrics)
                del sidx, ts
                t0 = time.perf_counter()
                res = lake.write_samples(df, now=now)
                write_s += time.perf_counter() - t0
                if res.rejected:
                    raise RuntimeError(f"build: {res.rejected} rows rejected: {res.reasons}")
                written += res.accepted
                prog.update(task, advance=1, rate=f"{written / 1e6:,.1f} M samples, {written / write_s:,.0f}/s")
        out["build_write_s"] = write_s
        out["build_write_samples_per_s"] = written / write_s
        out["lake_samples"] = written
        out["rss_after_write_mb"] = _maxrss_mb()

        out["compact_s"] = 0.0
        out["compact_files_before"] = out["compact_files_after"] = 0
        if compact:
            task = prog.add_task("compact", total=1, rate="")
            t0 = time.perf_counter()
            rep = lake.compact(now=now + timedelta(days=1))
            out["compact_s"] = time.perf_counter() - t0
            out["compact_files_before"], out["compact_files_after"] = rep.files_before, rep.files_after
            prog.update(task, advance=1, rate=f"{rep.files_before} → {rep.files_after} files")
        out["rss_after_compact_mb"] = _maxrss_mb()

        task = prog.add_task("rollups", total=1, rate="")
        t0 = time.perf_counter()
        rr = lake.build_rollups(now=now)
        out["rollups_s"] = time.perf_counter() - t0
        out["rollup_rows"] = rr.rows_written
        out["rss_after_rollups_mb"] = _maxrss_mb()
        prog.update(task, advance=1, rate=f"{sum(rr.rows_written.values()):,} rollup rows")
    out["build_s"] = time.perf_counter() - t_build
    return out


def bench_lake(workdir: Path, sizes: Sizes, end: datetime, console: Console, err: Console) -> dict[str, Any]:
    n_series = sizes.series
    start = end - timedelta(days=sizes.days)
    labels = pl.Series("labels", _labels_for(n_series), dtype=pl.String)
    lake = Lake(str(workdir / "lake"))
    out: dict[str, Any] = {"lake_series": n_series, "lake_days": sizes.days}
    out |= build_lake(
        lake,
        labels,
        lambda rng, sidx, ts: _values(rng, sidx, ts, n_series),
        start=start,
        days=sizes.days,
        now=end,
        err=err,
        batch_rows=sizes.build_batch_rows,
    )
    written = out["lake_samples"]
    rng = np.random.default_rng(8)

    st = lake.stats()["tables"]
    out["lake_bytes"] = sum(t["bytes"] for t in st.values())
    out["lake_sample_bytes"] = st["samples"]["bytes"]
    out["lake_sample_files"] = st["samples"]["files"]
    if st["samples"]["rows"] != written:
        raise RuntimeError(f"lake holds {st['samples']['rows']} samples, {written} written")

    # (a) last hour of one series — a different series each time
    hosts = iter(rng.integers(0, n_series, size=10_000))
    hour = (end - timedelta(hours=1), end)
    expect_a = 3600 // STEP_S

    def last_hour() -> int:
        df = lake.raw(f'{METRIC}{{host="h{next(hosts):04d}"}}', *hour)
        if df.height != expect_a:
            raise RuntimeError(f"last hour: {df.height} rows, expected {expect_a}")
        return df.height

    # (b) 5-minute average of every series over the whole range (rollups answer it)
    expect_b = n_series * sizes.days * 288

    def week_rollup() -> int:
        df = lake.query(METRIC, start, end, step=timedelta(minutes=5), agg="avg")
        if df.height != expect_b:
            raise RuntimeError(f"5m rollup: {df.height} rows, expected {expect_b}")
        return df.height

    # (c) top 10 series by their 1-hour average
    def top10() -> int:
        df = lake.top_k(METRIC, *hour, k=10, agg="avg")
        if df.height != min(10, n_series):
            raise RuntimeError(f"top10: {df.height} rows")
        return df.height

    queries = {"last_hour": last_hour, "week_rollup": week_rollup, "top10": top10}
    with err.status("querying") as status:
        for name, fn in queries.items():
            status.update(f"querying: {name} x {sizes.reps}")
            t0 = time.perf_counter()
            fn()  # first (cold-ish) call reported separately
            out[f"{name}_first_s"] = time.perf_counter() - t0
            times, _ = _timed(fn, sizes.reps)
            out[f"{name}_p50_s"] = _pct(times, 0.50)
            out[f"{name}_p95_s"] = _pct(times, 0.95)
    out["query_reps"] = sizes.reps
    out["rss_after_queries_mb"] = _maxrss_mb()
    return out


# ---------------------------------------------------------------------------------------------
# 3. collect tick (child process) and the servers it scrapes (this process)
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def redis_server(console: Console) -> Iterator[str]:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        # some keyspace and traffic so INFO has something to say
        pipe = client.pipeline()
        for i in range(1000):
            pipe.set(f"bench:{i}", i)
        pipe.execute()
        for i in range(0, 2000, 3):
            client.get(f"bench:{i}")
        client.close()
        console.log(f"redis-server pid {proc.pid} on 127.0.0.1:{port}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def scrape_targets(n: int, metrics_per_target: int) -> Iterator[list[str]]:
    """``n`` Prometheus endpoints in this process, each its own registry of ~``metrics_per_target`` metrics."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

    servers = []
    urls = []
    try:
        for t in range(n):
            reg = CollectorRegistry()
            n_hist = 2
            n_counter = metrics_per_target // 5
            n_gauge = metrics_per_target - n_hist - n_counter
            for i in range(n_gauge):
                Gauge(f"app_gauge_{i}", "a gauge", registry=reg).set(t * 100 + i + 0.5)
            for i in range(n_counter):
                c = Counter(f"app_requests_{i}", "a counter", ["code"], registry=reg)
                c.labels("200").inc(1000 + i)
                c.labels("500").inc(i)
            for i in range(n_hist):
                h = Histogram(f"app_latency_{i}_seconds", "a histogram", registry=reg)
                for v in (0.003, 0.02, 0.2, 1.5):
                    h.observe(v)
            server, _thread = start_http_server(0, addr="127.0.0.1", registry=reg)
            servers.append(server)
            urls.append(f"http://127.0.0.1:{server.server_port}/metrics")
        yield urls
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def collect_child(args: argparse.Namespace) -> dict[str, Any]:
    """Body of ``--only collect``: build the sources, run ``--ticks`` ticks, report times and RSS."""
    from tasks.config.settings import (
        GpuSourceSettings,
        HostSourceSettings,
        PrefectSourceSettings,
        PrometheusTarget,
        RedisSourceSettings,
        Settings,
        SourcesSettings,
    )
    from tasks.sources.runner import build_sources, collect_all

    urls = [u for u in args.targets.split(",") if u]
    settings = Settings(
        sources=SourcesSettings(
            host=HostSourceSettings(),
            gpu=GpuSourceSettings(enabled=False),
            redis=RedisSourceSettings(enabled=True, url=args.redis_url),
            prometheus=[PrometheusTarget(name=f"bench{i}", url=u) for i, u in enumerate(urls)],
            prefect=PrefectSourceSettings(enabled=False),
        )
    )
    sources = build_sources(settings)
    workdir = Path(tempfile.mkdtemp(prefix="lake-bench-collect-", dir=args.dir))
    try:
        lake = Lake(str(workdir / "lake"))
        ticks: list[float] = []
        collect_s: list[float] = []
        samples = failures = 0
        for _ in range(args.ticks):
            t0 = time.perf_counter()
            res = collect_all(sources, timeout_s=settings.collect.source_timeout_s)
            t1 = time.perf_counter()
            wr = lake.write_samples(res.samples)
            ticks.append(time.perf_counter() - t0)
            collect_s.append(t1 - t0)
            samples, failures = wr.accepted, len(res.failures)
            if res.failures:
                print(f"collect failures: {[(f.source, f.error) for f in res.failures]}", file=sys.stderr)
        rss = _rss_mb()
        for s in sources:
            s.close()
        return {
            "collect_tick_s": statistics.median(ticks),
            "collect_tick_max_s": max(ticks),
            "collect_only_s": statistics.median(collect_s),
            "collect_first_tick_s": ticks[0],
            "collect_ticks": len(ticks),
            "collect_sources": [s.name for s in sources][:3]
            + ([f"+{len(sources) - 3} more"] if len(sources) > 3 else []),
            "collect_samples_per_tick": samples,
            "collect_failures": failures,
            "collect_rss_mb": rss,
            "collect_peak_rss_mb": _maxrss_mb(),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_collect(sizes: Sizes, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    with redis_server(console) as url, scrape_targets(sizes.targets, sizes.metrics_per_target) as urls:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "collect", "--json"]
        cmd += ["--redis-url", url, "--targets", ",".join(urls), "--ticks", str(sizes.ticks)]
        if args.dir:
            cmd += ["--dir", args.dir]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"collect child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if proc.stderr.strip():
        console.log(f"[yellow]collect child stderr:[/] {proc.stderr.strip()[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def _verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    target, kind = TARGETS[key]
    ok = value >= target if kind == "min" else value <= target
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


def _target_text(key: str, fmt: Callable[[float], str]) -> str:
    if key not in TARGETS:
        return "—"
    target, kind = TARGETS[key]
    return ("≥ " if kind == "min" else "≤ ") + fmt(target)


def _ms(v: float) -> str:
    return f"{v * 1000:,.1f} ms" if v < 10 else f"{v:,.1f} s"


def _table(title: str, rows: list[tuple[str, str, float, Callable[[float], str]]]) -> Table:
    t = Table(title=title, title_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_column("")
    for label, key, value, fmt in rows:
        t.add_row(label, fmt(value), _target_text(key, fmt), _verdict(key, value))
    return t


def render(r: dict[str, Any], console: Console) -> None:
    def rate(v: float) -> str:
        return f"{v:,.0f}/s"

    def ratio(v: float) -> str:
        return f"{v:.2f}x"

    def mb(v: float) -> str:
        return f"{v:,.0f} MB"

    def secs(v: float) -> str:
        return f"{v:,.1f} s"

    def count(v: float) -> str:
        return f"{v:,.0f}"

    ingest = _table(
        f"Ingestion ({r['ingest_batch_rows']:,}-row batches, median of {r['ingest_rounds']})",
        [
            ("Lake.write_samples", "ingest_samples_per_s", r["ingest_samples_per_s"], rate),
            ("DuckDB → Parquet (raw)", "raw_samples_per_s", r["raw_samples_per_s"], rate),
            ("lake / raw", "ingest_ratio_vs_raw", r["ingest_ratio_vs_raw"], ratio),
            ("build: write_samples", "", r["build_write_samples_per_s"], rate),
        ],
    )
    lake = _table(
        f"Lake: {r['lake_samples'] / 1e6:,.1f} M samples, {r['lake_series']:,} series x {r['lake_days']} d "
        f"(p50 / p95 of {r['query_reps']})",
        [
            ("build total", "", r["build_s"], secs),
            (
                "  writes / compact / rollups",
                "",
                0.0,
                lambda _v: f"{r['build_write_s']:.0f} / {r['compact_s']:.0f} / {r['rollups_s']:.0f} s",
            ),
            ("on disk", "", r["lake_bytes"] / 2**20, mb),
            ("(a) last hour, 1 series p50", "", r["last_hour_p50_s"], _ms),
            ("(a) last hour, 1 series p95", "last_hour_p95_s", r["last_hour_p95_s"], _ms),
            ("(b) 5m avg, all series p50", "", r["week_rollup_p50_s"], _ms),
            ("(b) 5m avg, all series p95", "week_rollup_p95_s", r["week_rollup_p95_s"], _ms),
            ("(c) top-10 by 1h avg p50", "", r["top10_p50_s"], _ms),
            ("(c) top-10 by 1h avg p95", "top10_p95_s", r["top10_p95_s"], _ms),
        ],
    )
    collect = _table(
        f"Collect tick (host + Redis + {r['collect_targets']} targets, median of {r['collect_ticks']})",
        [
            ("tick (collect + write)", "collect_tick_s", r["collect_tick_s"], _ms),
            ("  collect_all only", "", r["collect_only_s"], _ms),
            ("  first tick", "", r["collect_first_tick_s"], _ms),
            ("samples per tick", "", r["collect_samples_per_tick"], count),
        ],
    )
    memory = _table(
        "Memory (peak RSS)",
        [
            ("lake build + queries", "peak_rss_mb", r["peak_rss_mb"], mb),
            ("  after writes", "", r["rss_after_write_mb"], mb),
            ("  after compact", "", r["rss_after_compact_mb"], mb),
            ("  after rollups", "", r["rss_after_rollups_mb"], mb),
            ("collect process (RSS after ticks)", "collect_rss_mb", r["collect_rss_mb"], mb),
            ("collect process (peak)", "", r["collect_peak_rss_mb"], mb),
        ],
    )
    console.print(Columns([ingest, lake, collect, memory], equal=False, expand=False))


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as fh:
        mem = round(int(fh.readline().split()[1]) / 2**20, 1)
    return {
        "machine_cpus": os.cpu_count(),
        "machine_cpu_model": cpu,
        "machine_mem_gib": mem,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "polars": pl.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes (20 series x 1 day): a CI smoke run under a minute"
    )
    p.add_argument("--json", action="store_true", help="make the last output line one JSON object of the figures")
    p.add_argument("--dir", help="parent directory for the temporary lake (default: the system temp dir)")
    p.add_argument("--reps", type=int, help="query repetitions (default 20)")
    p.add_argument("--series", type=int, help="series in the big lake (default 1000; --quick 20)")
    p.add_argument("--days", type=int, help="days in the big lake (default 7; --quick 1)")
    p.add_argument("--keep", action="store_true", help="keep the lake directory (its path is printed)")
    # internal: the collect child
    p.add_argument("--only", choices=["collect"], help=argparse.SUPPRESS)
    p.add_argument("--redis-url", help=argparse.SUPPRESS)
    p.add_argument("--targets", default="", help=argparse.SUPPRESS)
    p.add_argument("--ticks", type=int, default=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.only == "collect":
        print(json.dumps(collect_child(args)), flush=True)
        return 0

    sizes = QUICK if args.quick else FULL
    over = {k: v for k, v in (("reps", args.reps), ("series", args.series), ("days", args.days)) if v}
    if over:
        sizes = Sizes(**{**sizes.__dict__, **over})
    width = None if sys.stdout.isatty() else 220
    console = Console(width=width, highlight=False)
    err = Console(stderr=True, width=width, highlight=False)

    if DATASETS.is_dir():
        console.log(f"datasets at {DATASETS} (not used: this benchmark generates its data)")
    else:
        console.log(f"[yellow]note:[/] {DATASETS} is absent; not needed, this benchmark generates its data")

    # Data ends at a day boundary ("now" for the lake), so the lake holds whole days.
    real_now = datetime.now(UTC)
    end = real_now.replace(hour=0, minute=0, second=0, microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="lake-bench-", dir=args.dir))
    console.log(
        f"{'quick' if args.quick else 'full'} run: {sizes.series} series x {sizes.days} d at {STEP_S}s, "
        f"lake in {workdir}"
    )
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "date": real_now.isoformat(timespec="seconds"),
    }
    results |= machine()
    t_all = time.perf_counter()
    try:
        results |= bench_ingest(workdir, sizes, end, console)
        results |= bench_lake(workdir, sizes, end, console, err)
        results["peak_rss_mb"] = _maxrss_mb()
    finally:
        if args.keep:
            console.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results |= bench_collect(sizes, args, console)
    results["collect_targets"] = sizes.targets
    results["total_s"] = time.perf_counter() - t_all

    render(results, console)
    misses = [k for k, (t, kind) in TARGETS.items() if not (results[k] >= t if kind == "min" else results[k] <= t)]
    results["misses"] = misses
    console.print(f"targets missed: {', '.join(misses)}" if misses else "all targets met")
    if args.json:
        print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Report benchmark: wall time and peak memory of the daily report (the four report notebooks).

Two lakes:

* **demo** (default): a temporary lake seeded with the demo history (``--days``, default 7;
  ``--quick``: 1 day and only the performance report, the CI smoke run), every report over the
  whole history (``tasks.reports.run_report``).
* **big** (``--big`` / ``--samples 50M``): a lake of ≥ 50 M samples shaped like the demo's metrics
  (the demo's 6 host metrics on as many hosts as the count needs: 188 for 50 M; 2 Redis, 4 GPU
  hosts x 2 GPUs; 30 days at 60 s, the collector's default interval, plus the report day up to
  06:37) and what the other flows leave in a month: hourly forecasts of the forecast
  selectors, 1-minute anomaly scores of the anomaly selectors, alert episodes, scaling decisions
  and a ``metrics.collected`` event per tick. It is built once with the lake benchmark's builder
  (``lake_bench.build_lake``) and cached under ``--cache-dir`` (default
  ``$TMPDIR/cortex-perf-report-bench``; ``--rebuild`` builds it again). The reports are then
  rendered as the daily ``report`` flow renders them: one ``tasks.reports.render_reports`` call per
  notebook (papermill → nbconvert HTML, then the key numbers for the flow's table artifact) over
  ``--since`` (default ``1d``: the deployment's daily window) ending at the lake's last sample.

Printed per report: wall seconds, plots, HTML size; the total; the kernel start-up alone (an
empty notebook through papermill); the peak RSS of this process and its kernels (sampled every
0.1 s); PASS/MISS against the issue-6 target (daily report under 60 s and 2 GB on this machine).
Each kernel imports its modules from source when ``PYTHONDONTWRITEBYTECODE`` is set (as in this
sandbox): run with ``env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=DIR`` (twice) to see a
deployment whose virtualenv has its bytecode compiled.

    uv run python benchmarks/report_bench.py [--days N] [--quick] [--json]
    uv run python benchmarks/report_bench.py --big [--samples 50M] [--since 1d] [--rebuild] [--json]

``--json``: the last output line is one JSON object (``reports``, ``total_s``, ``kernel_startup_s``,
``peak_rss_mb``, ``samples``, ``pass``, and for ``--big`` the lake's shape and build figures).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from lake_bench import build_lake  # noqa: E402

from tasks.lake import Lake  # noqa: E402
from tasks.lake import schema as S  # noqa: E402
from tasks.lake.schema import Event, canonical_labels  # noqa: E402

TARGET_S = 60.0
TARGET_MB = 2048.0
#: Bump when the big lake's content changes, so an old cache is not reused.
BIG_LAKE_VERSION = 1
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "cortex-perf-report-bench"


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


# ---------------------------------------------------------------------------------------------
# the big lake
# ---------------------------------------------------------------------------------------------
HOST_METRICS = (
    "http_requests_per_second",
    "http_requests_total",
    "host_cpu_utilization_ratio",
    "host_load1",
    "host_memory_used_bytes",
    "http_request_duration_seconds_p95",
)
REDIS_METRICS = (
    "redis_keyspace_hits_total",
    "redis_keyspace_misses_total",
    "redis_instantaneous_ops_per_sec",
    "redis_memory_used_bytes",
)
GPU_METRICS = ("gpu_utilization_ratio", "gpu_memory_used_bytes", "gpu_temperature_celsius")
#: The selectors of the forecast and anomaly flows' default settings (what they leave in the lake).
FORECAST_METRICS = frozenset(
    {
        "host_cpu_utilization_ratio",
        "host_memory_used_bytes",
        "gpu_utilization_ratio",
        "redis_memory_used_bytes",
        "http_request_duration_seconds_p95",
    }
)
ANOMALY_METRICS = frozenset(
    {"host_cpu_utilization_ratio", "gpu_utilization_ratio", "http_request_duration_seconds_p95"}
)
_KIND = {m: i for i, m in enumerate((*HOST_METRICS, *REDIS_METRICS, *GPU_METRICS))}
_GIB = 1024.0**3
#: Counters count from this instant, so a counter's value is a function of time alone (no state
#: carried between batches) and still increases monotonically.
_COUNTER_ORIGIN_S = 1_700_000_000.0


@dataclass(frozen=True, slots=True)
class BigLakeSpec:
    """The shape of the big lake: ``hosts`` x 6 host series + 8 Redis + 24 GPU series, ``days`` whole
    days at ``step_s`` (``samples`` counts those; the report day's morning comes on top)."""

    hosts: int = 192
    days: int = 30
    step_s: int = 60
    redis: int = 2
    gpu_hosts: int = 4
    version: int = BIG_LAKE_VERSION

    @property
    def series(self) -> int:
        return self.hosts * len(HOST_METRICS) + self.redis * len(REDIS_METRICS) + self.gpu_hosts * 2 * len(GPU_METRICS)

    @property
    def samples(self) -> int:
        return self.series * self.days * (86_400 // self.step_s)

    @property
    def key(self) -> str:
        return f"v{self.version}-{self.hosts}h-{self.days}d-{self.step_s}s"

    @classmethod
    def for_samples(cls, samples: int, days: int = 30, step_s: int = 60) -> BigLakeSpec:
        """The smallest spec (hosts) that holds at least ``samples`` samples over ``days``."""
        if samples <= 0:
            raise ValueError(f"samples: must be positive, got {samples}")
        if days <= 0:
            raise ValueError(f"days: must be positive, got {days}")
        per_series = days * (86_400 // step_s)
        base = cls(hosts=0, days=days, step_s=step_s)
        hosts = max(1, math.ceil((samples / per_series - base.series) / len(HOST_METRICS)))
        return cls(hosts=hosts, days=days, step_s=step_s)


def parse_count(text: str) -> int:
    """``50M`` → 50_000_000, ``500k`` → 500_000, ``1.5G`` → 1_500_000_000, ``1234`` → 1234."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise ValueError(f"samples: {text!r} is not a count like 50M, 500k or 1234")
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def big_series(spec: BigLakeSpec) -> pl.DataFrame:
    """The big lake's series: metric, labels (canonical JSON), kind (index into ``_KIND``), level in [0, 1).

    ``level`` spreads the hosts from idle to saturated (the busiest reach 100 % CPU at the daily
    peak), so headroom, capacity and latency reports have a tail to show.
    """
    rows: list[tuple[str, str, int, float]] = []
    for h in range(spec.hosts):
        labels = canonical_labels({"host": f"web-{h:03d}", "source": "bench"})
        level = (h * 0.618034) % 1.0  # a golden-ratio spread: every level once, in no order
        rows.extend((m, labels, _KIND[m], level) for m in HOST_METRICS)
    for r in range(spec.redis):
        labels = canonical_labels({"redis": f"cache-{r}", "source": "bench"})
        rows.extend((m, labels, _KIND[m], 0.3 + 0.4 * r / max(1, spec.redis)) for m in REDIS_METRICS)
    for g in range(spec.gpu_hosts):
        for gpu in ("0", "1"):
            labels = canonical_labels({"gpu": gpu, "host": f"gpu-{g}", "source": "bench"})
            rows.extend((m, labels, _KIND[m], 0.5 + 0.1 * g) for m in GPU_METRICS)
    return pl.DataFrame(rows, schema=["metric", "labels", "kind", "level"], orient="row")


def _season(t: np.ndarray) -> np.ndarray:
    """The demo's daily curve (low 03:00, peak 15:00 UTC), weekends at 60 %."""
    hour = (t % 86_400) / 3600.0
    weekday = ((t // 86_400) + 3) % 7
    daily = 0.3 + 0.7 * (0.5 - 0.5 * np.cos((hour - 3.0) / 24.0 * 2 * np.pi)) ** 1.5
    return daily * np.where(weekday >= 5, 0.6, 1.0)


def expected_values(kind: np.ndarray, level: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """The noise-free value of each row (series kind and level, time): what a good forecast says."""
    t = ts_ms / 1000.0
    season = _season(t)
    cpu = 0.08 + (0.25 + 0.7 * level) * season
    peak_rps = 20.0 + 130.0 * level
    since_restart = ((t - 3 * 3600) % 86_400) / 86_400.0
    ops = 900.0 * season * (0.5 + level)
    gpu = 0.9 - 0.2 * (1 - level)
    rate_t = t - _COUNTER_ORIGIN_S + 86_400 / (2 * np.pi) * 0.5 * np.sin(2 * np.pi * t / 86_400)
    choices = [
        peak_rps * season,  # http_requests_per_second
        peak_rps * 0.55 * rate_t,  # http_requests_total (monotone: d/dt > 0)
        np.minimum(cpu, 1.0),  # host_cpu_utilization_ratio
        cpu * 4,  # host_load1
        (0.35 + 0.25 * since_restart + 0.1 * season) * 16 * _GIB,  # host_memory_used_bytes
        0.045 + 0.02 / np.clip(1.0 - 0.95 * np.minimum(cpu, 1.0), 0.03, None),  # latency p95
        900.0 * (0.5 + level) * 0.9 * rate_t,  # redis_keyspace_hits_total
        900.0 * (0.5 + level) * 0.05 * rate_t,  # redis_keyspace_misses_total
        ops,  # redis_instantaneous_ops_per_sec
        (1.5 + 0.5 * season) * _GIB,  # redis_memory_used_bytes
        gpu,  # gpu_utilization_ratio
        0.7 * 80 * _GIB * np.ones_like(t),  # gpu_memory_used_bytes
        35.0 + 45.0 * gpu,  # gpu_temperature_celsius
    ]
    return np.select([kind == k for k in range(len(choices))], choices)


def sample_values(kind: np.ndarray, level: np.ndarray, rng: np.random.Generator, ts_ms: np.ndarray) -> np.ndarray:
    """Expected value plus noise of each series' own scale (counters stay monotone: no noise)."""
    v = expected_values(kind, level, ts_ms)
    z = rng.normal(0.0, 1.0, len(ts_ms))
    counters = (kind == _KIND["http_requests_total"]) | np.isin(
        kind, [_KIND["redis_keyspace_hits_total"], _KIND["redis_keyspace_misses_total"]]
    )
    ratio = np.isin(kind, [_KIND["host_cpu_utilization_ratio"], _KIND["gpu_utilization_ratio"]])
    latency = kind == _KIND["http_request_duration_seconds_p95"]
    noisy = np.where(counters, v, v * (1 + 0.04 * z))
    noisy = np.where(ratio, np.clip(v + 0.03 * z, 0.0, 1.0), noisy)
    noisy = np.where(latency, v + 0.005 * np.abs(z), noisy)
    return np.maximum(noisy, 0.0)


def _forecast_frame(series: pl.DataFrame, issued: list[datetime], rng: np.random.Generator) -> pl.DataFrame:
    """Forecasts issued at ``issued`` (12 x 5 min ahead; p10..p99 around the expected value) of the
    forecast selectors' series: what the hourly forecast flow leaves behind."""
    sel = series.filter(pl.col("metric").is_in(list(FORECAST_METRICS)))
    sid, kind, level = sel["series_id"].to_numpy(), sel["kind"].to_numpy(), sel["level"].to_numpy()
    horizon = 12
    iss_ms = np.array([int(t.timestamp() * 1000) for t in issued], dtype=np.int64)
    n_s, n_i = len(sel), len(iss_ms)
    s_idx = np.repeat(np.arange(n_s), n_i * horizon)
    iss = np.tile(np.repeat(iss_ms, horizon), n_s)
    step = np.tile(np.arange(1, horizon + 1, dtype=np.int32), n_s * n_i)
    ts = (iss // 300_000) * 300_000 + step.astype(np.int64) * 300_000
    exp = expected_values(kind[s_idx], level[s_idx], ts)
    p50 = exp * (1 + rng.normal(0.0, 0.05, len(ts)))
    spread = np.abs(exp) * 0.08 + 1e-9
    return pl.DataFrame(
        {
            "series_id": sid[s_idx],
            "metric": sel["metric"].gather(s_idx),
            "labels": sel["labels"].gather(s_idx),
            "issued_at": iss,
            "ts": ts,
            "step": step,
            "p10": p50 - spread,
            "p50": p50,
            "p90": p50 + spread,
            "p99": p50 + 2 * spread,
            "model": pl.repeat("xgboost", len(ts), eager=True),
            "version": pl.repeat("7", len(ts), eager=True),
        }
    ).with_columns(pl.col("issued_at", "ts").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"))


def _anomaly_frame(series: pl.DataFrame, t0: datetime, t1: datetime, rng: np.random.Generator) -> pl.DataFrame:
    """1-minute anomaly scores in [t0, t1) of the anomaly selectors' series (mostly low; about 1 in
    1,000 points ≥ 0.8, in runs of three), as ``detect_incremental`` writes them."""
    sel = series.filter(pl.col("metric").is_in(list(ANOMALY_METRICS)))
    sid, kind, level = sel["series_id"].to_numpy(), sel["kind"].to_numpy(), sel["level"].to_numpy()
    n_ts = int((t1 - t0).total_seconds() // 60)
    s_idx = np.repeat(np.arange(len(sel)), n_ts)
    ts = int(t0.timestamp() * 1000) + np.tile(np.arange(n_ts, dtype=np.int64) * 60_000, len(sel))
    exp = expected_values(kind[s_idx], level[s_idx], ts)
    score = rng.beta(1.2, 8.0, len(ts))
    hot = rng.random(len(ts)) < 0.0003
    hot = hot | np.roll(hot, 1) | np.roll(hot, 2)
    score = np.where(hot, rng.uniform(0.8, 1.0, len(ts)), score)
    return pl.DataFrame(
        {
            "series_id": sid[s_idx],
            "metric": sel["metric"].gather(s_idx),
            "labels": sel["labels"].gather(s_idx),
            "ts": ts,
            "score": score,
            "value": exp * np.where(hot, 1.6, 1.0),
            "expected": exp,
            "detector": pl.repeat("seasonal_ewma", len(ts), eager=True),
            "reason": pl.Series(np.where(hot, "value 1.6x the expected level", "")),
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"))


def _events(spec: BigLakeSpec, start: datetime, end: datetime) -> list[Event]:
    """A month of events: a ``metrics.collected`` per tick, alert episodes (a few rules flap) and
    scaling decisions for four targets."""
    rng = np.random.default_rng(13)
    out: list[Event] = []
    n_ticks = int((end - start).total_seconds() // spec.step_s)
    for i in range(n_ticks):
        ts = start + timedelta(seconds=i * spec.step_s)
        out.append(Event("metrics.collected", "cortex.collect.bench", {"samples": spec.series, "sources": 3}, ts=ts))
    rules = [("HighCPU", "warning"), ("HighLatency", "page"), ("MemoryLeak", "warning"), ("GpuIdle", "info")]
    rules += [(f"Rule{k:02d}", "warning") for k in range(16)]
    days = (end - start).days
    for _ in range(days * 40):  # ~40 alert episodes a day
        name, severity = rules[min(len(rules) - 1, int(rng.exponential(4.0)))]
        host = f"web-{int(rng.integers(0, spec.hosts)):03d}"
        fp = hashlib.sha1(f"{name}/{host}".encode()).hexdigest()[:12]  # stable across runs
        t = start + timedelta(seconds=float(rng.uniform(0, (end - start).total_seconds() - 7200)))
        repeats = 3 if name == "HighCPU" and rng.random() < 0.3 else 1  # HighCPU flaps
        payload = {"rule": f"rules.yaml:{name}", "labels": {"alertname": name, "severity": severity, "host": host}}
        for _r in range(repeats):
            dur = timedelta(minutes=float(rng.uniform(2, 90)))
            out.append(Event("alert.firing", f"cortex.alert.{fp}", payload, ts=t))
            out.append(Event("alert.resolved", f"cortex.alert.{fp}", payload, ts=t + dur))
            t += dur + timedelta(minutes=5)
    targets = ["api", "worker", "gpu-train", "cache"]
    replicas = dict.fromkeys(targets, 4)
    t = start
    while t < end:
        t += timedelta(minutes=float(rng.exponential(5.0)))
        target = targets[int(rng.integers(0, len(targets)))]
        frm = replicas[target]
        to = max(1, frm + int(rng.choice([-1, 1])))
        replicas[target] = to
        payload = {"target": target, "from": frm, "to": to, "mode": "dry-run", "emergency": False, "reason": "load"}
        out.append(Event("scaling.triggered", f"cortex.scaling.{target}", payload, ts=t))
    return [e for e in out if e.ts is not None and e.ts < end]


#: The daily report runs at 06:37 UTC (prefect.yaml); maintenance (compaction, rollups) at :07.
REPORT_TIME = timedelta(hours=6, minutes=37)
MAINTAIN_AGO = timedelta(minutes=30)


def build_big_lake(spec: BigLakeSpec, root: Path, end: datetime, err: Console) -> dict[str, Any]:
    """Write the big lake under ``root`` as it looks when the daily report runs at ``end``.

    ``spec.days`` whole days before ``end``'s day, one file per day (compacted) with rollups, through
    ``lake_bench.build_lake``; then ``end``'s own day: compacted up to the last maintenance run
    (``MAINTAIN_AGO`` before ``end``, rollups built then) and one small file per collector tick
    since. Then forecasts (hourly issues), anomaly scores (per minute) and events over the whole
    span. Returns the build figures.
    """
    from lake_bench import _frame, _grid

    lake = Lake(str(root))
    series = big_series(spec)
    kind, level = series["kind"].to_numpy(), series["level"].to_numpy()
    day0 = end.replace(hour=0, minute=0, second=0, microsecond=0)
    start = day0 - timedelta(days=spec.days)
    maintained = end - MAINTAIN_AGO

    def values(rng: np.random.Generator, sidx: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return sample_values(kind[sidx], level[sidx], rng, ts)

    out = build_lake(
        lake,
        series["labels"],
        values,
        metrics=series["metric"],
        start=start,
        days=spec.days,
        now=day0,
        err=err,
        step_s=spec.step_s,
        batch_rows=spec.series * (86_400 // spec.step_s),  # a day per write: already compacted
        compact=False,
    )
    rng = np.random.default_rng(10)
    t0 = time.perf_counter()
    written = 0
    with err.status("today: compacted part, rollups, then one file per tick"):
        spans = [(day0, maintained)]  # what the last maintenance run left as one file
        tick = timedelta(seconds=spec.step_s)
        t = maintained
        while t < end:
            spans.append((t, t + tick))
            t += tick
        for i, (a, b) in enumerate(spans):
            n_ts = int((b - a).total_seconds() // spec.step_s)
            sidx, ts = _grid(spec.series, int(a.timestamp() * 1000), n_ts, spec.step_s)
            res = lake.write_samples(
                _frame(series["labels"], sidx, ts, values(rng, sidx, ts), series["metric"]), now=end
            )
            if res.rejected:
                raise RuntimeError(f"build today: {res.rejected} rows rejected: {res.reasons}")
            written += res.accepted
            if i == 0:
                lake.build_rollups(now=maintained)
    out["today_files"], out["today_s"] = len(spans), time.perf_counter() - t0
    out["lake_samples"] += written

    series = series.join(lake.catalogue().select("series_id", "metric", "labels"), on=["metric", "labels"], how="left")
    if series["series_id"].null_count():
        raise RuntimeError("big lake: some series are missing from the catalogue")
    t0 = time.perf_counter()
    rows = 0
    with err.status("forecasts"):
        issues = [start + timedelta(hours=h, minutes=7) for h in range(int((end - start).total_seconds() // 3600) + 1)]
        issues = [t for t in issues if t < end]
        for d in range(0, len(issues), 24):
            rows += lake.write_rows(S.FORECASTS, _forecast_frame(series, issues[d : d + 24], rng)).accepted
    out["forecast_rows"], out["forecasts_s"] = rows, time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = 0
    with err.status("anomaly scores"):
        t = start
        while t < end:
            t1 = min(end, t + timedelta(days=1))
            rows += lake.write_rows(S.ANOMALIES, _anomaly_frame(series, t, t1, rng)).accepted
            t = t1
    out["anomaly_rows"], out["anomalies_s"] = rows, time.perf_counter() - t0
    t0 = time.perf_counter()
    with err.status("events"):
        out["event_rows"] = lake.write_events(_events(spec, start, end)).accepted
    out["events_s"] = time.perf_counter() - t0
    return out


def big_lake(spec: BigLakeSpec, cache_dir: Path, rebuild: bool, err: Console) -> tuple[Path, dict[str, Any]]:
    """The cached big lake of ``spec`` under ``cache_dir`` (built when missing or ``rebuild``).

    A lake counts as built once its ``meta.json`` is written (last step), so an interrupted build
    is rebuilt, never reused. Returns the lake root and its meta (spec, end, build figures).
    """
    root = cache_dir / f"lake-{spec.key}"
    meta_path = root / "meta.json"
    if rebuild or not meta_path.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + REPORT_TIME
        err.log(f"building the big lake ({spec.samples:,} samples, {spec.series:,} series) in {root}")
        t0 = time.perf_counter()
        build = build_big_lake(spec, root, end, err)
        build["total_s"] = time.perf_counter() - t0
        meta = {"spec": asdict(spec), "end": end.isoformat(), "build": build}
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, default=str, indent=1))
        tmp.replace(meta_path)
    else:
        err.log(f"reusing the big lake in {root} (--rebuild to build it again)")
    return root, json.loads(meta_path.read_text())


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def run_demo(days: float, names: list[str], console: Console) -> dict[str, Any]:
    """Seed a demo lake of ``days`` and render ``names`` over the whole history."""
    from tasks.demo import seed_demo
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
            "lake": "demo",
            "reports": reports,
            "total_s": round(total, 2),
            "kernel_startup_s": round(startup, 2),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            "samples": samples,
            "days": days,
            "since": f"{days:g}d",
        }


def run_big(
    spec: BigLakeSpec, names: list[str], since: str, cache_dir: Path, rebuild: bool, console: Console
) -> dict[str, Any]:
    """Render ``names`` on the cached big lake the way the daily ``report`` flow does."""
    from tasks.config import Settings
    from tasks.reports import render_reports

    root, meta = big_lake(spec, cache_dir, rebuild, console)
    end = datetime.fromisoformat(meta["end"])
    with tempfile.TemporaryDirectory(prefix="report-bench-") as d:
        tmp = Path(d)
        settings = Settings(
            data_dir=str(tmp / "data"),
            lake={"root": str(root)},  # type: ignore[arg-type]
            state={"path": str(tmp / "state.duckdb")},  # type: ignore[arg-type]
        )
        startup = kernel_startup_s(tmp)
        reports = []
        with PeakRSS() as rss:
            t_all = time.perf_counter()
            for name in names:
                with console.status(f"rendering {name} over {since} of the big lake"):
                    t0 = time.perf_counter()
                    # one call per notebook, as the flow's render task does (key numbers included)
                    (res,) = render_reports(settings, [name], since=since, until="now", now=end)
                    secs = time.perf_counter() - t0
                reports.append(
                    {
                        "report": name,
                        "seconds": round(secs, 2),
                        "notebook_s": round(res.seconds, 2),
                        "key_numbers_s": round(secs - res.seconds, 2),
                        "images": res.images,
                        "html_kb": res.bytes // 1024,
                    }
                )
            total = time.perf_counter() - t_all
    return {
        "lake": "big",
        "reports": reports,
        "total_s": round(total, 2),
        "kernel_startup_s": round(startup, 2),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "samples": int(meta["build"]["lake_samples"]),
        "series": spec.series,
        "hosts": spec.hosts,
        "days": spec.days,
        "step_s": spec.step_s,
        "since": since,
        "lake_root": str(root),
        "lake_end": meta["end"],
        "build": meta["build"],
    }


def main(argv: list[str] | None = None) -> int:
    from tasks.reports import NOTEBOOKS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=None, help="days of history (demo default 7, quick 1; big 30)")
    ap.add_argument("--quick", action="store_true", help="1 day, the performance report only: the CI smoke run")
    ap.add_argument("--big", action="store_true", help="the ≥ 50 M-sample lake (built once, cached)")
    ap.add_argument("--samples", help="big lake size, e.g. 50M (implies --big; default 50M)")
    ap.add_argument("--since", default="1d", help="big lake: report window back from its last sample (default 1d)")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"big lake cache (default {DEFAULT_CACHE})")
    ap.add_argument("--rebuild", action="store_true", help="big lake: build it again even when cached")
    ap.add_argument("--report", action="append", choices=sorted(NOTEBOOKS), help="only this report (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = ap.parse_args(argv)
    big = args.big or args.samples is not None
    if args.days is not None and args.days <= 0:
        ap.error("--days must be positive")
    names = args.report or (["performance_report"] if args.quick else list(NOTEBOOKS))
    console = Console(stderr=True)
    if big:
        try:
            spec = BigLakeSpec.for_samples(parse_count(args.samples or "50M"), days=int(args.days or 30))
        except ValueError as exc:
            ap.error(str(exc))
        r = run_big(spec, names, args.since, args.cache_dir, args.rebuild, console)
        title = (
            f"Daily report on the big lake: {r['samples']:,} samples, {r['series']:,} series x {r['days']} d, "
            f"window {r['since']}"
        )
    else:
        days = args.days or (1.0 if args.quick else 7.0)
        r = run_demo(days, names, console)
        title = f"Report rendering on {r['samples']:,} demo samples ({days:g} days)"
    ok_s, ok_mb = r["total_s"] <= TARGET_S, r["peak_rss_mb"] <= TARGET_MB
    r["pass"] = {"time": ok_s, "memory": ok_mb}
    t = Table(title=title)
    cols = ["report", "seconds", *(["notebook", "key numbers"] if big else []), "plots", "HTML"]
    for col in cols:
        t.add_column(col, justify="left" if col == "report" else "right")
    for rep in r["reports"]:
        extra = [f"{rep['notebook_s']:.1f}", f"{rep['key_numbers_s']:.1f}"] if big else []
        t.add_row(rep["report"], f"{rep['seconds']:.1f}", *extra, str(rep["images"]), f"{rep['html_kb']} KiB")
    ok, bad = "[green]PASS[/]", "[red]MISS[/]"
    t.add_row("all", f"{r['total_s']:.1f}", *([""] * (len(cols) - 3)), f"≤ {TARGET_S:.0f} s {ok if ok_s else bad}")
    console.print(t)
    console.print(
        f"kernel start-up alone {r['kernel_startup_s']:.1f} s per report; peak RSS (with kernels) "
        f"{r['peak_rss_mb']:.0f} MB (≤ {TARGET_MB:.0f} MB {ok if ok_mb else bad})"
    )
    if big:
        b = r["build"]
        console.print(
            f"lake {r['lake_root']} (ends {r['lake_end']}): built in {b['total_s']:.0f} s "
            f"(samples {b['build_write_s']:.0f} s, rollups {b['rollups_s']:.0f} s, forecasts {b['forecast_rows']:,} "
            f"rows, anomaly scores {b['anomaly_rows']:,} rows, events {b['event_rows']:,})"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, load {load:.2f}"
    )
    console.print("daily report target: " + ("[green]met[/]" if ok_s and ok_mb else "[red]missed[/]"))
    if args.json:
        print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

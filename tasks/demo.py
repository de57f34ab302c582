"""A generated, clearly labelled multi-day metric history for ``cortex-perf run --demo``.

Why generate instead of shipping a file: the history must end *now* so every stage (queries over
"the last hour", forecasts, alert rules) has fresh data on a fresh clone, and a seeded generator is
smaller than any fixture and deterministic for tests.

Metric and label names are the real collectors' (``host_cpu_utilization_ratio`` with ``host``,
``gpu_utilization_ratio`` with ``gpu``, ``redis_keyspace_hits_total`` ...), so every query, rule and
model written for real data works on the demo unchanged. Every series carries the label
``source="demo"`` so demo data can never be mistaken for real
measurements and can be found (or deleted) with one selector. The history has daily and weekly
seasonality, random bursts, one counter reset and a few planted incidents listed in
``DEMO_INCIDENTS`` (later reports and tests check that they are found).

The output is the lake's bulk frame format: ``metric`` str, ``labels`` str (canonical JSON object
text), ``ts`` Datetime(ms, UTC), ``value`` f64 — ready for ``Lake.write_samples(frame)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tasks.lake.schema import Event, canonical_labels, now_utc

if TYPE_CHECKING:
    from tasks.lake.lake import Lake

__all__ = [
    "DEMO_GPUS",
    "DEMO_HOSTS",
    "DEMO_INCIDENTS",
    "DEMO_LABEL",
    "DEMO_SELECTOR",
    "DemoIncident",
    "SeedResult",
    "demo_seeded",
    "generate_demo_history",
    "incident_window",
    "seed_demo",
]

#: The label every demo series carries (``{source="demo"}`` selects all of them).
DEMO_LABEL: dict[str, str] = {"source": "demo"}
DEMO_SELECTOR = '{source="demo"}'
#: Resource of the ``lake.imported`` marker event written once the demo history is in the lake.
DEMO_RESOURCE = "cortex.lake.demo"
DEMO_HOSTS: tuple[str, ...] = ("web-1", "web-2", "web-3", "worker-1")
DEMO_GPU_HOST = "gpu-1"
DEMO_GPUS: tuple[str, ...] = ("0", "1")
DEMO_REDIS = "demo-cache"

_GIB = 1024.0**3
_HOST_MEMORY_BYTES = 16 * _GIB
_GPU_MEMORY_BYTES = 80 * _GIB
#: Peak request rate per host (requests/s at the daily peak on a weekday).
_PEAK_RPS = {"web-1": 120.0, "web-2": 100.0, "web-3": 90.0, "worker-1": 25.0}


@dataclass(frozen=True, slots=True)
class DemoIncident:
    """One planted anomaly: where it is (series), when (relative to the end of the history), what.

    ``start_before_end`` is measured back from the last timestamp of the history, so the incident
    lands at the same place whatever ``now`` is; an incident older than the history is absent.
    """

    name: str
    metric: str
    labels: Mapping[str, str]
    start_before_end: timedelta
    duration: timedelta
    description: str
    related_metrics: tuple[str, ...] = field(default_factory=tuple)


DEMO_INCIDENTS: tuple[DemoIncident, ...] = (
    DemoIncident(
        name="cpu_saturation",
        metric="host_cpu_utilization_ratio",
        labels={"host": "web-2", **DEMO_LABEL},
        start_before_end=timedelta(hours=30),
        duration=timedelta(minutes=45),
        description="web-2 pinned at 97-100% CPU (runaway worker); its latency p95 rises with it.",
        related_metrics=("http_request_duration_seconds_p95",),
    ),
    DemoIncident(
        name="counter_reset",
        metric="http_requests_total",
        labels={"host": "web-3", **DEMO_LABEL},
        start_before_end=timedelta(hours=26),
        duration=timedelta(minutes=1),
        description="web-3's process restarted: http_requests_total drops to ~0 and counts up again.",
    ),
    DemoIncident(
        name="latency_spike",
        metric="http_request_duration_seconds_p95",
        labels={"host": "web-1", **DEMO_LABEL},
        start_before_end=timedelta(hours=20),
        duration=timedelta(minutes=20),
        description="web-1's p95 latency jumps ~8x (slow downstream dependency) while CPU stays normal.",
    ),
    DemoIncident(
        name="gpu_idle",
        metric="gpu_utilization_ratio",
        labels={"host": DEMO_GPU_HOST, "gpu": "1", **DEMO_LABEL},
        start_before_end=timedelta(hours=10),
        duration=timedelta(hours=3),
        description="GPU 1 drops to 0% utilisation (its job died) while GPU 0 stays busy.",
        related_metrics=("gpu_memory_used_bytes",),
    ),
)


def incident_window(incident: DemoIncident, end: datetime) -> tuple[datetime, datetime]:
    """The [start, end) UTC window of ``incident`` in a history whose last timestamp is ``end``."""
    start = end - incident.start_before_end
    return start, start + incident.duration


def _floor(now: datetime, step_s: int) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    epoch = int(now.astimezone(UTC).timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_s, UTC)


def _mask(ts_s: np.ndarray, end: datetime, incident: DemoIncident) -> np.ndarray:
    start, stop = incident_window(incident, end)
    return (ts_s >= start.timestamp()) & (ts_s < stop.timestamp())


def _bursts(rng: np.random.Generator, n: int, per_day: float, step_s: int, decay_steps: float) -> np.ndarray:
    """Multiplicative traffic bursts: Poisson arrivals with exponentially decaying height."""
    arrivals = rng.random(n) < per_day * step_s / 86_400.0
    heights = np.where(arrivals, rng.uniform(0.3, 1.2, n), 0.0)
    kernel = np.exp(-np.arange(int(decay_steps * 5) + 1) / decay_steps)
    return np.convolve(heights, kernel)[:n]


def _smooth_noise(rng: np.random.Generator, n: int, scale: float, alpha: float = 0.05) -> np.ndarray:
    """AR(1)-like noise (random walk pulled back to 0) so series wander instead of jittering."""
    shocks = rng.normal(0.0, scale, n)
    # exponential smoothing of white noise via a short convolution keeps it vectorised
    kernel = (1 - alpha) ** np.arange(min(n, int(5 / alpha)))
    out = np.convolve(shocks, kernel)[:n]
    return out * np.sqrt(alpha * (2 - alpha))


def generate_demo_history(
    now: datetime,
    days: float = 3,
    step_s: int = 60,
    seed: int = 42,
) -> pl.DataFrame:
    """A ``days``-long history ending at ``now`` (floored to ``step_s``), one sample per step per series.

    Deterministic for a given (now, days, step_s, seed). Returns the lake's bulk frame
    (``metric``, ``labels``, ``ts``, ``value``), sorted by series then time.
    """
    if step_s <= 0:
        raise ValueError("step_s must be positive")
    if days <= 0:
        raise ValueError("days must be positive")
    rng = np.random.default_rng(seed)
    end = _floor(now, step_s)
    n = int(days * 86_400 // step_s)
    end_s = int(end.timestamp())
    ts_s = end_s - step_s * np.arange(n - 1, -1, -1, dtype=np.int64)

    # Seasonality from wall-clock time: a daily curve peaking mid-afternoon UTC, quieter nights,
    # and weekends at ~60% of weekday traffic.
    hour = (ts_s % 86_400) / 3600.0
    weekday = ((ts_s // 86_400) + 3) % 7  # 1970-01-01 was a Thursday → 0 = Monday
    daily = 0.3 + 0.7 * (0.5 - 0.5 * np.cos((hour - 3.0) / 24.0 * 2 * np.pi)) ** 1.5  # low 03:00, peak 15:00
    weekly = np.where(weekday >= 5, 0.6, 1.0)
    season = daily * weekly

    series: list[tuple[str, dict[str, str], np.ndarray]] = []

    def add(metric: str, labels: dict[str, str], values: np.ndarray) -> None:
        series.append((metric, {**labels, **DEMO_LABEL}, values))

    by_name = {i.name: i for i in DEMO_INCIDENTS}
    sat = by_name["cpu_saturation"]
    spike = by_name["latency_spike"]
    reset = by_name["counter_reset"]
    idle = by_name["gpu_idle"]

    shared_bursts = _bursts(rng, n, per_day=6, step_s=step_s, decay_steps=600 / step_s)
    for host in DEMO_HOSTS:
        hl = {"host": host}
        own = _bursts(rng, n, per_day=3, step_s=step_s, decay_steps=300 / step_s)
        load = season * (1 + 0.5 * shared_bursts + 0.3 * own) * (1 + _smooth_noise(rng, n, 0.08))
        rps = np.clip(_PEAK_RPS[host] * load + rng.normal(0, 1.5, n), 0, None)
        add("http_requests_per_second", hl, rps)

        counter = np.cumsum(rng.poisson(rps * step_s).astype(np.float64))
        counter += float(rng.integers(10_000, 5_000_000))  # the process was up before the window
        if host == reset.labels["host"]:
            idx = np.flatnonzero(_mask(ts_s, end, reset))
            if idx.size:
                k = int(idx[0])
                counter[k:] -= counter[k - 1] if k > 0 else counter[k]
                counter[k:] += rng.integers(0, 50)
        add("http_requests_total", hl, counter)

        cpu = 0.08 + 0.55 * load / 1.6 + _smooth_noise(rng, n, 0.03) + rng.normal(0, 0.01, n)
        if host == sat.labels["host"]:
            m = _mask(ts_s, end, sat)
            cpu = np.where(m, rng.uniform(0.97, 1.0, n), cpu)
        cpu = np.clip(cpu, 0.01, 1.0)
        add("host_cpu_utilization_ratio", hl, cpu)
        add("host_load1", hl, np.clip(cpu * 4 * (1 + rng.normal(0, 0.05, n)), 0, None))

        # Memory: a slow leak that a daily restart at 03:00 resets, plus noise.
        since_restart = ((ts_s - 3 * 3600) % 86_400) / 86_400.0
        mem_frac = 0.35 + 0.25 * since_restart + 0.1 * load / 1.6 + _smooth_noise(rng, n, 0.01)
        add("host_memory_used_bytes", hl, np.clip(mem_frac, 0.05, 0.98) * _HOST_MEMORY_BYTES)

        # Latency: a floor plus queueing that grows sharply as CPU approaches 1.
        lat = 0.045 + 0.02 / np.clip(1.0 - 0.95 * cpu, 0.03, None) + np.abs(rng.normal(0, 0.005, n))
        if host == spike.labels["host"]:
            m = _mask(ts_s, end, spike)
            lat = np.where(m, lat * rng.uniform(7.0, 9.0, n), lat)
        add("http_request_duration_seconds_p95", hl, lat)

    rl = {"redis": DEMO_REDIS}
    ops = np.clip(900.0 * season * (1 + 0.6 * shared_bursts) + rng.normal(0, 20, n), 0, None)
    miss_ratio = np.clip(0.04 + 0.10 * shared_bursts + _smooth_noise(rng, n, 0.01), 0.005, 0.6)
    hits = np.cumsum(rng.poisson(ops * (1 - miss_ratio) * step_s).astype(np.float64))
    misses = np.cumsum(rng.poisson(ops * miss_ratio * step_s).astype(np.float64))
    add("redis_keyspace_hits_total", rl, hits)
    add("redis_keyspace_misses_total", rl, misses)
    add("redis_instantaneous_ops_per_sec", rl, ops)
    add("redis_memory_used_bytes", rl, (1.5 + 0.5 * season + _smooth_noise(rng, n, 0.02)) * _GIB)

    for gpu in DEMO_GPUS:
        gl = {"host": DEMO_GPU_HOST, "gpu": gpu}
        # Training jobs: busy most of the time, short dips between epochs / checkpoints.
        dips = _bursts(rng, n, per_day=24, step_s=step_s, decay_steps=max(1.0, 120 / step_s))
        util = np.clip(0.9 - 0.5 * dips + rng.normal(0, 0.03, n), 0.0, 1.0)
        mem = np.clip(0.7 + _smooth_noise(rng, n, 0.01), 0.05, 0.99) * _GPU_MEMORY_BYTES
        if gpu == idle.labels["gpu"]:
            m = _mask(ts_s, end, idle)
            util = np.where(m, 0.0, util)
            mem = np.where(m, 0.5 * _GIB, mem)
        temp = 35.0 + 45.0 * util + rng.normal(0, 0.8, n)
        add("gpu_utilization_ratio", gl, util)
        add("gpu_memory_used_bytes", gl, mem)
        add("gpu_temperature_celsius", gl, temp)

    ts_ms = ts_s * 1000
    k = len(series)
    frame = pl.DataFrame(
        {
            "metric": np.repeat(np.array([s[0] for s in series], dtype=object), n).tolist(),
            "labels": np.repeat(np.array([canonical_labels(s[1]) for s in series], dtype=object), n).tolist(),
            "ts": np.tile(ts_ms, k),
            "value": np.concatenate([s[2].astype(np.float64) for s in series]),
        },
        schema={"metric": pl.String, "labels": pl.String, "ts": pl.Int64, "value": pl.Float64},
    )
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"))


@dataclass(slots=True)
class SeedResult:
    """What ``seed_demo`` did; ``seeded`` is False when the lake already held the demo history."""

    seeded: bool
    rows: int = 0
    rejected: int = 0
    series: int = 0
    start: str | None = None
    end: str | None = None
    files: int = 0
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def demo_seeded(lake: Lake) -> bool:
    """True when the demo history is already in ``lake``.

    The marker event (``lake.imported`` with ``demo: true``) is the primary signal; a lake that has
    ``source="demo"`` series without the marker (e.g. events pruned by retention) counts as seeded
    too, so a re-run never writes the history twice.
    """
    events = lake.events(name="lake.imported")
    for payload in events.get_column("payload").to_list():
        try:
            if json.loads(payload).get("demo") is True:
                return True
        except (ValueError, AttributeError):
            continue
    return lake.series(DEMO_SELECTOR).height > 0


def seed_demo(
    lake: Lake,
    *,
    now: datetime | None = None,
    days: float = 3,
    step_s: int = 60,
    seed: int = 42,
    on_progress: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> SeedResult:
    """Write the demo history into ``lake`` once (one batch per day partition) and leave a marker.

    ``on_progress(done_rows, total_rows)`` is called after each batch so a CLI can draw progress.
    Returns ``SeedResult(seeded=False)`` without writing when the lake is already seeded.
    """
    if not force and demo_seeded(lake):
        return SeedResult(seeded=False)
    now = now or now_utc()
    frame = generate_demo_history(now, days=days, step_s=step_s, seed=seed)
    total = frame.height
    result = SeedResult(seeded=True)
    done = 0
    if on_progress:
        on_progress(0, total)
    # One write per day: each lands as one file in its own date partition, which is also the
    # layout compaction would produce.
    for _, part in frame.with_columns(_day=pl.col("ts").dt.date()).group_by("_day", maintain_order=True):
        res = lake.write_samples(part.drop("_day"))
        result.rows += res.accepted
        result.rejected += res.rejected
        result.files += len(res.files)
        result.reasons.extend(res.reasons[: max(0, 5 - len(result.reasons))])
        done += part.height
        if on_progress:
            on_progress(done, total)
    result.series = frame.select("metric", "labels").n_unique()
    result.start = frame["ts"].min().isoformat()  # type: ignore[union-attr]
    result.end = frame["ts"].max().isoformat()  # type: ignore[union-attr]
    lake.write_events(
        [
            Event(
                "lake.imported",
                DEMO_RESOURCE,
                {
                    "demo": True,
                    "rows": result.rows,
                    "series": result.series,
                    "days": days,
                    "start": result.start,
                    "end": result.end,
                    "incidents": [i.name for i in DEMO_INCIDENTS],
                },
                ts=now_utc(),
            )
        ]
    )
    return result

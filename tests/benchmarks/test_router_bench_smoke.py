"""Smoke test of ``benchmarks/router_bench.py`` and its two parts (the backend, the load generator).

Not a timed test and not the target check: it checks that the backend process does what its
configuration says (a 3× slower backend measures about 3× slower, 30 % failures are about 30 %, bad
configuration is refused and changes nothing), that the generator follows the NASA trace at the
asked rate, and that the harness's JSON carries every figure the issue names.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks folder is scripts, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.router_bench import BackendProc  # noqa: E402
from benchmarks.router_load import NASA_CSV, nasa_arrivals, parse_kinds, run_load, summarize  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "router_bench.py"
FIGURES = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "error_pct", "rps")


@pytest.fixture
def backends() -> Iterator[list[BackendProc]]:
    started: list[BackendProc] = []
    yield started
    for b in started:
        b.stop()


def _flat(rate: float, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0, seconds, int(rate * seconds)))


def test_slower_backend_measures_slower(backends: list[BackendProc]) -> None:
    fast = BackendProc({"name": "fast", "base_ms": 20.0, "sigma": 0.0, "workers": 100})
    backends.append(fast)
    slow = BackendProc({"name": "slow", "base_ms": 20.0, "sigma": 0.0, "workers": 100, "slowdown": 3.0})
    backends.append(slow)
    for b in backends:
        b.configure()
    arrivals = _flat(40, 2.0)
    r_fast = summarize(asyncio.run(run_load([f"{fast.url}/q"], arrivals)))
    r_slow = summarize(asyncio.run(run_load([f"{slow.url}/q"], arrivals)))
    assert r_fast["error_pct"] == 0 and r_slow["error_pct"] == 0
    assert r_fast["requests"] == r_slow["requests"] == len(arrivals)
    assert r_fast["p50_ms"] >= 20.0 and r_slow["p50_ms"] >= 60.0  # never faster than configured
    assert 2.0 < r_slow["p50_ms"] / r_fast["p50_ms"] < 4.0


def test_kinds_failures_and_queueing_follow_the_config(backends: list[BackendProc]) -> None:
    b = BackendProc({"name": "b", "base_ms": 1.0, "kind_ms": {"a": 5.0, "b": 40.0}, "sigma": 0.0, "workers": 50})
    backends.append(b)
    b.configure(fail_rate=0.3, fail_window=[0, 1e6])
    result = asyncio.run(run_load([f"{b.url}/q"], _flat(100, 3.0), kinds=parse_kinds("a=1,b=1")))
    n = len(result.status)
    failed = int(np.sum(result.status == 500))
    assert 0.2 < failed / n < 0.4  # 30 % ± binomial noise (n = 300)
    assert set(np.unique(result.status)) == {200, 500}
    assert result.placement[("a", "b")] + result.placement[("b", "b")] == n
    stats = b.stats()
    assert stats["by_kind"]["a"] + stats["by_kind"]["b"] == n and stats["failed"] == failed
    # half the queries are kind b (40 ms), half kind a (5 ms)
    s = summarize(result)
    assert s["p95_ms"] >= 40.0 and s["p50_ms"] >= 5.0 and s["mean_ms"] > 20.0

    # one worker, a burst of 20 at once: they queue behind each other (10 ms each)
    b.configure(fail_rate=0.0, workers=1, kind_ms={}, base_ms=10.0)
    burst = summarize(asyncio.run(run_load([f"{b.url}/q"], np.zeros(20))))
    assert burst["p99_ms"] >= 150.0 and b.stats()["max_queued"] >= 10


def test_bad_config_is_refused_and_changes_nothing(backends: list[BackendProc]) -> None:
    b = BackendProc({"name": "b", "base_ms": 7.0})
    backends.append(b)
    before = b.stats()["config"]
    for body, field in (({"workers": 0}, "workers"), ({"fail_rate": 2}, "fail_rate"), ({"nope": 1}, "nope")):
        r = httpx.post(f"{b.url}/_backend/config", json=body, timeout=5)
        assert r.status_code == 400 and r.json()["error"].startswith(field), r.text
    r = httpx.post(f"{b.url}/_backend/config", json={"spike_window": [5, 1]}, timeout=5)
    assert r.status_code == 400 and "spike_window" in r.json()["error"]
    assert b.stats()["config"] == before
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "router_backend.py"), "--kind-ms", "a=fast"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: kind_ms: 'fast' is not a number (in 'a=fast')"


def test_chunked_request_bodies_and_connection_close(backends: list[BackendProc]) -> None:
    b = BackendProc({"name": "b", "base_ms": 0.0, "sigma": 0.0})
    backends.append(b)

    def chunks() -> Iterator[bytes]:
        yield b"hello "
        yield b"world"

    r = httpx.post(f"{b.url}/q", content=chunks(), headers={"x-query-kind": "t"}, timeout=5)
    assert r.status_code == 200 and r.json()["backend"] == "b"
    r = httpx.get(f"{b.url}/q", headers={"connection": "close"}, timeout=5)
    assert r.status_code == 200 and r.headers["connection"] == "close"
    assert b.stats()["by_kind"] == {"t": 1, "": 1}


def test_arrivals_follow_the_nasa_trace_at_the_asked_rate() -> None:
    arr = nasa_arrivals(50.0, 120.0, seconds_per_minute=2.0, seed=3)
    assert np.all(np.diff(arr) >= 0) and arr[0] >= 0 and arr[-1] < 120.0
    assert abs(len(arr) / 120.0 - 50.0) < 5.0
    # per-2-s counts track the trace's per-minute counts from 1995-07-13 06:00
    lines = NASA_CSV.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("1995-07-13 06:00"))
    trace = np.array([float(line.split(",")[2]) for line in lines[start : start + 60]])
    counts = np.histogram(arr, bins=60, range=(0, 120))[0]
    assert np.corrcoef(trace, counts)[0, 1] > 0.7
    with pytest.raises(ValueError, match="observed minutes"):
        nasa_arrivals(10.0, 600.0, start="1995-07-28 13:30")  # the July log ends at 13:32


@pytest.mark.slow
def test_direct_quick_run_reports_every_figure() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--direct", "--quick", "--duration", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report["scenarios"]) == {"heterogeneous", "query_cost", "failing", "spike"}
    assert report["default_strategy"] == "learned" and report["overhead_p50_ms"] is None
    for name, rows in report["scenarios"].items():
        row = rows["direct_round_robin"]
        for key in FIGURES:
            assert isinstance(row[key], int | float) and math.isfinite(row[key]), (name, key, row)
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["rps"] > 50
    assert report["scenarios"]["failing"]["direct_round_robin"]["error_pct"] > 0
    assert report["scenarios"]["heterogeneous"]["direct_round_robin"]["error_pct"] == 0


@pytest.mark.slow
def test_in_process_run_routes_through_the_real_router() -> None:
    """The Router's strategies choose among the real backends: P2C-EWMA sends the 3× slower backend
    less than round robin's exact third."""
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--in-process",
            "--quick",
            "--duration",
            "4",
            "--scenarios",
            "heterogeneous",
            "--strategies",
            "round_robin,p2c_ewma",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["mode"] == "in_process"
    rows = report["scenarios"]["heterogeneous"]
    assert set(rows) == {"round_robin", "p2c_ewma"}

    def slow_share(row: dict) -> float:
        placed = row["placement"]
        return placed.get("-->b2", 0) / sum(placed.values())

    assert abs(slow_share(rows["round_robin"]) - 1 / 3) < 0.02
    assert slow_share(rows["p2c_ewma"]) < 0.25
    for row in rows.values():
        assert row["error_pct"] == 0 and all(math.isfinite(row[k]) for k in FIGURES)


@pytest.mark.slow
def test_in_process_learned_is_trained_from_its_warm_up_and_routes_by_kind() -> None:
    """In process, ``learned`` runs its warm-up on the Router (no model), the outcomes are trained on
    by ``retrain_router`` through this run's lake and registry, and the promoted model routes the
    measured run: each kind mostly to the backend fast for it. The oracle row uses only those."""
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--in-process",
            "--quick",
            "--duration",
            "4",
            "--warmup",
            "5",
            "--scenarios",
            "query_cost",
            "--strategies",
            "learned",
            "--oracle",
            "--trace-start",
            "1995-07-06 14:00",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["settings"]["trace_start"] == "1995-07-06 14:00"
    rows = report["scenarios"]["query_cost"]
    assert set(rows) == {"learned", "oracle_good_backends"}
    detail = rows["learned"]["detail"]
    assert detail["warmup"]["requests"] > 200
    assert detail["training"]["status"] == "promoted", detail["training"]
    placed = rows["learned"]["placement"]
    fast = placed.get("a->b0", 0) + placed.get("b->b1", 0)
    assert fast / sum(placed.values()) > 0.8
    assert set(rows["oracle_good_backends"]["placement"]) == {"a->b0", "b->b1"}
    for row in rows.values():
        assert row["error_pct"] == 0 and all(math.isfinite(row[k]) for k in FIGURES)

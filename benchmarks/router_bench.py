"""The query router against Envoy/Linkerd-style balancers on real HTTP backends (issue 15's proof).

Real backends on 127.0.0.1 (``benchmarks/router_backend.py``, one process each), the real proxy
(``cortex-perf router serve`` as a subprocess, one per strategy, with a config naming the backends),
an open-loop generator whose arrival rate follows the NASA-HTTP 1995 trace time-compressed
(``benchmarks/router_load.py``). Scenarios, each run for every strategy on the same arrivals:

- ``heterogeneous``: three backends, one 3× slower;
- ``query_cost``: two query kinds, two backends, each fast (5 ms) for one kind and slow (25 ms) for
  the other — only a router that sees the query can do better than half the time slow;
- ``failing``: one of three backends answers 30 % of requests with HTTP 500 in the middle third;
- ``spike``: one of three backends is 10× slower for a sixth of the run (from a third to half way).

Backends have a few workers each (the rest queue, as real ones do), so load imbalance shows in p99.
``learned`` is trained the way users train it: a warm-up run through the proxy with the learned
strategy (no model yet: it falls back to P2C-EWMA and explores), the recorder writes the outcomes to
this run's temporary lake, the ``router`` flow's training stage fits and promotes a model, and the
running service picks it up (``/_router/status`` shows the version) before the measured run starts.

Overhead: at 1,000 req/s (Poisson), one backend with a fixed 1 ms and no queueing, called directly
and through the proxy (one target) by the same generator in the same run: the p50 difference.

    uv run python benchmarks/router_bench.py --json              # everything (~25 min of load)
    uv run python benchmarks/router_bench.py --quick --json      # smoke: 6 s per strategy
    uv run python benchmarks/router_bench.py --direct --quick    # no proxy: client-side round robin
    uv run python benchmarks/router_bench.py --in-process        # no proxy: Router.route/record in the generator
    uv run python benchmarks/router_bench.py --in-process --oracle --trace-start "1995-07-06 14:00" --seed 2
    options: --scenarios a,b  --strategies a,b  --rate R  --duration S  --warmup S  --seed N  --trace-start T
             --overhead-rate R  --overhead-duration S  --no-overhead  --dir PARENT  --keep  --oracle

In process, ``learned`` is trained the same way without the service: the warm-up runs through a
``Router`` with the learned strategy, its outcomes (``Router.drain``) go to this run's lake,
``tasks.routing.training.retrain_router`` (the router flow's work) fits, backtests and promotes, and
``Router.set_model`` hands the champion to the same router for the measured run. The warm-up
replays the trace minutes just before ``--trace-start`` (what the router saw last). ``--oracle``
adds a row that is not a strategy: each query to the least busy backend the scenario never slows or
fails for its kind — the floor of what choosing a backend can reach.

``--json``: the last line is ``{"scenarios": {SCENARIO: {STRATEGY: {"p50_ms", "p95_ms", "p99_ms",
"mean_ms", "error_pct", "rps", ...}}}, "default_strategy": NAME, "overhead_p50_ms": MS, "targets":
{...}, "overhead": {...}, "seconds": S}``; ``--direct`` reports one strategy, ``direct_round_robin``,
and no overhead (null); ``--in-process`` every strategy (and ``oracle_good_backends`` with
``--oracle``), no overhead; ``mode`` says
which. What needs what: ``--direct`` needs only this folder; ``--in-process`` the Router and
strategies; the proxy runs need
``cortex-perf router serve`` (tasks/routing/proxy, router, strategies); ``learned`` also needs the
router flow's training (tasks/routing/training) and the model registry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` and the siblings importable
    sys.path.insert(0, str(ROOT))

from benchmarks.router_load import DEFAULT_START, Picker, nasa_arrivals, run_load, summarize  # noqa: E402
from tasks.config.routing import RouterPool, RouterSettings, RouterTarget  # noqa: E402
from tasks.routing.model import Decision, Outcome, Query  # noqa: E402
from tasks.routing.router import Router  # noqa: E402

BACKEND = ROOT / "benchmarks" / "router_backend.py"
SCENARIOS = ("heterogeneous", "query_cost", "failing", "spike")
STRATEGIES = ("round_robin", "p2c", "p2c_ewma", "consistent_hash", "learned")
DIRECT = "direct_round_robin"
ORACLE = "oracle_good_backends"
ROUTE_KEYS = 1000
TARGET_P99 = 0.8  # ≤ 0.8 × P2C-EWMA's p99 in every scenario
TARGET_MEAN_QUERY_COST = 0.7  # ≤ 0.7 × P2C-EWMA's mean in query_cost
TARGET_OVERHEAD_MS = 1.0


@dataclass
class Scenario:
    """Backends (router_backend.py config objects) and the query mix of one scenario."""

    name: str
    backends: list[dict[str, Any]]
    kinds: list[tuple[str, float]] = field(default_factory=list)
    #: query kind ("" any) → the backends the scenario never slows or fails for it (the oracle's choice)
    good: dict[str, tuple[str, ...]] = field(default_factory=dict)


def scenarios(duration_s: float) -> dict[str, Scenario]:
    """The four scenarios; failure and spike windows are placed relative to the run's length."""
    third = duration_s / 3.0

    def b(name: str, **kw: Any) -> dict[str, Any]:
        return {"name": name, "base_ms": 10.0, "sigma": 0.25, "workers": 4, **kw}

    return {
        "heterogeneous": Scenario("heterogeneous", [b("b0"), b("b1"), b("b2", slowdown=3.0)], good={"": ("b0", "b1")}),
        "query_cost": Scenario(
            "query_cost",
            [b("b0", kind_ms={"a": 5.0, "b": 25.0}, workers=8), b("b1", kind_ms={"a": 25.0, "b": 5.0}, workers=8)],
            kinds=[("a", 1.0), ("b", 1.0)],
            good={"a": ("b0",), "b": ("b1",)},
        ),
        "failing": Scenario(
            "failing",
            [b("b0"), b("b1", fail_rate=0.3, fail_window=[third, 2 * third]), b("b2")],
            good={"": ("b0", "b2")},
        ),
        "spike": Scenario(
            "spike",
            [b("b0"), b("b1", spike_factor=10.0, spike_window=[third, 1.5 * third]), b("b2")],
            good={"": ("b0", "b2")},
        ),
    }


# ---------------------------------------------------------------- processes


class BackendProc:
    """One ``router_backend.py`` process; ``configure`` sets its behaviour and restarts its clock."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.name = cfg["name"]
        self.proc = subprocess.Popen(
            [sys.executable, str(BACKEND), "--name", self.name, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"backend {self.name}: did not start: {line!r} {self._stderr()}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = dict(cfg)

    def _stderr(self) -> str:
        with contextlib.suppress(Exception):
            if self.proc.poll() is not None and self.proc.stderr is not None:
                return self.proc.stderr.read()[-2000:]
        return ""

    def configure(self, **extra: Any) -> None:
        body = {**self.base, **extra, "restart_clock": True}
        r = httpx.post(f"{self.url}/_backend/config", json=body, timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"backend {self.name}: config refused: {r.text}")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_backend/stats", timeout=10).json())

    def stop(self) -> None:
        _terminate(self.proc)


def _terminate(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(workdir: Path, backends: list[BackendProc], strategy: str, port: int, *, capacity: int = 1000) -> Path:
    """A cortex-perf config naming the backends, the strategy and this run's own lake and state DB."""
    cfg = {
        "data_dir": str(workdir / "data"),
        "lake": {"root": str(workdir / "lake")},
        "state": {"path": str(workdir / "state.duckdb")},
        "router": {
            "strategy": strategy,
            "pools": [
                {
                    "name": "bench",
                    "prefix": "/",
                    "targets": [{"name": b.name, "url": b.url, "capacity": capacity} for b in backends],
                }
            ],
            "service": {"host": "127.0.0.1", "port": port, "flush_s": 1.0, "reload_s": 1.0},
        },
    }
    path = workdir / "cortex-perf.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class ProxyProc:
    """``cortex-perf router serve --strategy S`` as a subprocess, ready once ``/_router/healthz`` answers."""

    def __init__(self, config: Path, strategy: str, port: int, workdir: Path) -> None:
        env = {
            **os.environ,
            "CORTEX_PERF_CONFIG": str(config),
            "PREFECT_HOME": str(workdir / "prefect"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        self.log = open(workdir / f"proxy-{strategy}.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "router", "serve", "--strategy", strategy],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.logfile = workdir / f"proxy-{strategy}.log"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router serve exited {self.proc.returncode}: {self.logfile.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_router/healthz", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"router serve did not answer in 60 s: {self.logfile.read_text()[-2000:]}")
            time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_router/status", timeout=10).json())

    def stop(self) -> None:
        _terminate(self.proc)
        self.log.close()


# ---------------------------------------------------------------- runs


class RouterPicker:
    """The in-process mode: the real ``Router`` (``route`` → send → ``record``) inside the generator,
    no proxy in between — the strategies' choices on real backends, without the service's cost.

    ``keep``: keep every outcome (the learned warm-up: they become the training data), else drop
    them once 1,000 are buffered (nobody writes them)."""

    def __init__(self, strategy: str, backends: list[BackendProc], seed: int, *, keep: bool = False) -> None:
        self.router = Router(bench_router_settings(strategy, backends), rng=random.Random(seed))
        self.index = {b.name: i for i, b in enumerate(backends)}
        self.keep = keep
        self.outcomes: list[Outcome] = []

    def pick(self, kind: str, key: str) -> tuple[int, Decision]:
        d = self.router.route(Query(method="GET", path="/q", kind=kind or None, key=key or None))
        return self.index[d.target.name], d

    def finish(self, handle: Decision, status: int, latency_ms: float, error: str | None) -> None:
        self.router.record(handle, status=status, latency_ms=latency_ms, error=error)
        if self.keep:
            self.outcomes.extend(self.router.drain())
        elif self.router.buffered > 1000:  # nobody writes these outcomes: keep the buffer from filling
            self.router.drain()


class OraclePicker:
    """Not a strategy: a picker that knows the scenario (which backend is slow or failing for which
    kind, for the whole run) and sends each query to the least busy of the others. Its figures are
    what a router could reach by never touching the bad backend: a floor the strategies are read
    against (a target below it cannot be met by choosing where to send, only by sending twice)."""

    def __init__(self, sc: Scenario, backends: list[BackendProc]) -> None:
        self.index = {b.name: i for i, b in enumerate(backends)}
        self.good = sc.good or {"": tuple(self.index)}
        self.pending = [0] * len(backends)

    def pick(self, kind: str, key: str) -> tuple[int, int]:
        names = self.good.get(kind) or self.good.get("") or tuple(self.index)
        i = min((self.index[n] for n in names), key=lambda j: self.pending[j])
        self.pending[i] += 1
        return i, i

    def finish(self, handle: int, status: int, latency_ms: float, error: str | None) -> None:
        self.pending[handle] -= 1


def bench_router_settings(strategy: str, backends: list[BackendProc], *, capacity: int = 1000) -> RouterSettings:
    """The router settings of the in-process runs: one pool of the backends, defaults otherwise
    (the same pool ``write_config`` gives the proxy)."""
    targets = [RouterTarget(name=b.name, url=b.url, capacity=capacity) for b in backends]
    return RouterSettings(strategy=strategy, pools=[RouterPool(name="bench", prefix="/", targets=targets)])


def train_in_process(picker: RouterPicker, backends: list[BackendProc], workdir: Path) -> dict[str, Any]:
    """What the ``router`` flow's stage does, on the warm-up's outcomes: write them to this run's
    own lake (as the recorder would), ``retrain_router`` (fit, backtest, promote through the model
    registry), and hand the champion to the running ``Router`` (as the service's reload does)."""
    # lazy: the lake, registry and training stack are needed only for `learned`; --direct must not need them
    from flows._common import load
    from tasks.actuators import ActionLedger
    from tasks.lake import schema as S
    from tasks.registry import ModelRegistry
    from tasks.routing.promotion import load_champion
    from tasks.routing.recorder import outcomes_frame
    from tasks.routing.training import retrain_router

    workdir.mkdir(parents=True, exist_ok=True)
    rt = load(str(write_config(workdir, backends, "learned", free_port())), None)
    rt.lake.write_rows(S.ROUTER_OUTCOMES, outcomes_frame(picker.outcomes))
    registry = ModelRegistry(rt.state, Path(rt.settings.data_dir) / "models")
    now = datetime.now(UTC) + timedelta(seconds=1)
    report = retrain_router(rt.settings, rt.lake, registry, ActionLedger.from_settings(rt.settings), now)
    champion = load_champion(registry, rt.settings.router.learned.model)
    if champion is not None:
        picker.router.set_model(champion[1], champion[0])
    bt = report.backtest.to_dict() if report.backtest is not None else None
    return {"status": report.status, "reason": report.reason, "outcomes": report.outcomes, "backtest": bt}


def measure(
    urls: list[str], arrivals: np.ndarray, kinds: list[tuple[str, float]], seed: int, picker: Picker | None = None
) -> dict[str, Any]:
    """One open-loop run; the figures plus where each kind was answered (to see what a strategy learnt)."""
    # 1,000 affinity keys so consistent hashing spreads (without a key every query hashes alike)
    result = asyncio.run(run_load(urls, arrivals, kinds=kinds, route_keys=ROUTE_KEYS, seed=seed, picker=picker))
    out = summarize(result)
    out["placement"] = {f"{k or '-'}->{b}": v for (k, b), v in sorted(result.placement.items())}
    return out


def train_learned(config: Path, proxy: ProxyProc, timeout_s: float = 60.0) -> dict[str, Any]:
    """Run the ``router`` flow on the warm-up's outcomes, as its deployment does (retrain, backtest,
    promote only a winner), and when it promoted a model, wait until the running service reports it
    (it reloads the registry every ``service.reload_s``). When the backtest did not win (e.g. the
    held-out part of the warm-up shows no difference between targets), the service keeps routing
    with ``learned``'s fallback, and that is what is measured."""
    # lazy: the flow stack (Prefect) is needed only for `learned`; --direct must not need it
    from flows.router import router as router_flow

    trained = dict(router_flow(config_path=str(config)))
    if not trained.get("promoted"):
        return {"training": trained, "model": None}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        model = proxy.status().get("model")
        if model and model.get("version"):
            return {"training": trained, "model": model}
        time.sleep(0.5)
    raise RuntimeError(f"the service did not pick up a promoted model in {timeout_s:.0f} s (training: {trained})")


def run_strategy(
    sc: Scenario,
    backends: list[BackendProc],
    strategy: str,
    arrivals: np.ndarray,
    workdir: Path,
    *,
    warmup: np.ndarray | None,
    seed: int,
) -> dict[str, Any]:
    """One strategy on one scenario through the real proxy (learned: warm-up, train, then measure)."""
    sdir = workdir / f"{sc.name}-{strategy}"
    sdir.mkdir(parents=True)
    port = free_port()
    config = write_config(sdir, backends, strategy, port)
    proxy = ProxyProc(config, strategy, port, sdir)
    extra: dict[str, Any] = {}
    try:
        if strategy == "learned":
            assert warmup is not None
            for b in backends:
                b.configure()
            extra["warmup"] = measure([f"{proxy.url}/q"], warmup, sc.kinds, seed + 7)
            time.sleep(2.5)  # the recorder flushes every flush_s (1 s): let the last batch land
            extra.update(train_learned(config, proxy))
        for b in backends:
            b.configure()
        out = measure([f"{proxy.url}/q"], arrivals, sc.kinds, seed)
        with contextlib.suppress(Exception):
            st = proxy.status()
            extra["router"] = {"model": st.get("model"), "dropped": st.get("dropped")}
    finally:
        proxy.stop()
    if extra:
        out["detail"] = extra
    return out


def _minutes_before(start: str, minutes: int) -> str:
    """The trace minute ``minutes`` before ``start`` (``YYYY-MM-DD HH:MM``, the trace's local time)."""
    try:
        at = datetime.strptime(start, "%Y-%m-%d %H:%M")
    except ValueError:
        raise SystemExit(f"error: --trace-start: {start!r} is not YYYY-MM-DD HH:MM") from None
    return (at - timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M")


def run_scenario(
    sc: Scenario, strategies: list[str], args: argparse.Namespace, workdir: Path
) -> dict[str, dict[str, Any]]:
    spm = args.seconds_per_minute
    arrivals = nasa_arrivals(args.rate, args.duration, seconds_per_minute=spm, start=args.trace_start, seed=args.seed)
    # the warm-up replays the trace minutes just before the measured window (what the router saw last)
    warm_start = _minutes_before(args.trace_start, math.ceil(args.warmup / spm))
    warmup = nasa_arrivals(args.rate, args.warmup, seconds_per_minute=spm, start=warm_start, seed=args.seed + 1)
    backends: list[BackendProc] = []
    rows: dict[str, dict[str, Any]] = {}
    try:
        for cfg in sc.backends:
            backends.append(BackendProc(cfg))
        if args.direct:
            for b in backends:
                b.configure()
            rows[DIRECT] = measure([f"{b.url}/q" for b in backends], arrivals, sc.kinds, args.seed)
        elif args.in_process:
            urls = [f"{b.url}/q" for b in backends]
            for s in strategies:
                _progress(f"{sc.name} / {s} (in process)")
                picker = RouterPicker(s, backends, args.seed, keep=s == "learned")
                extra: dict[str, Any] = {}
                if s == "learned":  # warm-up (no model: P2C-EWMA and exploration), train, then measure
                    for b in backends:
                        b.configure()
                    extra["warmup"] = measure(urls, warmup, sc.kinds, args.seed + 7, picker)
                    extra["training"] = train_in_process(picker, backends, workdir / f"{sc.name}-learned")
                    picker.keep = False
                    picker.outcomes.clear()
                    if extra["training"]["status"] != "promoted":
                        _progress(f"{sc.name} / learned: no model promoted ({extra['training']['reason']})")
                for b in backends:
                    b.configure()
                rows[s] = measure(urls, arrivals, sc.kinds, args.seed, picker)
                if extra:
                    rows[s]["detail"] = extra
            if args.oracle:
                _progress(f"{sc.name} / {ORACLE} (in process)")
                for b in backends:
                    b.configure()
                rows[ORACLE] = measure(urls, arrivals, sc.kinds, args.seed, OraclePicker(sc, backends))
        else:
            for s in strategies:
                _progress(f"{sc.name} / {s}")
                rows[s] = run_strategy(sc, backends, s, arrivals, workdir, warmup=warmup, seed=args.seed)
    finally:
        for b in backends:
            b.stop()
    return rows


def run_overhead(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """p50 through the proxy minus p50 direct, same backend, same generator, same arrivals."""
    rng = np.random.default_rng(args.seed + 2)
    n = rng.poisson(args.overhead_rate * args.overhead_duration)
    arrivals = np.sort(rng.uniform(0.0, args.overhead_duration, n))
    backend = BackendProc({"name": "b0", "base_ms": 1.0, "sigma": 0.0, "workers": 10_000})
    try:
        backend.configure()
        direct = measure([f"{backend.url}/q"], arrivals, [], args.seed)
        sdir = workdir / "overhead"
        sdir.mkdir()
        port = free_port()
        proxy = ProxyProc(write_config(sdir, [backend], "p2c_ewma", port, capacity=10_000), "p2c_ewma", port, sdir)
        try:
            backend.configure()
            routed = measure([f"{proxy.url}/q"], arrivals, [], args.seed)
        finally:
            proxy.stop()
    finally:
        backend.stop()
    return {
        "rate": args.overhead_rate,
        "direct": direct,
        "router": routed,
        "overhead_p50_ms": round(routed["p50_ms"] - direct["p50_ms"], 3),
        "overhead_p99_ms": round(routed["p99_ms"] - direct["p99_ms"], 3),
    }


def targets(report: dict[str, Any], strategy: str = "learned", base: str = "p2c_ewma") -> dict[str, Any]:
    """The issue's targets for ``strategy`` against ``base`` (None where either was not run)."""
    out: dict[str, Any] = {}
    for name, rows in report["scenarios"].items():
        if strategy not in rows or base not in rows:
            out[name] = None
            continue
        ours, ref = rows[strategy], rows[base]
        t = {
            "p99_ratio": round(ours["p99_ms"] / ref["p99_ms"], 3) if ref["p99_ms"] else math.nan,
            "errors_not_more": ours["error_pct"] <= ref["error_pct"],
        }
        t["met"] = t["p99_ratio"] <= TARGET_P99 and t["errors_not_more"]
        if name == "query_cost":
            t["mean_ratio"] = round(ours["mean_ms"] / ref["mean_ms"], 3) if ref["mean_ms"] else math.nan
            t["met"] = t["met"] and t["mean_ratio"] <= TARGET_MEAN_QUERY_COST
        out[name] = t
    ov = report.get("overhead_p50_ms")
    out["overhead"] = None if ov is None else {"p50_ms": ov, "met": ov <= TARGET_OVERHEAD_MS}
    return out


def _progress(msg: str) -> None:
    print(f"[router_bench] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _workdir(parent: str | None, keep: bool) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="router-bench-", dir=parent))
    try:
        yield d
    finally:
        if keep:
            _progress(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def _names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in known:
            raise SystemExit(f"error: --{what}: {n!r} is not one of {', '.join(known)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    p.add_argument("--direct", action="store_true", help="no proxy: the generator round-robins over the backends")
    p.add_argument("--in-process", action="store_true", help="no proxy: the real Router inside the generator")
    p.add_argument(
        "--oracle", action="store_true", help=f"with --in-process: also the {ORACLE} row (knows the bad backend)"
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--rate", type=float, default=None, help="mean req/s (default 150; quick 100)")
    p.add_argument("--duration", type=float, default=None, help="measured s per strategy (default 60; quick 6)")
    p.add_argument("--warmup", type=float, default=None, help="learned's warm-up s (default 60; quick 6)")
    p.add_argument("--seconds-per-minute", type=float, default=1.0, help="one NASA trace minute lasts this long")
    p.add_argument(
        "--trace-start", default=DEFAULT_START, help=f"first NASA trace minute measured (default {DEFAULT_START})"
    )
    p.add_argument("--overhead-rate", type=float, default=1000.0)
    p.add_argument("--overhead-duration", type=float, default=None, help="s (default 20; quick 3)")
    p.add_argument("--no-overhead", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", default=None, help="parent of the temporary work folder")
    p.add_argument("--keep", action="store_true", help="keep the work folder (configs, proxy logs, lakes)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    # SIGTERM: unwind (the finally blocks stop the backend and proxy processes) instead of orphaning them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.rate = a.rate or (100.0 if a.quick else 150.0)
    a.duration = a.duration or (6.0 if a.quick else 60.0)
    a.warmup = a.warmup or (6.0 if a.quick else 60.0)
    a.overhead_duration = a.overhead_duration or (3.0 if a.quick else 20.0)
    chosen = _names(a.scenarios, SCENARIOS, "scenarios")
    strategies = _names(a.strategies, STRATEGIES, "strategies")

    t0 = time.monotonic()
    report: dict[str, Any] = {"scenarios": {}, "default_strategy": RouterSettings().strategy, "overhead_p50_ms": None}
    with _workdir(a.dir, a.keep) as workdir:
        all_sc = scenarios(a.duration)
        for name in chosen:
            _progress(f"scenario {name}")
            report["scenarios"][name] = run_scenario(all_sc[name], strategies, a, workdir)
        if not (a.direct or a.in_process or a.no_overhead):
            _progress("overhead")
            report["overhead"] = run_overhead(a, workdir)
            report["overhead_p50_ms"] = report["overhead"]["overhead_p50_ms"]
    report["mode"] = "direct" if a.direct else "in_process" if a.in_process else "proxy"
    report["targets"] = targets(report)
    report["seconds"] = round(time.monotonic() - t0, 1)
    report["settings"] = {
        "rate": a.rate,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "seconds_per_minute": a.seconds_per_minute,
        "trace_start": a.trace_start,
        "overhead_rate": a.overhead_rate,
        "seed": a.seed,
    }
    if a.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


def _print_table(report: dict[str, Any]) -> None:
    cols = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "error_pct", "rps")
    print(f"{'scenario':<14} {'strategy':<20} " + " ".join(f"{c:>10}" for c in cols))
    for sc, rows in report["scenarios"].items():
        for st, row in rows.items():
            print(f"{sc:<14} {st:<20} " + " ".join(f"{row[c]:>10}" for c in cols))
    print(f"default strategy: {report['default_strategy']}; overhead p50: {report['overhead_p50_ms']} ms")
    print(f"targets: {json.dumps(report['targets'])}")


if __name__ == "__main__":
    sys.exit(main())

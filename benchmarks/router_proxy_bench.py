"""The proxy's own cost per request, per server stack: latency added over calling the backend
directly, and the proxy process's CPU per request (issue 15: overhead ≤ 1 ms p50 at 1,000 req/s).

Same set-up as ``router_bench.py``'s overhead mode (its processes and generator are reused): one
``router_backend.py`` with a fixed 1 ms and no queueing, Poisson arrivals at ``--rate``, called
directly and then through ``cortex-perf router serve`` (one target, P2C-EWMA, the outcome recorder
writing to a temporary lake) by the same open-loop generator. What this adds: the proxy's CPU
seconds over the measured run (``/_router/status`` → ``service.cpu_s``) divided by the requests —
on a 2-core box shared with the generator and the backend, that decides the rate the proxy holds —
each uvicorn stack (``--stacks uvloop/httptools,asyncio/h11``), repeats, and the load average
before each run (other work on the machine shows in the figures). ``--profile OUT`` instead runs one
proxy in process under cProfile for the routed run and prints its top functions.

    uv run python benchmarks/router_proxy_bench.py --duration 20 --json
    uv run python benchmarks/router_proxy_bench.py --stacks asyncio/h11,asyncio/httptools,uvloop/httptools
    uv run python benchmarks/router_proxy_bench.py --duration 10 --profile /tmp/proxy.prof
    options: --rate R (1000)  --duration S (20)  --repeat N (1)  --seed N  --json
    --profile - runs the in-process proxy without profiling; ROUTER_BENCH_NO_LAKE=1 with --profile
    leaves the lake (so the outcome recorder) out: what the recorder costs is the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` and the siblings importable
    sys.path.insert(0, str(ROOT))

from benchmarks.router_bench import BackendProc, ProxyProc, _terminate, free_port, measure, write_config  # noqa: E402

KEYS = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "error_pct",
    "rps",
    "lag_p99_ms",
    "cpu_us_per_request",
    "errors",
    "error_statuses",
)


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in KEYS}


class ProfiledProxy:
    """The proxy in a child process under cProfile (this script's ``--serve-profiled``): it stops
    by itself after ``seconds`` and writes the profile (uvicorn re-raises a caught SIGTERM, which
    would lose it)."""

    def __init__(self, config: Path, port: int, out: Path, seconds: float, loop: str, http: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-profiled", str(config), str(out), str(seconds), loop, http, str(port)],
            cwd=ROOT,
            env={**os.environ, "DO_NOT_TRACK": "1"},
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the profiled proxy did not start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_router/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_router/status", timeout=10).json())

    def stop(self) -> None:
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            _terminate(self.proc)


def serve_profiled(config: str, out: str, seconds: float, loop: str, http: str, port: int) -> None:
    import uvicorn

    from flows._common import load
    from tasks.routing.proxy import build_app
    from tasks.routing.router import Router

    rt = load(config, None)
    lake = None if os.environ.get("ROUTER_BENCH_NO_LAKE") else rt.lake  # diagnosis: without the recorder
    app = build_app(Router(rt.settings.router), rt.settings, lake)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, loop=loop, http=http, log_level="warning", access_log=False)
    )
    threading.Timer(seconds, lambda: setattr(server, "should_exit", True)).start()
    prof = cProfile.Profile()
    if out != "-":
        prof.enable()
    try:
        server.run()
    finally:
        prof.disable()
        if out != "-":
            prof.dump_stats(out)


def run_once(args: argparse.Namespace, stack: str, workdir: Path, backend: BackendProc, rep: int) -> dict[str, Any]:
    loop, _, http = stack.partition("/")
    rng = np.random.default_rng(args.seed + rep)
    n = rng.poisson(args.rate * args.duration)
    arrivals = np.sort(rng.uniform(0.0, args.duration, n))
    warm = np.sort(rng.uniform(0.0, 1.0, int(args.rate)))
    out: dict[str, Any] = {"stack": stack, "repeat": rep, "load_avg_1m": round(os.getloadavg()[0], 2)}
    backend.configure()
    out["direct"] = _figures(measure([f"{backend.url}/q"], arrivals, [], args.seed))
    sdir = workdir / f"{stack.replace('/', '-')}-{rep}"
    sdir.mkdir()
    port = free_port()
    config = write_config(sdir, [backend], "p2c_ewma", port, capacity=10_000)
    os.environ["CORTEX_PERF_ROUTER_LOOP"], os.environ["CORTEX_PERF_ROUTER_HTTP"] = loop, http
    proxy: ProxyProc | ProfiledProxy
    if args.profile:
        proxy = ProfiledProxy(config, port, Path(args.profile), args.duration + 8, loop, http)
    else:
        proxy = ProxyProc(config, "p2c_ewma", port, sdir)
    try:
        measure([f"{proxy.url}/q"], warm, [], args.seed)  # warm: connections, caches, the first flush
        backend.configure()
        out["load_avg_1m_routed"] = round(os.getloadavg()[0], 2)
        cpu0 = proxy.status()["service"]["cpu_s"]
        routed = measure([f"{proxy.url}/q"], arrivals, [], args.seed)
        cpu1 = proxy.status()["service"]["cpu_s"]
    finally:
        proxy.stop()
    out["router"] = _figures(routed)
    out["overhead_p50_ms"] = round(routed["p50_ms"] - out["direct"]["p50_ms"], 3)
    out["overhead_p99_ms"] = round(routed["p99_ms"] - out["direct"]["p99_ms"], 3)
    out["proxy_cpu_us_per_request"] = round((cpu1 - cpu0) / max(n, 1) * 1e6, 1)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-profiled":
        c, o, s, lp, h, port = sys.argv[2:8]
        serve_profiled(c, o, float(s), lp, h, int(port))
        return
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--stacks", default="uvloop/httptools")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default=None, help="cProfile the proxy (in process) into this file")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="router-proxy-bench-"))
    runs = []
    backend = BackendProc({"name": "b0", "base_ms": 1.0, "sigma": 0.0, "workers": 10_000})
    try:
        for rep in range(a.repeat):
            for stack in a.stacks.split(","):
                r = run_once(a, stack, workdir, backend, rep)
                runs.append(r)
                if not a.json:
                    print(json.dumps(r), flush=True)
    finally:
        backend.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if a.profile and a.profile != "-":
        pstats.Stats(a.profile).sort_stats("tottime").print_stats(30)
    if a.json:
        print(json.dumps({"rate": a.rate, "duration_s": a.duration, "runs": runs}))


if __name__ == "__main__":
    main()

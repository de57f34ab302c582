"""CPU per request of the proxy's candidate upstream clients (httpx, aiohttp) on each event loop
(asyncio, uvloop), against one real ``router_backend.py`` process answering at once.

Why CPU and not latency: on this 2-core box the proxy shares the CPU with the backends and the load
generator, so what the client costs per request decides the rate the proxy holds; latency at low
load hides it. Each case sends ``--requests`` GETs with ``--concurrency`` in flight over keep-alive
connections and reports this process's CPU time (user + sys) per request (the backend's CPU is in
its own process and not counted) and the requests per second it managed. (A minimal HTTP/1.1
client of our own on asyncio protocols and httptools was measured too, ~75 µs on uvloop against
aiohttp's ~60 µs, and dropped: see tasks/routing/proxy.py and BENCHMARKS.md "Proxy overhead".)

    uv run python benchmarks/router_client_bench.py --json
    options: --requests N (default 5000)  --concurrency C (default 32)  --clients a,b  --loops a,b
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]

CLIENTS = ("httpx", "aiohttp")
LOOPS = ("asyncio", "uvloop")


async def _httpx(url: str, n: int, conc: int) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=conc), trust_env=False) as client:

        async def one() -> None:
            r = await client.send(client.build_request("GET", url), stream=True)
            async for _ in r.aiter_raw():
                pass
            await r.aclose()

        await _drive(one, n, conc)


async def _aiohttp(url: str, n: int, conc: int) -> None:
    conn = aiohttp.TCPConnector(limit=0, limit_per_host=conc, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=conn, auto_decompress=False) as session:

        async def one() -> None:
            async with session.get(url) as r:
                async for _ in r.content.iter_any():
                    pass

        await _drive(one, n, conc)


async def _drive(one: Callable[[], Awaitable[None]], n: int, conc: int) -> None:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(conc)))


RUN: dict[str, Callable[[str, int, int], Coroutine[Any, Any, None]]] = {
    "httpx": _httpx,
    "aiohttp": _aiohttp,
}


def measure(client: str, loop: str, url: str, n: int, conc: int) -> dict[str, Any]:
    runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if loop == "uvloop":
        import uvloop

        runner = uvloop.run
    runner(RUN[client](url, min(n, 200), conc))  # warm up: connections, imports, caches
    c0, t0 = time.process_time(), time.perf_counter()
    runner(RUN[client](url, n, conc))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"cpu_us_per_request": round(cpu / n * 1e6, 1), "rps": round(n / wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--loops", default=",".join(LOOPS))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    backend = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "router_backend.py"), "--port", "0", "--base-ms", "0"]
        + ["--sigma", "0", "--workers", "100000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert backend.stdout is not None
        line = backend.stdout.readline()
        if not line.startswith("READY "):
            raise SystemExit(f"backend did not start: {line!r}")
        url = f"http://127.0.0.1:{line.split()[1]}/q"
        out: dict[str, Any] = {}
        for client in a.clients.split(","):
            for loop in a.loops.split(","):
                out[f"{client}/{loop}"] = measure(client, loop, url, a.requests, a.concurrency)
                if not a.json:
                    print(f"{client:9s} {loop:8s} {out[f'{client}/{loop}']}", flush=True)
    finally:
        backend.terminate()
        backend.wait(10)
    if a.json:
        print(json.dumps({"requests": a.requests, "concurrency": a.concurrency, "clients": out}))


if __name__ == "__main__":
    main()

"""A benchmark backend for the query router: a real HTTP server process whose behaviour is set on its
command line or live by ``POST /_backend/config``.

Why its own tiny HTTP/1.1 server on asyncio streams (no framework): on this 2-core box the backends,
the proxy and the load generator share the CPU, so every microsecond a backend spends parsing is a
microsecond stolen from the thing being measured, so the request path has no framework on it. It
speaks enough HTTP/1.1 for any client: keep-alive, ``Content-Length`` and chunked request bodies,
``Connection: close``.

Behaviour (all times in seconds since the backend's clock was (re)started):
- service time per request: lognormal with median ``kind_ms[kind]`` (or ``base_ms``; the kind comes
  from the ``x-query-kind`` header) and shape ``sigma``, times ``slowdown``, times ``spike_factor``
  inside ``spike_window``;
- a fixed number of ``workers``: a request waits for a free worker first, so an overloaded backend
  queues as real ones do (the wait is part of the latency the client sees);
- ``fail_rate`` of requests inside ``fail_window`` answer HTTP 500 (after their service time).

    uv run python benchmarks/router_backend.py --name b0 --base-ms 10 --kind-ms a=5,b=30 --workers 8
    uv run python benchmarks/router_backend.py --fail-rate 0.3 --fail-window 20:40 --spike-factor 10 --spike-window 5:10

It prints ``READY <port>`` on its first stdout line (``--port 0`` picks a free port). Admin endpoints
(never counted): ``POST /_backend/config`` (a JSON object of the fields below; ``"restart_clock":
true`` also restarts the clock and the counters) and ``GET /_backend/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BackendConfig", "ConfigError", "parse_kind_ms", "parse_window", "serve"]

MAX_HEAD = 64 * 1024  # request line + headers
MAX_BODY = 16 * 1024 * 1024
MAX_MS = 600_000.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large", 500: "Internal Server Error"}


class ConfigError(ValueError):
    """A behaviour setting out of range: the message names the field and the value."""


@dataclass
class BackendConfig:
    """What this backend does; every field can be changed live."""

    name: str = "backend"
    base_ms: float = 10.0  # median service time of a query without a known kind
    kind_ms: dict[str, float] = field(default_factory=dict)  # median per x-query-kind
    sigma: float = 0.25  # lognormal shape (0: every request takes exactly the median)
    slowdown: float = 1.0
    workers: int = 16  # requests served at once; the rest queue
    fail_rate: float = 0.0
    fail_window: tuple[float, float] | None = None  # None: always (when fail_rate > 0)
    spike_factor: float = 1.0
    spike_window: tuple[float, float] | None = None  # None: no spike
    seed: int = 0

    def validate(self) -> BackendConfig:
        def rng(fld: str, v: float, lo: float, hi: float) -> None:
            if not (isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"{fld}: {v!r} is not a number in [{lo:g}, {hi:g}]")

        if not isinstance(self.name, str) or not 0 < len(self.name) <= 100:
            raise ConfigError(f"name: {self.name!r} must be 1 to 100 characters")
        rng("base_ms", self.base_ms, 0, MAX_MS)
        if not isinstance(self.kind_ms, dict) or len(self.kind_ms) > 100:
            raise ConfigError(f"kind_ms: {self.kind_ms!r} must be an object of at most 100 kinds")
        for k, v in self.kind_ms.items():
            rng(f"kind_ms.{k}", v, 0, MAX_MS)
        rng("sigma", self.sigma, 0, 3)
        rng("slowdown", self.slowdown, 0, 1000)
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or not 1 <= self.workers <= 100_000:
            raise ConfigError(f"workers: {self.workers!r} is not an integer in [1, 100000]")
        rng("fail_rate", self.fail_rate, 0, 1)
        rng("spike_factor", self.spike_factor, 0, 1000)
        for fld in ("fail_window", "spike_window"):
            w = getattr(self, fld)
            if w is None:
                continue
            if not (isinstance(w, list | tuple) and len(w) == 2):
                raise ConfigError(f"{fld}: {w!r} must be [start_s, end_s]")
            rng(f"{fld}.start", w[0], 0, 1e7)
            rng(f"{fld}.end", w[1], 0, 1e7)
            if w[1] < w[0]:
                raise ConfigError(f"{fld}: end {w[1]!r} is before start {w[0]!r}")
            setattr(self, fld, (float(w[0]), float(w[1])))
        return self

    def updated(self, changes: dict[str, Any]) -> BackendConfig:
        """A validated copy with ``changes`` applied (unknown fields are an error, not ignored)."""
        known = set(asdict(self))
        for k in changes:
            if k not in known:
                raise ConfigError(f"{k}: unknown field (known: {', '.join(sorted(known))})")
        merged = {**asdict(self), **changes}
        return BackendConfig(**merged).validate()


def parse_kind_ms(text: str) -> dict[str, float]:
    """``a=5,b=30`` → {"a": 5.0, "b": 30.0}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, ms = part.partition("=")
        if not sep or not kind:
            raise ConfigError(f"kind_ms: {part!r} must be KIND=MS")
        try:
            out[kind] = float(ms)
        except ValueError:
            raise ConfigError(f"kind_ms: {ms!r} is not a number (in {part!r})") from None
    return out


def parse_window(text: str, fld: str) -> tuple[float, float]:
    """``20:40`` → (20.0, 40.0) seconds since the clock started."""
    a, sep, b = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(a), float(b)
    except ValueError:
        raise ConfigError(f"{fld}: {text!r} must be START_S:END_S") from None


class Backend:
    """The behaviour and the counters; one per process."""

    def __init__(self, cfg: BackendConfig) -> None:
        self.cfg = cfg.validate()
        self.rng = random.Random(cfg.seed)
        self.workers = asyncio.Semaphore(cfg.workers)
        self.restart_clock()

    def restart_clock(self) -> None:
        self.t0 = time.monotonic()
        self.stats: dict[str, Any] = {"requests": 0, "ok": 0, "failed": 0, "queued": 0, "max_queued": 0, "by_kind": {}}
        self.in_service = 0

    def configure(self, changes: dict[str, Any]) -> None:
        restart = bool(changes.pop("restart_clock", False))
        new = self.cfg.updated(changes)
        if new.workers != self.cfg.workers:
            # a fresh semaphore: requests already waiting on the old one finish under the old limit
            self.workers = asyncio.Semaphore(new.workers)
        if new.seed != self.cfg.seed:
            self.rng = random.Random(new.seed)
        self.cfg = new
        if restart:
            self.restart_clock()

    @staticmethod
    def _inside(window: tuple[float, float] | None, t: float) -> bool:
        return window is not None and window[0] <= t < window[1]

    def service_s(self, kind: str | None, t: float) -> float:
        c = self.cfg
        median = c.kind_ms.get(kind, c.base_ms) if kind is not None else c.base_ms
        ms = median * (math.exp(self.rng.gauss(0.0, c.sigma)) if c.sigma > 0 else 1.0) * c.slowdown
        if self._inside(c.spike_window, t):
            ms *= c.spike_factor
        return min(ms, MAX_MS) / 1000.0

    def fails(self, t: float) -> bool:
        c = self.cfg
        if c.fail_rate <= 0 or (c.fail_window is not None and not self._inside(c.fail_window, t)):
            return False
        return self.rng.random() < c.fail_rate

    async def handle(self, kind: str | None) -> tuple[int, bytes]:
        st = self.stats
        st["requests"] += 1
        by_kind = st["by_kind"]
        by_kind[kind or ""] = by_kind.get(kind or "", 0) + 1
        waits = self.workers.locked()  # every worker busy: this request queues
        if waits:
            st["queued"] += 1
            st["max_queued"] = max(st["max_queued"], st["queued"])
        async with self.workers:
            if waits:
                st["queued"] -= 1
            t = time.monotonic() - self.t0
            svc = self.service_s(kind, t)
            self.in_service += 1
            try:
                await asyncio.sleep(svc)
            finally:
                self.in_service -= 1
            failed = self.fails(t)
        st["failed" if failed else "ok"] += 1
        body = b'{"backend":%s,"ms":%.3f}' % (json.dumps(self.cfg.name).encode(), svc * 1000)
        return (500 if failed else 200), body

    def admin(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path == "/_backend/stats" and method == "GET":
            return 200, json.dumps({**self.stats, "in_service": self.in_service, "config": asdict(self.cfg)}).encode()
        if path == "/_backend/config" and method == "POST":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ConfigError("body: must be a JSON object")
                self.configure(changes)
            except (ConfigError, ValueError, TypeError) as e:
                return 400, json.dumps({"error": str(e)}).encode()
            return 200, json.dumps(asdict(self.cfg)).encode()
        return 404, b'{"error":"unknown admin endpoint"}'


def _response(status: int, body: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
    )
    return head.encode("latin-1") + body


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    n = int(headers.get("content-length", "0") or 0)
    if n < 0 or n > MAX_BODY:
        raise ValueError("body too large")
    return await reader.readexactly(n) if n else b""


async def _connection(backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                writer.write(_response(400, b'{"error":"bad request line"}', False))
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            conn = headers.get("connection", "").lower()
            keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
            try:
                body = await _read_body(reader, headers)
            except (ValueError, asyncio.IncompleteReadError):
                writer.write(_response(413, b'{"error":"bad or too large body"}', False))
                return
            path = target.split("?", 1)[0]
            if path.startswith("/_backend/"):
                status, payload = backend.admin(method, path, body)
            else:
                status, payload = await backend.handle(headers.get("x-query-kind"))
            writer.write(_response(status, payload, keep))
            await writer.drain()
            if not keep:
                return
    except ConnectionError:
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(cfg: BackendConfig, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGTERM/SIGINT; print ``READY <port>`` once listening."""
    backend = Backend(cfg)
    server = await asyncio.start_server(
        lambda r, w: _connection(backend, r, w), host, port, limit=MAX_HEAD, backlog=1024
    )
    sock_port = server.sockets[0].getsockname()[1]
    print(f"READY {sock_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed as READY <port>)")
    p.add_argument("--name", default="backend")
    p.add_argument("--base-ms", type=float, default=10.0, help="median service time (ms)")
    p.add_argument("--kind-ms", default="", help="median per query kind: a=5,b=30")
    p.add_argument("--sigma", type=float, default=0.25, help="lognormal shape")
    p.add_argument("--slowdown", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=16, help="requests served at once (the rest queue)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share answered HTTP 500")
    p.add_argument("--fail-window", default=None, help="START_S:END_S (default: always)")
    p.add_argument("--spike-factor", type=float, default=1.0)
    p.add_argument("--spike-window", default=None, help="START_S:END_S")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        cfg = BackendConfig(
            name=a.name,
            base_ms=a.base_ms,
            kind_ms=parse_kind_ms(a.kind_ms),
            sigma=a.sigma,
            slowdown=a.slowdown,
            workers=a.workers,
            fail_rate=a.fail_rate,
            fail_window=parse_window(a.fail_window, "fail_window") if a.fail_window else None,
            spike_factor=a.spike_factor,
            spike_window=parse_window(a.spike_window, "spike_window") if a.spike_window else None,
            seed=a.seed,
        ).validate()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(cfg, a.host, a.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

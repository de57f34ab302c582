"""The router's request path: a plain ASGI proxy that routes each request, streams the answer back
and hands the outcome to the ``Router`` (which buffers it for ``tasks.routing.recorder``).

Why a plain ASGI callable and not Starlette: the overhead budget is ≤ 1 ms p50 per request at
1,000 req/s on a 2-core box, and every layer of middleware, request object and routing table is
paid on every request. The hot path here is: read the body (bounded), build a ``Query``,
``Router.route``, one ``aiohttp.ClientSession.request`` over a shared keep-alive pool, copy the
answer's chunks through, ``Router.record``. Nothing is logged or written per request.

Why aiohttp as the upstream client (not httpx): measured here (``benchmarks/router_client_bench.py``,
0 ms backend, 32 in flight) httpx's ``AsyncClient`` costs ~1.5 ms of CPU per request (the proxy
saturated at ~250 req/s with it), aiohttp's ``ClientSession`` (its C HTTP parser) ~60 µs, and a
minimal HTTP/1.1 client of our own on asyncio protocols and httptools ~75 µs on uvloop — not faster,
so the standard stack it is. The session is set up as a proxy needs: no cookie jar (one client's
cookies must not reach another's request), no redirects followed, no decompression (bytes pass
through as the target sent them), no default ``User-Agent``/``Accept``/``Content-Type`` added, no
proxy from the environment, keep-alive connections per target (up to the targets' capacity).

What is measured: an attempt's latency is the time from sending to the answer's *headers* (what
the peak-EWMA and the learned model should learn: the backend's time to answer, not the client's
speed at reading a large body), but the attempt is *recorded* only when its body has been passed
on, so ``pending`` covers the whole answer and a backend that closes the connection mid-answer is
recorded as a failure (the client's connection is then closed too: a half answer must not look
whole).

Resilience on the request path (the decisions themselves are the ``Router``'s):
- timeouts: ``service.timeout_s`` to the headers and between body chunks, ``connect_timeout_s`` to
  connect; a timeout answers 504 and is recorded as a failure (status 0);
- retries to a *different* target on connection errors and ``retry.retry_on`` statuses while
  attempts < ``retry.max_attempts`` and the retry budget allows; a non-idempotent request with a
  body is retried only when nothing was sent (connect error);
- hedging of idempotent queries after ``retry.hedge_after_s`` (budgeted like a retry): the first
  answer wins, the other attempt is cancelled and released without an outcome;
- a body over ``service.max_body_bytes`` → 413; a request the router cannot place → 503
  ``{"error": ...}``. Admin endpoints live under ``/_router/`` and are never proxied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from yarl import URL

from tasks.config import Settings
from tasks.config.routing import RouterPool
from tasks.lake import Lake
from tasks.redact import redact_url
from tasks.routing.model import Decision, Query, RoutingError
from tasks.routing.recorder import OutcomeRecorder
from tasks.routing.router import Router

__all__ = ["ADMIN_PREFIX", "HOP_BY_HOP", "TEXT_HEAD_BYTES", "RouterProxy", "build_app", "make_session"]

log = logging.getLogger("cortex_perf.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Reserved path prefix of the service's own endpoints (never routed upstream).
ADMIN_PREFIX = "/_router"
#: The head of a text body the router sees for text features (``Query.text``).
TEXT_HEAD_BYTES = 4096
#: RFC 9110 §7.6.1 hop-by-hop headers (plus the legacy ``proxy-connection``): never forwarded.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_TEXT_TYPES = (
    b"text/",
    b"application/json",
    b"application/xml",
    b"application/x-www-form-urlencoded",
    b"+json",
    b"+xml",
)
_JSON_HEADERS = [(b"content-type", b"application/json")]
#: Request headers the proxy sets itself (or that the server already answered: ``expect``).
_NOT_FORWARDED = frozenset({b"host", b"content-length", b"x-forwarded-for", b"expect"})
#: Headers aiohttp would otherwise add to every request on its own.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
#: Client errors where nothing reached the target (safe to retry any request elsewhere).
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class Background(Protocol):
    """A task beside the proxy (the recorder, the reloader): started and stopped by the lifespan,
    shown in ``/_router/status``."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class _BodyTooLarge(Exception):
    pass


@dataclass
class _Try:
    """One upstream attempt as far as its headers: the answer, or why there is none."""

    decision: Decision
    latency_ms: float = 0.0
    response: aiohttp.ClientResponse | None = None
    error: str | None = None
    timeout: bool = False
    sent: bool = True  # False: failed before anything reached the backend (connect error)


def _strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones, nor those the ``Connection`` header names."""
    pairs = [(k.lower(), v) for k, v in headers]
    named = {t.strip().lower().encode() for k, v in pairs if k == b"connection" for t in v.decode("latin-1").split(",")}
    return [(k, v) for k, v in pairs if k not in HOP_BY_HOP and k not in named]


def make_session(router: Router) -> aiohttp.ClientSession:
    """The upstream client (see the module docstring): one per service, made inside its loop."""
    rs = router.settings
    svc = rs.service
    capacity = max((t.capacity for p in rs.pools for t in p.targets), default=100)
    connector = aiohttp.TCPConnector(
        limit=0,  # in flight is bounded per target by the router's capacity, not here
        limit_per_host=min(capacity, 10_000),
        ttl_dns_cache=300,
        keepalive_timeout=15,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, connect=svc.connect_timeout_s, sock_connect=svc.connect_timeout_s, sock_read=svc.timeout_s
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=_NO_AUTO_HEADERS,
        trust_env=False,  # a proxy from the environment must not sit between us and the targets
        raise_for_status=False,
    )


def _is_text(content_type: bytes) -> bool:
    ct = content_type.lower()
    return any(t in ct for t in _TEXT_TYPES)


async def _answer_json(send: Send, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(obj, default=str).encode()
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RouterProxy:
    """The ASGI app. ``recorder`` and ``reloader`` (optional) run beside it from the lifespan."""

    def __init__(
        self,
        router: Router,
        settings: Settings,
        lake: Lake | None,
        *,
        client: aiohttp.ClientSession | None = None,
        background: list[Background] | None = None,
    ) -> None:
        self.router = router
        self.settings = settings
        self.lake = lake
        self.background = list(background or [])
        self._client = client
        self._own_client = client is None
        self._pools: tuple[int, dict[str, RouterPool]] = (0, {})
        self.started = time.time()
        self.requests = 0  # proxied requests answered (status)
        self.on_recorded: Callable[[], None] | None = None  # the recorder's wake-up (cheap, per outcome)

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = make_session(self.router)
        return self._client

    async def startup(self) -> None:
        _ = self.client
        for b in self.background:
            await b.start()

    async def shutdown(self) -> None:
        """Stop the background tasks (the recorder writes what is left) and close the client."""
        for b in reversed(self.background):
            try:
                await b.stop()
            except Exception as exc:  # one failing part must not keep the others from stopping
                log.error("router: stopping %s failed: %s", type(b).__name__, redact_url(str(exc)))
        if self._client is not None and self._own_client:
            await self._client.close()
            self._client = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": redact_url(str(exc))})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- the request path -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                await self._admin(path, send)
            else:
                await self._proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not routed: returning without accepting closes them (403)

    def _pool(self, name: str) -> RouterPool | None:
        rs = self.router.settings
        key, pools = self._pools
        if key != id(rs):
            pools = {p.name: p for p in rs.pools}
            self._pools = (id(rs), pools)
        return pools.get(name)

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError("client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            if chunk:
                chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def _query(self, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes) -> Query:
        rs = self.router.settings
        kind_h, key_h = rs.kind_header.lower().encode(), rs.hash_header.lower().encode()
        kind = key = None
        ctype = b""
        for k, v in headers:
            if k == kind_h:
                kind = v.decode("latin-1")
            elif k == key_h:
                key = v.decode("latin-1")
            elif k == b"content-type":
                ctype = v
        text = body[:TEXT_HEAD_BYTES].decode("utf-8", "replace") if body and _is_text(ctype) else ""
        return Query(method=scope["method"], path=scope["path"], kind=kind, size=len(body), text=text, key=key)

    def _upstream_url(self, decision: Decision, scope: Scope) -> URL:
        """The target's URL plus the request's path (as the client sent it: ``raw_path``, so an
        encoded character stays encoded) and query, less the pool's prefix where it strips it."""
        path: str = scope["path"]
        raw: bytes | None = scope.get("raw_path")
        pool = self._pool(decision.pool)
        if pool is not None and pool.strip_prefix and pool.prefix != "/" and path.startswith(pool.prefix):
            prefix = pool.prefix.rstrip("/")
            encoded = quote(prefix).encode()
            if raw is not None and raw.startswith(encoded):
                raw = raw[len(encoded) :]
            else:
                raw = quote(path[len(prefix) :]).encode()
            if not raw.startswith(b"/"):
                raw = b"/" + raw
        target = (raw or quote(path).encode()).decode("latin-1")
        qs: bytes = scope.get("query_string", b"")
        if qs:
            target += "?" + qs.decode("latin-1")
        return URL(decision.target.target.url.rstrip("/") + target, encoded=True)

    def _forward_headers(self, scope: Scope, raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        """The client's headers for the target (as str pairs, what aiohttp takes): no hop-by-hop
        ones, no ``host``/``content-length`` (aiohttp sets the target's own), ``x-forwarded-*`` added."""
        headers: list[tuple[str, str]] = []
        host = b""
        xff = b""
        for k, v in _strip_hop_by_hop(raw):
            if k in _NOT_FORWARDED:
                if k == b"host":
                    host = v
                elif k == b"x-forwarded-for":
                    xff = v
            else:
                headers.append((k.decode("latin-1"), v.decode("latin-1")))
        client = scope.get("client")
        ip = client[0].encode() if client else b"unknown"
        headers.append(("x-forwarded-for", (xff + b", " + ip if xff else ip).decode("latin-1")))
        headers.append(("x-forwarded-proto", str(scope.get("scheme", "http"))))
        if host:
            headers.append(("x-forwarded-host", host.decode("latin-1")))
        return headers

    async def _send_upstream(
        self, decision: Decision, method: str, url: URL, headers: list[tuple[str, str]], body: bytes
    ) -> _Try:
        """Send one attempt and wait for its headers (never raises but for cancellation)."""
        svc = self.router.settings.service
        t0 = time.perf_counter()
        tr = _Try(decision)
        try:
            async with asyncio.timeout(svc.timeout_s):
                tr.response = await self.client.request(
                    method, url, headers=headers, data=body or None, allow_redirects=False
                )
        except _CONNECT_ERRORS as exc:
            tr.error, tr.sent = f"connect: {type(exc).__name__}: {exc}", False
            tr.timeout = isinstance(exc, TimeoutError)
        except TimeoutError:  # ours (to the headers) or aiohttp's read timeout
            tr.error, tr.timeout = f"timeout: no answer in {svc.timeout_s:g} s", True
        except (aiohttp.ClientError, OSError) as exc:
            tr.error = f"{type(exc).__name__}: {exc}"
        tr.latency_ms = (time.perf_counter() - t0) * 1000.0
        if tr.error:
            tr.error = redact_url(tr.error)[:500]
        return tr

    def _record(self, tr: _Try, *, error: str | None = None) -> None:
        status = tr.response.status if tr.response is not None else 0
        self.router.record(tr.decision, status=status, latency_ms=tr.latency_ms, error=error or tr.error)
        if self.on_recorded is not None:
            self.on_recorded()

    async def _discard(self, tr: _Try, *, release: bool) -> None:
        """Close an attempt that will not be answered from: recorded (a retried failure) or released."""
        if tr.response is not None:
            tr.response.close()  # not read to the end: the connection cannot be reused
        if release:
            self.router.release(tr.decision)
        else:
            self._record(tr)

    async def _race(
        self, first: Decision, query: Query, send: Callable[[Decision], Awaitable[_Try]], tried: list[str]
    ) -> _Try:
        """Hedging: if ``first`` has no answer after ``hedge_after_s``, send to a second target too;
        the first answer wins, the other is cancelled and released; a failure waits for the other."""
        rs = self.router.settings
        assert rs.retry.hedge_after_s is not None
        t1: asyncio.Future[_Try] = asyncio.ensure_future(send(first))
        done, _ = await asyncio.wait({t1}, timeout=rs.retry.hedge_after_s)
        if done:
            return t1.result()
        budget = self.router.retry_budget
        if not budget.try_retry():
            return await t1
        try:
            second = self.router.route(query, exclude=(first.target.name,), hedged=True, features=first.features)
        except RoutingError:
            budget.retry_finished()
            return await t1
        tried.append(second.target.name)  # a retry after both failed goes to a third target
        t2: asyncio.Future[_Try] = asyncio.ensure_future(send(second))
        owner = {t1: first, t2: second}
        pending: set[asyncio.Future[_Try]] = {t1, t2}
        failed: list[_Try] = []  # attempts that ended without an answer, in order
        winner: _Try | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in sorted(done, key=lambda f: f is not t1):  # the first attempt wins a tie
                    tr = t.result()
                    if tr.response is None:
                        failed.append(tr)
                    elif winner is None:
                        winner = tr
                    else:
                        await self._discard(tr, release=True)  # answered too, but lost the race
        finally:
            for t in pending:  # the loser (or both, when we are cancelled ourselves)
                t.cancel()
            for t in pending:
                try:
                    await self._discard(await t, release=True)
                except asyncio.CancelledError:
                    self.router.release(owner[t])
            budget.retry_finished()
        if winner is not None:
            for tr in failed:
                self._record(tr)
            return winner
        for tr in failed[:-1]:
            self._record(tr)
        return failed[-1]  # the caller records it (or retries it)

    def _retryable(self, tr: _Try, query: Query, has_body: bool, retry_on: list[int]) -> bool:
        if tr.response is not None:
            return tr.response.status in retry_on and (query.is_idempotent or not has_body)
        if not tr.sent:
            return True
        return query.is_idempotent or not has_body

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        rs = self.router.settings
        svc, retry = rs.service, rs.retry
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        for k, v in raw_headers:
            if k == b"content-length" and v.isdigit() and int(v) > svc.max_body_bytes:
                await _answer_json(send, 413, {"error": f"request body over {svc.max_body_bytes} bytes"})
                return
        try:
            body = await self._read_body(receive, svc.max_body_bytes)
        except _BodyTooLarge:
            await _answer_json(send, 413, {"error": f"request body over {svc.max_body_bytes} bytes"})
            return
        query = self._query(scope, raw_headers, body)
        try:
            decision = self.router.route(query)
        except RoutingError as exc:
            await _answer_json(send, 503, {"error": str(exc)})
            return
        headers = self._forward_headers(scope, raw_headers)

        method: str = scope["method"]

        def send_to(d: Decision) -> Awaitable[_Try]:
            return self._send_upstream(d, method, self._upstream_url(d, scope), headers, body)

        budget = self.router.retry_budget
        budget.request_started()
        try:
            tried = [decision.target.name]
            if retry.hedge_after_s is not None and query.is_idempotent:
                tr = await self._race(decision, query, send_to, tried)
            else:
                tr = await send_to(decision)
            attempt = 1
            while attempt < retry.max_attempts and self._retryable(tr, query, bool(body), retry.retry_on):
                if not budget.try_retry():
                    break
                try:
                    nxt = self.router.route(query, exclude=tried, attempt=attempt + 1, features=decision.features)
                except RoutingError:
                    budget.retry_finished()
                    break
                await self._discard(tr, release=False)
                attempt += 1
                tried.append(nxt.target.name)
                try:
                    tr = await send_to(nxt)
                finally:
                    budget.retry_finished()
            await self._answer(tr, send)
        except BaseException:
            # cancelled (server stopping): the attempt in flight must not stay pending forever
            current = locals().get("nxt", decision)
            if not current.done:
                self.router.release(current)
            raise
        finally:
            budget.request_finished()
            self.requests += 1

    async def _answer(self, tr: _Try, send: Send) -> None:
        """Stream the attempt's answer to the client, then record it (or answer 502/504 and record)."""
        d = tr.decision
        resp = tr.response
        if resp is None:
            self._record(tr)
            status = 504 if tr.timeout else 502
            await _answer_json(send, status, {"error": tr.error, "pool": d.pool, "target": d.target.name})
            return
        error: str | None = None
        whole = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": _strip_hop_by_hop(resp.raw_headers),
                }
            )
            content = resp.content
            async for chunk in content.iter_any():
                # the last chunk completes the answer in the same send (a small answer is usually
                # whole with its headers: one body send per request instead of two)
                whole = content.at_eof()
                await send({"type": "http.response.body", "body": chunk, "more_body": not whole})
                if whole:
                    break
        except (aiohttp.ClientError, OSError) as exc:  # cut off, or silent for timeout_s (read timeout)
            error = redact_url(f"answer cut off: {type(exc).__name__}: {exc}")[:500]
        except BaseException:
            error = "cancelled while streaming the answer"
            raise
        finally:
            if error is None and (whole or resp.content.at_eof()):
                resp.release()  # read to the end: the connection goes back to the pool
            else:
                resp.close()
            self._record(tr, error=error)
        if error is None and not whole:  # an empty body, or the iterator ended without eof seen
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        # else: return without completing the response, so the server closes the client's
        # connection: a half answer must not look like a whole one

    # ---- admin ----------------------------------------------------------------------------------
    async def _admin(self, path: str, send: Send) -> None:
        if path == ADMIN_PREFIX + "/status":
            status = self.router.status()
            status["service"] = {
                "uptime_s": round(time.time() - self.started, 3),
                "requests": self.requests,
                "cpu_s": round(time.process_time(), 3),  # the process's CPU (µs per request in benchmarks)
                **{type(b).__name__.lower(): b.snapshot() for b in self.background},
            }
            await _answer_json(send, 200, status)
        elif path == ADMIN_PREFIX + "/healthz":
            await _answer_json(send, 200, {"ok": True})
        else:
            await _answer_json(send, 404, {"error": f"no admin endpoint {path!r} (/_router/status, /_router/healthz)"})


def build_app(
    router: Router,
    settings: Settings,
    lake: Lake | None,
    *,
    background: list[Background] | None = None,
    client: aiohttp.ClientSession | None = None,
) -> RouterProxy:
    """The proxy as an ASGI app. With a ``lake``, an ``OutcomeRecorder`` writes the outcomes (first
    of ``background``, so it stops last and writes what the others' last requests left); without
    one they stay in the router's bounded buffer."""
    bg = list(background or [])
    recorder = next((b for b in bg if isinstance(b, OutcomeRecorder)), None)
    if recorder is None and lake is not None:
        recorder = OutcomeRecorder(router, lake, lake_settings=lake.settings)
        bg.insert(0, recorder)
    app = RouterProxy(router, settings, lake, client=client, background=bg)
    if recorder is not None:
        app.on_recorded = recorder.note
    return app

"""The proxy end to end: a real uvicorn service in front of real HTTP backends on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from routerhttp import Backend, Service, free_port

from tasks.config import Settings
from tasks.config.routing import RouterSettings
from tasks.routing.model import Query
from tasks.routing.proxy import _strip_hop_by_hop, build_app
from tasks.routing.router import Router
from tasks.routing.strategies import ConsistentHash


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("a"), Backend("b")
    yield a, b
    a.close()
    b.close()


def _settings(targets: list[tuple[str, str]], **router: Any) -> Settings:
    pool = {
        "name": "api",
        "prefix": "/api",
        "strip_prefix": True,
        "targets": [{"name": n, "url": u} for n, u in targets],
    }
    pool.update(router.pop("pool", {}))
    return Settings(router=RouterSettings.model_validate({"pools": [pool], **router}))


class Running:
    """A router and its service: ``get``/``request`` go through the proxy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = Router(settings.router)
        self.service = Service(build_app(self.router, settings, None))
        self.client = httpx.Client(base_url=self.service.url, timeout=30)

    def outcomes(self) -> list[Any]:
        """The outcomes once every attempt is closed: the proxy records an attempt after the last
        byte has gone out, so the client can have its answer a moment before the record exists."""
        deadline = time.monotonic() + 10
        while any(t.pending for ps in self.router.pools.values() for t in ps.targets.values()):
            assert time.monotonic() < deadline, "an attempt was never closed"
            time.sleep(0.005)
        return self.router.drain()

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.router.status()["pools"][0]["targets"] if t["name"] == name)

    def close(self) -> None:
        self.client.close()
        self.service.stop()


@pytest.fixture
def run() -> Iterator[Any]:
    made: list[Running] = []

    def start(settings: Settings) -> Running:
        r = Running(settings)
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def test_forwards_path_query_and_headers_without_hop_by_hop(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    r = run(_settings([("a", a.url + "/base")]))
    resp = r.client.get(
        "/api/items/7?q=1&z=%20",
        headers={"Connection": "keep-alive, x-hop", "X-Hop": "secret", "Keep-Alive": "timeout=5", "X-Keep": "yes"},
    )
    assert resp.status_code == 200
    seen = resp.json()
    assert seen["path"] == "/base/items/7"  # prefix stripped, target base path kept
    assert seen["query"] == "q=1&z=%20"
    h = seen["headers"]
    assert h["x-keep"] == "yes"
    assert "x-hop" not in h and "keep-alive" not in h
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"].startswith("127.0.0.1:")
    [o] = r.outcomes()
    assert (o.pool, o.target, o.status, o.ok, o.method, o.path) == ("api", "a", 200, True, "GET", "/api/items/7")


def test_strip_hop_by_hop_drops_those_the_connection_header_names() -> None:
    kept = _strip_hop_by_hop(
        [(b"Connection", b"close, X-Trace"), (b"X-Trace", b"1"), (b"Transfer-Encoding", b"chunked"), (b"ETag", b"e")]
    )
    assert kept == [(b"etag", b"e")]


def test_streams_the_answer_before_the_backend_has_finished(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    r = run(_settings([("a", a.url)]))
    chunks: list[bytes] = []
    done_at_first_chunk = None
    with r.client.stream("GET", "/api/stream?n=4&gap_ms=300") as resp:
        for chunk in resp.iter_raw():
            if done_at_first_chunk is None:
                done_at_first_chunk = a.server.streams_done
            chunks.append(chunk)
    assert done_at_first_chunk == 0  # the first chunk arrived while the backend was still writing
    assert b"".join(chunks).decode().splitlines() == [f"chunk {i} from a" for i in range(4)]
    [o] = r.outcomes()
    assert o.ok and o.status == 200
    assert r.target("a")["pending"] == 0


def test_a_timeout_answers_504_and_is_recorded_as_a_failure(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    r = run(_settings([("a", a.url)], service={"timeout_s": 0.3}, retry={"max_attempts": 1}))
    resp = r.client.get("/api/slow?ms=1500")
    assert resp.status_code == 504
    assert resp.json()["target"] == "a" and "timeout" in resp.json()["error"]
    [o] = r.outcomes()
    assert (o.status, o.ok) == (0, False) and "timeout" in (o.error or "")
    assert r.target("a")["failures"] == 1 and r.target("a")["pending"] == 0


def test_a_backend_closing_mid_answer_is_a_failure_and_the_client_sees_a_cut(
    backends: tuple[Backend, Backend], run: Any
) -> None:
    a, _ = backends
    r = run(_settings([("a", a.url)], retry={"max_attempts": 1}))
    with pytest.raises(httpx.RemoteProtocolError):
        r.client.get("/api/cut")
    [o] = r.outcomes()
    assert o.status == 200 and not o.ok and "cut off" in (o.error or "")
    assert r.target("a")["pending"] == 0


def test_a_retry_goes_to_another_target(backends: tuple[Backend, Backend], run: Any) -> None:
    a, b = backends
    a.fail_status = 503
    r = run(_settings([("a", a.url), ("b", b.url)], retry={"max_attempts": 2}, strategy="round_robin"))
    for _ in range(4):
        resp = r.client.get("/api/echo")
        assert resp.status_code == 200 and resp.json()["backend"] == "b"
    outcomes = r.outcomes()
    failed = [o for o in outcomes if o.target == "a"]
    assert failed and all(o.status == 503 and not o.ok and o.attempt == 1 for o in failed)
    retried = [o for o in outcomes if o.attempt == 2]
    assert len(retried) == len(failed) and all(o.target == "b" and o.ok for o in retried)


def test_no_retry_past_the_budget(backends: tuple[Backend, Backend], run: Any) -> None:
    a, b = backends
    a.fail_status = 503
    b.fail_status = 503
    r = run(_settings([("a", a.url), ("b", b.url)], retry={"max_attempts": 2, "budget_percent": 0, "min_retries": 0}))
    resp = r.client.get("/api/echo")
    assert resp.status_code == 503
    assert len(a.hits) + len(b.hits) == 1
    assert [o.attempt for o in r.outcomes()] == [1]


def test_a_post_with_a_body_is_retried_only_when_nothing_was_sent(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    a.fail_status = 503
    r = run(_settings([("dead", dead), ("a", a.url)], retry={"max_attempts": 3}, strategy="round_robin"))
    answers = [r.client.post("/api/echo", content=b'{"x": 1}').status_code for _ in range(4)]
    assert 503 in answers  # the 503 of a POST with a body is passed on, never retried
    outcomes = r.outcomes()
    by_request = [o for o in outcomes if o.target == "dead"]
    assert by_request and all(o.status == 0 and "connect" in (o.error or "") for o in by_request)
    # every refused connection was followed by a retry to `a`
    assert len([o for o in outcomes if o.attempt == 2 and o.target == "a"]) == len(by_request)
    # a's 503s were never followed by a third attempt
    assert not [o for o in outcomes if o.attempt == 3]


def test_hedging_answers_from_the_second_target_and_releases_the_first(
    backends: tuple[Backend, Backend], run: Any
) -> None:
    a, b = backends
    a.delay_ms = 1500
    r = run(_settings([("a", a.url), ("b", b.url)], retry={"hedge_after_s": 0.1}, strategy="round_robin"))
    for _ in range(2):
        resp = r.client.get("/api/echo")
        assert resp.status_code == 200 and resp.json()["backend"] == "b"
    outcomes = r.outcomes()
    assert [o.target for o in outcomes] == ["b", "b"]  # a's cancelled attempt has no outcome
    assert sum(o.hedged for o in outcomes) == len(a.hits) >= 1  # every request a got was hedged to b
    assert r.target("a")["pending"] == 0 and r.target("b")["pending"] == 0


def test_after_a_hedge_and_its_first_try_both_fail_the_retry_goes_to_a_third_target(
    backends: tuple[Backend, Backend], run: Any
) -> None:
    a, b = backends
    c = Backend("c")
    try:
        for slow_failing in (a, b):
            slow_failing.delay_ms, slow_failing.fail_status = 200, 503
        r = run(
            _settings(
                [("a", a.url), ("b", b.url), ("c", c.url)],
                retry={"hedge_after_s": 0.05, "max_attempts": 2},
                strategy="consistent_hash",
                ejection={"enabled": False},
                breaker={"enabled": False},
            )
        )
        # a key whose ring walk meets a, then b, then c: without a the walk picks b every time, so a
        # retry that forgot the hedge's target would go back to b
        ring = ConsistentHash()
        states = {t.name: t for t in r.router.pools["api"].targets.values()}
        key = next(
            k
            for k in map(str, range(10_000))
            if ring.choose(Query(key=k), [states[n] for n in "abc"], 0).name == "a"
            and ring.choose(Query(key=k), [states[n] for n in "bc"], 0).name == "b"
        )
        resp = r.client.get("/api/echo", headers={"x-route-key": key})  # a, the hedge to b: both 503
        assert resp.status_code == 200 and resp.json()["backend"] == "c"
        assert [o.target for o in sorted(r.outcomes(), key=lambda o: o.attempt)][-1] == "c"
        assert len(a.hits) == 1 and len(b.hits) == 1  # neither failing target was tried twice
    finally:
        c.close()


def test_a_body_over_the_limit_is_refused_with_413(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    r = run(_settings([("a", a.url)], service={"max_body_bytes": 100}))
    assert r.client.post("/api/echo", content=b"x" * 101).status_code == 413
    chunked = r.client.post("/api/echo", content=iter([b"x" * 60, b"y" * 60]))  # no Content-Length
    assert chunked.status_code == 413 and "100 bytes" in chunked.json()["error"]
    assert r.client.post("/api/echo", content=b"x" * 100).status_code == 200
    assert len(a.hits) == 1


def test_unknown_pool_and_no_healthy_target_answer_503_json(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    r = run(_settings([("a", a.url)], pool={"targets": [{"name": "a", "url": a.url, "capacity": 1}]}))
    resp = r.client.get("/elsewhere")
    assert resp.status_code == 503 and resp.headers["content-type"] == "application/json"
    assert "/elsewhere" in resp.json()["error"]
    slow = threading.Thread(target=lambda: httpx.get(r.service.url + "/api/slow?ms=800", timeout=10))
    slow.start()
    try:
        for _ in range(200):  # until the slow request holds the only slot
            if r.target("a")["pending"] == 1:
                break
            threading.Event().wait(0.01)
        full = r.client.get("/api/echo")
    finally:
        slow.join()
    assert full.status_code == 503 and "api" in full.json()["error"]
    assert a.hits == ["/slow"]


def test_admin_endpoints_are_answered_by_the_service(backends: tuple[Backend, Backend], run: Any) -> None:
    a, _ = backends
    r = run(_settings([("a", "http://user:pw@" + a.url.removeprefix("http://"))], pool={"prefix": "/"}))
    status = r.client.get("/_router/status").json()
    assert [t["name"] for t in status["pools"][0]["targets"]] == ["a"]
    assert "pw" not in json.dumps(status)
    assert status["service"]["requests"] == 0
    assert r.client.get("/_router/healthz").json() == {"ok": True}
    assert r.client.get("/_router/nope").status_code == 404
    assert a.hits == []
    # the target's URL credentials reach the backend as basic auth, not in the path
    assert r.client.get("/echo").json()["headers"]["authorization"].startswith("Basic ")

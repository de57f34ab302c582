"""The Router: pools by prefix, health and capacity before the strategy, outcomes, reload, status."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from tasks.config.routing import RouterSettings
from tasks.routing.model import NoHealthyTarget, Query, UnknownPool
from tasks.routing.router import MAX_BUFFERED, Router


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def settings(**over: Any) -> RouterSettings:
    base: dict[str, Any] = {
        "strategy": "p2c_ewma",
        "pools": [
            {
                "name": "api",
                "prefix": "/",
                "targets": [
                    {"name": "a", "url": "http://127.0.0.1:9001", "capacity": 2},
                    {"name": "b", "url": "http://user:s3cret@127.0.0.1:9002"},
                ],
            },
            {
                "name": "search",
                "prefix": "/search",
                "strategy": "round_robin",
                "targets": [{"name": "s1", "url": "http://127.0.0.1:9003"}],
            },
        ],
    }
    base.update(over)
    return RouterSettings.model_validate(base)


def router(**over: Any) -> tuple[Router, Clock]:
    clock = Clock()
    wall = lambda: datetime(2026, 12, 8, tzinfo=UTC)  # noqa: E731
    return Router(settings(**over), clock=clock, wall=wall, rng=random.Random(0)), clock


def test_longest_prefix_wins_and_respects_segment_boundaries() -> None:
    r, _ = router()
    assert r.pool_for("/search").name == "search"
    assert r.pool_for("/search/q?x=1").name == "search"
    assert r.pool_for("/search?q=1").name == "search"
    assert r.pool_for("/searchable").name == "api"  # /search does not serve /searchable
    assert r.pool_for("/").name == "api"
    d = r.route(Query(path="/search/x"))
    assert d.pool == "search" and d.target.name == "s1" and d.strategy == "round_robin"


def test_unknown_pool_and_no_pool_for_path() -> None:
    r, _ = router(pools=[{"name": "only", "prefix": "/api", "targets": [{"name": "x", "url": "http://h:1"}]}])
    with pytest.raises(UnknownPool, match="no pool serves path '/other'"):
        r.route(Query(path="/other"))
    with pytest.raises(UnknownPool, match="pool: unknown pool 'nope' \\(pools: only\\)"):
        r.route(Query(path="/api"), pool="nope")


def test_full_targets_are_skipped_and_none_left_is_a_clear_error() -> None:
    r, _ = router()
    d1, d2 = r.route(Query(), pool="api", exclude={"b"}), r.route(Query(), pool="api", exclude={"b"})
    assert d1.target.name == d2.target.name == "a" and d1.target.pending == 2  # capacity 2: now full
    picks = {r.route(Query(), pool="api").target.name for _ in range(10)}
    assert picks == {"b"}
    with pytest.raises(NoHealthyTarget, match=r"pool 'api': no target can take .*2 targets: 1 full.*1 already tried"):
        r.route(Query(), pool="api", exclude={"b"})


def test_record_updates_pending_ewma_counts_and_buffers_one_outcome() -> None:
    r, clock = router()
    d = r.route(Query(method="post", path="/v1/users/12345/x", kind="chat", size=10), pool="api", exclude={"b"})
    assert d.target.pending == 1 and d.features["route"] == "/v1/users/:id" and d.features["pending"] == 0
    clock.t += 0.05
    out = r.record(d, status=200, latency_ms=50.0)
    assert d.target.pending == 0 and d.target.requests == 1 and d.target.failures == 0
    assert d.target.ewma.get(clock.t) == pytest.approx(50.0)  # above the 30 ms default: a peak
    assert out.ok and out.status == 200 and out.method == "POST" and out.kind == "chat" and out.pool == "api"
    assert json.loads(out.features)["kind"] == "chat"
    with pytest.raises(ValueError, match="already recorded"):
        r.record(d, status=200, latency_ms=1.0)
    assert [o.outcome_id for o in r.drain()] == [out.outcome_id] and r.drain() == []


def test_a_failure_never_makes_a_target_look_faster() -> None:
    r, clock = router()
    d = r.route(Query(), pool="api", exclude={"b"})
    r.record(d, status=200, latency_ms=100.0)
    clock.t += 1.0
    before = r.pools["api"].targets["a"].ewma.get(clock.t)
    d = r.route(Query(), pool="api", exclude={"b"})
    out = r.record(d, status=503, latency_ms=1.0)  # a fast error
    assert not out.ok and d.target.failures == 1
    assert d.target.ewma.get(clock.t) == pytest.approx(before)
    d = r.route(Query(), pool="api", exclude={"b"})
    out = r.record(d, status=0, latency_ms=2.0, error="connection refused")
    assert not out.ok and out.status == 0 and out.error == "connection refused"
    d = r.route(Query(), pool="api", exclude={"b"})
    assert not r.record(d, status=200, latency_ms=5.0, error="closed mid-body").ok  # an answer cut short fails


def test_release_closes_without_an_outcome() -> None:
    r, _ = router()
    d = r.route(Query(), pool="search")
    r.release(d)
    r.release(d)  # idempotent
    assert d.target.pending == 0 and r.buffered == 0
    with pytest.raises(ValueError):
        r.record(d, status=200, latency_ms=1.0)


def test_route_batch_spreads_and_is_all_or_nothing() -> None:
    r, _ = router(strategy="p2c")
    ds = r.route_batch([Query()] * 3, pool="api")
    assert sorted(d.target.name for d in ds).count("a") <= 2  # a's capacity is 2
    for d in ds:
        r.release(d)
    with pytest.raises(NoHealthyTarget):
        r.route_batch([Query()] * 200, pool="api")  # b's capacity 100 + a's 2 < 200
    assert all(t.pending == 0 for t in r.pools["api"].targets.values())


def test_reload_keeps_live_state_of_surviving_targets_only() -> None:
    r, _ = router()
    d = r.route(Query(), pool="api", exclude={"b"})
    r.record(d, status=200, latency_ms=80.0)
    inflight = r.route(Query(), pool="api", exclude={"b"})
    a_before = r.pools["api"].targets["a"]
    new = settings(
        pools=[
            {
                "name": "api",
                "prefix": "/",
                "targets": [
                    {"name": "a", "url": "http://127.0.0.1:9001", "capacity": 5, "weight": 2},
                    {"name": "b", "url": "http://127.0.0.1:9999"},  # moved: a new target
                ],
            }
        ]
    )
    r.reload(new)
    a = r.pools["api"].targets["a"]
    assert a is a_before and a.target.capacity == 5 and a.pending == 1 and a.requests == 1
    assert r.pools["api"].targets["b"].requests == 0 and "search" not in r.pools
    r.record(inflight, status=200, latency_ms=10.0)  # a request in flight during the reload finishes
    assert a.pending == 0 and a.requests == 2


def test_status_is_json_and_redacts_credentials() -> None:
    r, _ = router()
    st = r.status()
    text = json.dumps(st)
    assert "s3cret" not in text and "user:***@127.0.0.1:9002" in text
    api = st["pools"][0]
    assert api["name"] == "api" and api["strategy"] == "p2c_ewma" and api["healthy"] == 2 and not api["panic"]
    assert {t["name"] for t in api["targets"]} == {"a", "b"} and st["model"] is None and st["dropped"] == 0


def test_buffer_is_bounded_and_counts_what_it_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.routing.router as mod

    monkeypatch.setattr(mod, "MAX_BUFFERED", 3)
    r, _ = router()
    for _ in range(5):
        r.record(r.route(Query(), pool="search"), status=200, latency_ms=1.0)
    assert r.buffered == 3 and r.dropped == 2 and MAX_BUFFERED > 3


def test_set_model_reaches_learned_pools_and_status() -> None:
    r, _ = router(strategy="learned")
    sentinel = object()
    r.set_model(sentinel, "v7")
    assert r.pools["api"].strategy.model is sentinel
    assert r.status()["model"] == {"name": "router", "version": "v7"}
    r.reload(settings(strategy="learned"))  # a reload keeps the model
    assert r.pools["api"].strategy.model is sentinel
    r.set_model(None)
    assert r.status()["model"] is None


def test_malformed_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="pools.0.targets.0.url"):
        RouterSettings.model_validate({"pools": [{"name": "p", "targets": [{"name": "x", "url": "nope"}]}]})
    with pytest.raises(ValueError, match="name 'x' appears twice"):
        RouterSettings.model_validate(
            {"pools": [{"name": "p", "targets": [{"name": "x", "url": "http://h"}, {"name": "x", "url": "http://i"}]}]}
        )
    with pytest.raises(ValueError, match="targets"):
        RouterSettings.model_validate({"pools": [{"name": "p", "targets": []}]})
    with pytest.raises(ValueError, match="strategy"):
        RouterSettings.model_validate({"strategy": "fastest"})

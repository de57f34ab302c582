"""The learned strategy on synthetic outcomes: it learns query-dependent cost, explores a bounded
share, leaves ties and the no-model case to its fallback, and extrapolates load past what it saw."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from tasks.config.routing import LearnedSettings, RouterTarget
from tasks.registry import loader_for
from tasks.routing.features import encode_query, query_features, route_template
from tasks.routing.learned import MODEL_KIND, LearnedStrategy, RouteModel, target_key
from tasks.routing.model import PeakEwma, Query, TargetState

NOW = 1000.0


class LeastLoad:
    """A real, deterministic fallback: Finagle's peak-EWMA load ``ewma × (pending + 1)``, lowest wins
    (the P2C of the router without its random pair, so a test can say which target it picks)."""

    name = "least_load"

    def __init__(self) -> None:
        self.calls = 0

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        self.calls += 1
        return min(candidates, key=lambda t: (t.cost(now), t.name))


def _target(name: str, *, ewma_ms: float = 20.0, pending: int = 0, cost: float = 0.0) -> TargetState:
    return TargetState(
        pool="api",
        target=RouterTarget(name=name, url=f"http://127.0.0.1/{name}", cost=cost),
        ewma=PeakEwma(10.0, ewma_ms, NOW),
        pending=pending,
    )


def _outcomes(latency: dict[tuple[str, str], float], n: int, seed: int = 1, pending_max: int = 3):
    """Synthetic outcomes: kind × target → mean latency (ms, ±10 % noise), spread evenly."""
    rng = np.random.default_rng(seed)
    records, keys, lat = [], [], []
    cells = list(latency)
    for i in range(n):
        kind, target = cells[i % len(cells)]
        rec = query_features(Query("POST", f"/v1/infer/{i}", kind=kind, size=200, text="a prompt of some words"))
        rec["pending"] = int(rng.integers(0, pending_max + 1))
        rec["ewma_ms"] = 20.0
        records.append(rec)
        keys.append(target_key("api", target))
        lat.append(latency[(kind, target)] * rng.uniform(0.9, 1.1))
    return records, keys, np.array(lat), np.ones(n, dtype=bool)


CROSSED = {("A", "t1"): 10.0, ("A", "t2"): 50.0, ("B", "t1"): 50.0, ("B", "t2"): 10.0}


@pytest.fixture(scope="module")
def crossed_model() -> RouteModel:
    return RouteModel.fit(*_outcomes(CROSSED, 800), seed=0)


def test_routes_each_kind_to_the_target_fast_for_it(crossed_model: RouteModel) -> None:
    strategy = LearnedStrategy(LearnedSettings(exploration=0.0), LeastLoad(), random.Random(0))
    strategy.model = crossed_model
    picks = Counter()
    for i in range(200):
        kind = "A" if i % 2 else "B"
        # t1 looks busier to a load balancer: only the query's kind can justify sending A there
        t1, t2 = _target("t1", ewma_ms=30.0), _target("t2", ewma_ms=20.0)
        picks[(kind, strategy.choose(Query("POST", f"/v1/infer/{i}", kind=kind), [t1, t2], NOW).name)] += 1
    assert picks == {("A", "t1"): 100, ("B", "t2"): 100}
    lat, _ = crossed_model.predict(query_features(Query("POST", "/v1/infer/1", kind="A")), [t1, t2], NOW)
    assert lat[0] < 15 and lat[1] > 40  # it learned the numbers, not only the order


def test_exploration_share_stays_within_bounds(crossed_model: RouteModel) -> None:
    # a wide margin: t2 (5× slower for A) is within reach, so exploration is uniform over both
    strategy = LearnedStrategy(LearnedSettings(exploration=0.05, explore_margin=10.0), LeastLoad(), random.Random(42))
    strategy.model = crossed_model
    targets = [_target("t1"), _target("t2")]
    explored, picked = 0, Counter()
    for _i in range(10_000):
        choice = strategy.choose(Query("POST", "/v1/infer/1", kind="A"), targets, NOW)
        if strategy.last_explored:
            explored += 1
            picked[choice.name] += 1
        else:
            assert choice.name == "t1"
    assert 0.04 <= explored / 10_000 <= 0.06
    assert set(picked) == {"t1", "t2"} and min(picked.values()) > 0.35 * explored  # uniform among candidates


def test_exploration_never_reaches_a_target_far_worse_than_the_best(crossed_model: RouteModel) -> None:
    """The default margin (within 2× the best): t2 costs ~5× t1 for A, so it is never explored —
    exploring it would put 2.5 % of queries at its latency, above p99. A third target close to the
    best (t1 with a little more in flight) still is."""
    strategy = LearnedStrategy(LearnedSettings(exploration=0.2), LeastLoad(), random.Random(7))
    strategy.model = crossed_model
    q = Query("POST", "/v1/infer/1", kind="A")
    picks = Counter(strategy.choose(q, [_target("t1"), _target("t2")], NOW).name for _ in range(2000))
    assert picks == {"t1": 2000}
    near = TargetState(
        pool="api", target=RouterTarget(name="t1", url="http://127.0.0.1/t1b"), ewma=PeakEwma(10.0, 20.0, NOW)
    )
    t1, t2 = _target("t1"), _target("t2")
    explored = Counter()
    for _ in range(2000):
        choice = strategy.choose(q, [t1, t2, near], NOW)
        if strategy.last_explored:
            explored["t2" if choice is t2 else "near" if choice is near else "t1"] += 1
    assert 0.15 * 2000 <= sum(explored.values()) <= 0.25 * 2000
    assert set(explored) == {"t1", "near"}  # the two within reach, never t2


def test_a_failure_burst_is_seen_before_the_next_retrain(crossed_model: RouteModel) -> None:
    """Live failures (the Router's counters) move a target's failure probability within a few
    attempts, and it returns to the model's once the burst is ``live_decay_s`` old."""
    strategy = LearnedStrategy(LearnedSettings(exploration=0.0, live_decay_s=10.0), LeastLoad(), random.Random(0))
    strategy.model = crossed_model
    t1, t2 = _target("t1"), _target("t2")
    q = Query("POST", "/v1/infer/1", kind="A")
    assert strategy.choose(q, [t1, t2], NOW).name == "t1"
    t1.requests, t1.failures = 10, 5  # 5 of its last 10 attempts failed (500s)
    assert strategy.choose(q, [t1, t2], NOW + 1).name == "t2"
    p = strategy.live_failure(t1, 0.0, NOW + 1)
    assert p == pytest.approx(5 / (10 + 5), rel=0.05)  # 5 pseudo-attempts at the model's 0
    # 60 s later (6 time constants) with no new attempt there: back to the model's own view
    assert strategy.live_failure(t1, 0.0, NOW + 61) < 0.02
    assert strategy.choose(q, [t1, t2], NOW + 61).name == "t1"
    # a target rebuilt by a reload starts its counters at 0: no negative counts
    t1.requests, t1.failures = 0, 0
    assert 0.1 <= strategy.live_failure(t1, 0.1, NOW + 62) < 0.11  # the burst's faded remainder only


def test_tie_goes_to_the_fallback() -> None:
    flat = {(k, t): 20.0 for k in ("A", "B") for t in ("t1", "t2")}
    records, keys, lat, ok = _outcomes(flat, 400, pending_max=0)
    model = RouteModel.fit(records, keys, np.full(len(lat), 20.0), ok, seed=0)
    fallback = LeastLoad()
    strategy = LearnedStrategy(LearnedSettings(exploration=0.0, tie_tolerance=0.05), fallback, random.Random(0))
    strategy.model = model
    q = Query("POST", "/v1/infer/1", kind="A")
    assert strategy.choose(q, [_target("t1", ewma_ms=90.0), _target("t2", ewma_ms=15.0)], NOW).name == "t2"
    assert strategy.choose(q, [_target("t1", ewma_ms=15.0), _target("t2", ewma_ms=90.0)], NOW).name == "t1"
    assert fallback.calls == 2
    costs = list(strategy.last_costs.values())
    assert costs[0] == pytest.approx(costs[1], rel=0.01)


def test_no_model_is_the_fallback_and_says_so() -> None:
    fallback = LeastLoad()
    strategy = LearnedStrategy(LearnedSettings(), fallback, random.Random(0))
    assert strategy.choose(Query(), [_target("t1", pending=3), _target("t2")], NOW).name == "t2"
    assert fallback.calls == 1 and not strategy.last_explored
    assert "fallback" in strategy.status()["mode"]


def test_failure_penalty_and_price_enter_the_cost() -> None:
    records, keys, lat, ok = _outcomes({("A", "t1"): 10.0, ("A", "t2"): 12.0}, 600)
    ok = np.array([not (k.endswith("t1") and (i // 2) % 2) for i, k in enumerate(keys)])  # t1 fails half
    model = RouteModel.fit(records, keys, lat, ok, seed=0)
    q = Query("POST", "/v1/infer/1", kind="A")
    targets = [_target("t1"), _target("t2")]
    _, p_fail = model.predict(query_features(q), targets, NOW)
    assert p_fail[0] > 0.3 > 0.05 > p_fail[1]
    penalised = LearnedStrategy(
        LearnedSettings(exploration=0.0, failure_penalty_ms=1000.0), LeastLoad(), random.Random(0)
    )
    penalised.model = model
    assert penalised.choose(q, targets, NOW).name == "t2"
    # price: a cheap-but-slower target wins once a unit of price is worth enough latency
    fast = RouteModel.fit(*_outcomes({("A", "t1"): 10.0, ("A", "t2"): 30.0}, 600), seed=0)
    priced = [_target("t1", cost=1.0), _target("t2", cost=0.0)]
    cheap = LearnedStrategy(LearnedSettings(exploration=0.0, price_weight=100.0), LeastLoad(), random.Random(0))
    cheap.model = fast
    assert cheap.choose(q, priced, NOW).name == "t2"
    cheap.settings = LearnedSettings(exploration=0.0, price_weight=1.0)
    assert cheap.choose(q, priced, NOW).name == "t1"


def test_load_past_the_trained_range_is_extrapolated_as_processor_sharing(crossed_model: RouteModel) -> None:
    feats = query_features(Query("POST", "/v1/infer/1", kind="A"))
    assert crossed_model.max_pending[target_key("api", "t1")] == 3
    idle, _ = crossed_model.predict(feats, [_target("t1", pending=3)], NOW)
    busy, _ = crossed_model.predict(feats, [_target("t1", pending=11)], NOW)
    # the trees are flat past 3 in flight; the correction scales by (11 + 1) / (3 + 1) = 3
    assert busy[0] == pytest.approx(idle[0] * 3.0, rel=1e-6)
    strategy = LearnedStrategy(LearnedSettings(exploration=0.0), LeastLoad(), random.Random(0))
    strategy.model = crossed_model
    # 10 ms × 3 = 30 ms still beats 50 ms; at 39 in flight (×10 = 100 ms) the slow-for-A target wins
    assert strategy.choose(Query(kind="A"), [_target("t1", pending=11), _target("t2")], NOW).name == "t1"
    assert strategy.choose(Query(kind="A"), [_target("t1", pending=39), _target("t2")], NOW).name == "t2"


def test_unknown_target_is_scored_without_identity(crossed_model: RouteModel) -> None:
    lat, p = crossed_model.predict(query_features(Query(kind="A")), [_target("new")], NOW)
    assert lat.shape == (1,) and np.isfinite(lat).all() and 0.0 <= p[0] <= 1.0


def test_save_load_round_trip_and_registry_kind(tmp_path, crossed_model: RouteModel) -> None:
    crossed_model.save(tmp_path / "m")
    loaded = loader_for(MODEL_KIND)(tmp_path / "m")
    assert isinstance(loaded, RouteModel) and loaded.targets == crossed_model.targets
    feats = query_features(Query("POST", "/v1/infer/1", kind="B"))
    targets = [_target("t1", pending=2), _target("t2")]
    for a, b in zip(crossed_model.predict(feats, targets, NOW), loaded.predict(feats, targets, NOW), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_query_features_are_bounded_and_deterministic() -> None:
    assert route_template("/users/42/orders/9f1c2d3e-1111-2222-3333-444455556666/items?x=1") == "/users/:id/orders"
    assert route_template("/api/user12345/x") == "/api/:id/x"
    long_text = "word " * 100_000
    f = query_features(Query("POST", "/a", kind="k" * 500, size=1 << 30, text=long_text))
    assert len(f["kind"]) == 100 and f["text_tokens_log2"] == pytest.approx(np.log2(129), abs=1e-3)
    assert f == query_features(Query("POST", "/a", kind="k" * 500, size=1 << 30, text=long_text))
    row = encode_query(f)
    assert row.dtype == np.float32 and row[:64].sum() == 3.0 and np.isfinite(row).all()
    # a record from an older writer (missing keys, a junk value) still encodes
    assert np.isfinite(encode_query({"route": "/a", "size_log2": "x"})).all()


def test_forest_predicts_what_xgboost_predicts() -> None:
    records, keys, lat, ok = _outcomes(CROSSED, 600)
    ok = np.array([i % 7 != 0 for i in range(len(keys))])  # both boosters present
    model = RouteModel.fit(records, keys, lat, ok, seed=0)
    x = model.matrix(records[:40], keys[:40])
    x[:, -2] = np.arange(40) % 6  # loads inside and past the trained range
    assert model._latency_forest is not None and model._failure_forest is not None
    np.testing.assert_allclose(model._latency_forest(x), model.latency.inplace_predict(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model._failure_forest(x), model.failure.inplace_predict(x), rtol=1e-5, atol=1e-6)


def test_without_a_model_a_failing_target_loses_its_pairs() -> None:
    """No model yet: P2C-EWMA exactly while nothing fails; a target with recent failures loses
    every pair it is drawn into (its cost carries the failure penalty), until they fade."""
    fallback = LeastLoad()
    strategy = LearnedStrategy(LearnedSettings(live_decay_s=10.0), fallback, random.Random(3))
    flaky, a, b = _target("flaky", ewma_ms=5.0), _target("a", ewma_ms=20.0), _target("b", ewma_ms=20.0)
    # nothing failed: the fallback decides (it picks the fastest, the one that will fail)
    assert strategy.choose(Query(), [flaky, a, b], NOW).name == "flaky" and fallback.calls == 1
    flaky.requests, flaky.failures = 20, 6  # 30 % HTTP 500 lately
    picks = Counter(strategy.choose(Query(), [flaky, a, b], NOW + 1).name for _ in range(300))
    assert picks["flaky"] == 0 and picks["a"] > 100 and picks["b"] > 100  # still two random choices
    assert fallback.calls == 1 and not strategy.last_explored
    # two minutes later (its latency freshly measured) the failures are forgotten: it wins again
    flaky.ewma, a.ewma = PeakEwma(10.0, 5.0, NOW + 121), PeakEwma(10.0, 20.0, NOW + 121)
    assert strategy.choose(Query(), [flaky, a], NOW + 121).name == "flaky"

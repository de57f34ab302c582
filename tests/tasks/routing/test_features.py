"""The query feature record: what the router knows of a request, computed once per route call."""

from __future__ import annotations

import random

from tasks.config.routing import RouterSettings
from tasks.routing import features as F
from tasks.routing.model import Query
from tasks.routing.router import Router


def test_route_template_folds_ids_and_keeps_three_segments() -> None:
    assert F.route_template("/v1/users/12345/orders?x=1") == "/v1/users/:id"
    assert F.route_template("/items/3f2b9c1e-aaaa-4bbb-8ccc-0123456789ab") == "/items/:id"
    assert F.route_template("/") == "/"


def test_the_record_is_computed_once_per_query_and_never_mutated_by_the_router(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = []
    real = F._compute
    monkeypatch.setattr(F, "_compute", lambda q: calls.append(q) or real(q))
    settings = RouterSettings.model_validate(
        {"strategy": "learned", "pools": [{"name": "p", "targets": [{"name": "a", "url": "http://127.0.0.1:1"}]}]}
    )
    r = Router(settings, rng=random.Random(0))
    q = Query(path="/search", kind="chat", text="hello world")
    d = r.route(q)
    assert len(calls) == 1  # the strategy and the router share one computation
    assert "pending" in d.features and "pending" not in F.query_features(q)  # the router adds to a copy
    other = Query(path="/search", kind="chat", text="hello world")  # equal but another request
    F.query_features(other)
    assert len(calls) == 2

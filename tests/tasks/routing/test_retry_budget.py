"""Envoy's retry budget: retries in flight ≤ max(min_retries, budget_percent % × active requests)."""

from __future__ import annotations

import pytest

from tasks.config.routing import RetrySettings
from tasks.routing.retry_budget import RetryBudget


def budget_with(active: int, **kw: object) -> RetryBudget:
    b = RetryBudget(RetrySettings(**kw))  # defaults: 20 %, at least 3
    for _ in range(active):
        b.request_started()
    return b


def retries_allowed(b: RetryBudget, tries: int = 1000) -> int:
    return sum(b.try_retry() for _ in range(tries))


@pytest.mark.parametrize(("active", "allowed"), [(0, 3), (5, 3), (14, 3), (20, 4), (100, 20), (101, 20)])
def test_retries_in_flight_are_capped_by_the_budget(active, allowed):
    b = budget_with(active)
    assert b.allowance() == allowed
    assert retries_allowed(b) == allowed
    snap = b.snapshot()
    assert snap["retries_in_flight"] == allowed and snap["rejected"] == 1000 - allowed
    assert snap["active"] == active and snap["allowance"] == allowed


def test_a_finished_retry_frees_room_and_finished_requests_shrink_the_budget():
    b = budget_with(100)
    assert retries_allowed(b, 20) == 20 and not b.try_retry()
    b.retry_finished()
    assert b.try_retry() and not b.try_retry()
    for _ in range(90):  # 10 active: the floor of 3 applies, 20 still in flight, none may start
        b.request_finished()
    assert b.allowance() == 3 and not b.try_retry()
    for _ in range(17):
        b.retry_finished()
    assert b.retries_in_flight == 3 and not b.try_retry()
    b.retry_finished()
    assert b.try_retry()
    assert b.snapshot()["retries"] == 22


def test_settings_and_bounds():
    assert retries_allowed(budget_with(100, budget_percent=0.0, min_retries=0)) == 0
    assert retries_allowed(budget_with(0, min_retries=0)) == 0  # no traffic, no floor: no retries
    assert retries_allowed(budget_with(10, budget_percent=50.0, min_retries=1)) == 5
    b = budget_with(0)
    b.request_finished()
    b.retry_finished()  # more finishes than starts never go negative
    assert b.active == 0 and b.retries_in_flight == 0

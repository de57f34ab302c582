"""The router's health as lake samples, so the alert rules (and dashboards) can watch it.

Why samples and not a bespoke health endpoint only: everything else cortex-perf watches is a
series in the lake evaluated by Prometheus-compatible rules; making the router's targets, breakers
and ejections series too means one rule file (``data/examples/alerting/router-rules.yml``) alerts
on a pool that lost most of its targets, with the silences, grouping and escalation every other
alert gets, and the history is there for reports.

``health_samples`` turns ``Router.status()`` (a plain dict; see ``tasks.routing.router``) into:

==================================================  ======================================================
metric{labels}                                      value
==================================================  ======================================================
``router_target_healthy{router,pool,target}``       1 when the router may use it (not ejected, breaker
                                                    permits), else 0
``router_target_pending{router,pool,target}``       requests in flight
``router_target_ewma_seconds{router,pool,target}``  peak-EWMA latency estimate (s)
``router_breaker_state{router,pool,target}``        0 closed, 1 half-open, 2 open (no series: breakers off)
``router_target_ejected{router,pool,target}``       1 while outlier-ejected, else 0
``router_requests_total{router,pool,target}``       attempts sent since the router started (counter)
``router_failures_total{router,pool,target}``       failed attempts since the router started (counter)
``router_pool_healthy_ratio{router,pool}``          healthy targets / targets
``router_pool_panic{router,pool}``                  1 while the pool routes in panic mode, else 0
``router_outcomes_buffered{router}``                outcomes waiting to be written to the lake
``router_outcomes_dropped_total{router}``           outcomes dropped because the buffer was full
``router_retries_in_flight{router}``                retries in flight (the retry budget's count)
==================================================  ======================================================

The counters restart at 0 with the process, as Prometheus counters do (``rate`` handles resets).
A malformed status is refused whole with a one-line error naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tasks.lake.schema import Sample

if TYPE_CHECKING:  # annotations only: the samples alone need no DuckDB (tasks.lake imports it lazily)
    from tasks.lake import Lake, WriteResult

__all__ = ["BREAKER_STATE_VALUES", "HEALTH_METRICS", "health_samples", "write_health"]

#: ``router_breaker_state``'s values: the higher, the less traffic the target gets.
BREAKER_STATE_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

HEALTH_METRICS = (
    "router_target_healthy",
    "router_target_pending",
    "router_target_ewma_seconds",
    "router_breaker_state",
    "router_target_ejected",
    "router_requests_total",
    "router_failures_total",
    "router_pool_healthy_ratio",
    "router_pool_panic",
    "router_outcomes_buffered",
    "router_outcomes_dropped_total",
    "router_retries_in_flight",
)


class _Bad(ValueError):
    pass


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"router status: {where} must be a finite number, not {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> float:
    if not isinstance(value, bool):
        raise _Bad(f"router status: {where} must be true or false, not {value!r}")
    return 1.0 if value else 0.0


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(f"router status: {where} must be a non-empty string, not {value!r}")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise _Bad(f"router status: {where} must be a list, not {type(value).__name__}")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Bad(f"router status: {where} must be an object, not {type(value).__name__}")
    return value


def _breaker_state(value: Any, where: str) -> float | None:
    """The breaker's gauge value from a snapshot dict (``{"state": …}``), a bare state, or None (off)."""
    if value is None:
        return None
    state = value.get("state") if isinstance(value, Mapping) else value
    if state not in BREAKER_STATE_VALUES:
        known = ", ".join(BREAKER_STATE_VALUES)
        raise _Bad(f"router status: {where} state {state!r} is not one of {known}")
    return BREAKER_STATE_VALUES[state]


def health_samples(status: Mapping[str, Any], now: datetime, router_name: str = "default") -> list[Sample]:
    """The router's health at ``now`` as samples (see the module's table); ValueError on a bad status."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    router = _name(router_name, "router_name")
    status = _mapping(status, "status")
    if "pools" not in status:
        raise _Bad("router status: 'pools' is missing")
    out: list[Sample] = []

    def add(metric: str, value: float, **labels: str) -> None:
        out.append(Sample(metric, value, now, {"router": router, **labels}))

    for i, raw_pool in enumerate(_list(status["pools"], "pools")):
        where = f"pools[{i}]"
        pool = _mapping(raw_pool, where)
        pool_name = _name(pool.get("name"), f"{where}.name")
        targets = _list(pool.get("targets", []), f"{where}.targets")
        healthy = 0
        for j, raw_target in enumerate(targets):
            tw = f"{where}.targets[{j}]"
            t = _mapping(raw_target, tw)
            labels = {"pool": pool_name, "target": _name(t.get("name"), f"{tw}.name")}
            if "healthy" not in t:
                raise _Bad(f"router status: {tw}.healthy is missing")
            ok = _flag(t["healthy"], f"{tw}.healthy")
            healthy += int(ok)
            add("router_target_healthy", ok, **labels)
            if t.get("pending") is not None:
                add("router_target_pending", _number(t["pending"], f"{tw}.pending"), **labels)
            if t.get("ewma_ms") is not None:
                add("router_target_ewma_seconds", _number(t["ewma_ms"], f"{tw}.ewma_ms") / 1000.0, **labels)
            breaker = _breaker_state(t.get("breaker"), f"{tw}.breaker")
            if breaker is not None:
                add("router_breaker_state", breaker, **labels)
            if t.get("ejected_for_s") is not None:
                ejected_for = _number(t["ejected_for_s"], f"{tw}.ejected_for_s")
                add("router_target_ejected", 1.0 if ejected_for > 0 else 0.0, **labels)
            if t.get("requests") is not None:
                add("router_requests_total", _number(t["requests"], f"{tw}.requests"), **labels)
            if t.get("failures") is not None:
                add("router_failures_total", _number(t["failures"], f"{tw}.failures"), **labels)
        if targets:
            add("router_pool_healthy_ratio", healthy / len(targets), pool=pool_name)
        add("router_pool_panic", _flag(pool.get("panic", False), f"{where}.panic"), pool=pool_name)

    if status.get("buffered") is not None:
        add("router_outcomes_buffered", _number(status["buffered"], "buffered"))
    if status.get("dropped") is not None:
        add("router_outcomes_dropped_total", _number(status["dropped"], "dropped"))
    budget = status.get("retry_budget")
    if budget is not None and _mapping(budget, "retry_budget").get("retries_in_flight") is not None:
        add("router_retries_in_flight", _number(budget["retries_in_flight"], "retry_budget.retries_in_flight"))
    return out


def write_health(lake: Lake, status: Mapping[str, Any], now: datetime, router_name: str = "default") -> WriteResult:
    """Append the router's health at ``now`` to the lake (one batch; the recorder calls it each flush)."""
    return lake.write_samples(health_samples(status, now, router_name), strict=True)

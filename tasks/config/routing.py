"""The router section: the pools of backends the query router balances, and how it protects them.

Why a section of its own: the router is a long-running request path (``cortex-perf router serve``)
with its own limits — breaker thresholds, outlier ejection, a retry budget, timeouts, hedging —
each named after the balancer whose semantics it copies (resilience4j, Envoy, Finagle/Linkerd), so
a user who knows those knows these. Pools are data: the service reloads them without dropping a
request (``tasks.routing.router.Router.reload``).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tasks.config.section import Section, check_duration

__all__ = [
    "STRATEGIES",
    "BreakerSettings",
    "EjectionSettings",
    "LearnedSettings",
    "RetrySettings",
    "RouterPool",
    "RouterServiceSettings",
    "RouterSettings",
    "RouterTarget",
]

#: Every selection strategy the router knows (``tasks.routing.strategies`` builds them).
STRATEGIES = ("round_robin", "p2c", "p2c_ewma", "consistent_hash", "learned")
Strategy = Literal["round_robin", "p2c", "p2c_ewma", "consistent_hash", "learned"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _check_name(v: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a valid name (letters, digits, '_', '.', '-'; at most 100)")
    return v


class RouterTarget(Section):
    """One backend. Its URL may carry credentials: they are secrets, never printed or recorded."""

    name: str = Field(description="Unique within its pool; the `target` label of every outcome.")
    url: str = Field(description="Base http(s) URL; the request's path and query are appended to its path.")
    weight: float = Field(1.0, gt=0, le=1000, description="Share of traffic for round-robin and hashing.")
    capacity: int = Field(100, ge=1, le=100_000, description="Requests in flight at most; a full target is skipped.")
    tags: dict[str, str] = Field(default_factory=dict, description="Free labels (`gpu`, `region`, `model`).")
    cost: float = Field(0.0, ge=0, le=1e9, description="Price of one request (any currency unit).")

    _name = field_validator("name")(_check_name)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment (the request's own are appended)")
        return v


class RouterPool(Section):
    """Backends that answer the same kind of query; requests reach a pool by path prefix."""

    name: str = Field(description="Pool name (the `pool` label).")
    prefix: str = Field("/", description="Requests whose path starts with this go to this pool (longest wins).")
    strip_prefix: bool = Field(False, description="Remove the prefix before forwarding.")
    strategy: Strategy | None = Field(None, description="Selection strategy (default: router.strategy).")
    targets: list[RouterTarget] = Field(min_length=1, description="The backends.")

    _name = field_validator("name")(_check_name)

    @field_validator("prefix")
    @classmethod
    def _slash(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    @model_validator(mode="after")
    def _unique_targets(self) -> RouterPool:
        seen: set[str] = set()
        for t in self.targets:
            if t.name in seen:
                raise ValueError(f"targets: name {t.name!r} appears twice in pool {self.name!r}")
            seen.add(t.name)
        return self


class BreakerSettings(Section):
    """Per-target circuit breaker, resilience4j semantics (count-based sliding window).

    Defaults differ from resilience4j's where its defaults assume high traffic: a window of 20 calls
    and a minimum of 5 (resilience4j: 100 and 100) so a low-traffic pool still trips.
    """

    enabled: bool = Field(True, description="Open a target's breaker on failures (off: never).")
    failure_rate_threshold: float = Field(50.0, gt=0, le=100, description="Open at this % of failed calls.")
    slow_call_rate_threshold: float = Field(100.0, gt=0, le=100, description="Open at this % of slow calls.")
    slow_call_duration_s: float = Field(5.0, gt=0, le=3600, description="A call slower than this is slow.")
    window_size: int = Field(20, ge=1, le=10_000, description="Calls in the sliding window.")
    minimum_calls: int = Field(5, ge=1, le=10_000, description="Calls needed before the rates are judged.")
    wait_open_s: float = Field(10.0, gt=0, le=3600, description="Time open before half-open trial calls.")
    half_open_calls: int = Field(3, ge=1, le=1000, description="Trial calls permitted while half-open.")


class EjectionSettings(Section):
    """Outlier ejection, Envoy semantics: consecutive 5xx eject for base × n, capped, ≤ max % of a pool."""

    enabled: bool = Field(True, description="Eject targets that answer 5xx in a row (off: never).")
    consecutive_5xx: int = Field(5, ge=1, le=1000, description="5xx (or no answer) in a row that eject a target.")
    base_ejection_s: float = Field(30.0, gt=0, le=3600, description="First ejection time; the n-th lasts n times it.")
    max_ejection_s: float = Field(300.0, gt=0, le=86400, description="Longest ejection.")
    max_ejection_percent: float = Field(10.0, ge=0, le=100, description="At most this % of a pool ejected (≥ 1).")


class RetrySettings(Section):
    """Retries and hedging. The budget is Envoy's: retries in flight ≤ max(min, percent × active)."""

    max_attempts: int = Field(2, ge=1, le=10, description="Attempts per request, the first included.")
    budget_percent: float = Field(20.0, ge=0, le=100, description="Retries as a % of requests in flight.")
    min_retries: int = Field(3, ge=0, le=10_000, description="Retries always allowed in flight.")
    retry_on: list[int] = Field(
        default_factory=lambda: [502, 503, 504], description="Statuses retried (connection errors always are)."
    )
    hedge_after_s: float | None = Field(
        None, gt=0, le=3600, description="Send an idempotent query to a second target after this long (none: off)."
    )


class LearnedSettings(Section):
    """The learned strategy: expected cost = latency + price + failure penalty, per query and target."""

    model: str = Field("router", description="Registry name of the latency/failure model.")
    latency_weight: float = Field(1.0, ge=0, le=1e6, description="Weight of predicted latency (per ms).")
    price_weight: float = Field(0.0, ge=0, le=1e9, description="ms of latency one unit of target cost is worth.")
    failure_penalty_ms: float = Field(1000.0, ge=0, le=1e9, description="ms a failed request is worth.")
    exploration: float = Field(0.05, ge=0, le=0.2, description="Share of queries routed to explore (≤ 20 %).")
    tie_tolerance: float = Field(
        0.1, ge=0, le=1, description="Targets within this fraction of the best cost count as tied (P2C-EWMA)."
    )
    explore_margin: float = Field(
        1.0, ge=0, le=100, description="Explore only targets whose expected cost is within 1 + this × the best's."
    )
    live_decay_s: float = Field(
        10.0, gt=0, le=3600, description="Time constant of each target's live failure rate (blended with the model's)."
    )
    min_outcomes: int = Field(200, ge=10, le=10_000_000, description="Outcomes needed before training.")
    history: str = Field("1d", description="How far back the router flow trains from.")

    _history = field_validator("history")(check_duration)


class RouterServiceSettings(Section):
    """The proxy process (`cortex-perf router serve`)."""

    host: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8090, ge=1, le=65535, description="Listen port.")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="Upstream request timeout.")
    connect_timeout_s: float = Field(2.0, gt=0, le=600, description="Upstream connect timeout.")
    keepalive_s: float = Field(
        75.0,
        ge=1,
        le=86400,
        description="Idle client keep-alive connections close after this (nginx: 75 s; uvicorn's 5 s races clients).",
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0, le=1 << 34, description="Largest request body accepted.")
    outcome_batch: int = Field(1000, ge=1, le=1_000_000, description="Outcomes per lake write at most.")
    flush_s: float = Field(5.0, gt=0, le=3600, description="Write buffered outcomes at least this often.")
    reload_s: float = Field(5.0, gt=0, le=3600, description="Check the config and the model registry this often.")


class RouterSettings(Section):
    """The query router: pools, default strategy and the resilience settings shared by every target."""

    strategy: Strategy = Field(
        "learned",
        description=(
            "Default selection strategy of a pool (`learned` is P2C-EWMA plus live failure rates until a "
            "model is promoted)."
        ),
    )
    pools: list[RouterPool] = Field(
        default_factory=list,
        description=(
            "Pools of targets: {name, prefix, strip_prefix, strategy, "
            "targets: [{name, url, weight, capacity, tags, cost}]}."
        ),
    )
    ewma_decay_s: float = Field(10.0, gt=0, le=3600, description="Peak-EWMA decay time (Finagle: 10 s).")
    ewma_default_ms: float = Field(30.0, gt=0, le=1e6, description="Assumed latency of an unseen target.")
    panic_threshold_percent: float = Field(
        50.0, ge=0, le=100, description="Below this % of healthy targets, route over all of them (Envoy)."
    )
    hash_header: str = Field("x-route-key", description="Header whose value consistent hashing keys on.")
    kind_header: str = Field("x-query-kind", description="Header that declares a query's kind.")
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    ejection: EjectionSettings = Field(default_factory=EjectionSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    learned: LearnedSettings = Field(default_factory=LearnedSettings)
    service: RouterServiceSettings = Field(default_factory=RouterServiceSettings)

    @model_validator(mode="after")
    def _unique_pools(self) -> RouterSettings:
        names: set[str] = set()
        prefixes: set[str] = set()
        for p in self.pools:
            if p.name in names:
                raise ValueError(f"pools: name {p.name!r} appears twice")
            if p.prefix in prefixes:
                raise ValueError(f"pools: prefix {p.prefix!r} is used by two pools")
            names.add(p.name)
            prefixes.add(p.prefix)
        return self

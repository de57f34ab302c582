"""The router's vocabulary: a query, a target's live state, a routing decision and its outcome.

Why one module: strategies, resilience (breakers, ejection, retry budget), the learned model, the
proxy and the flow all speak about the same few things; defining them once keeps each of those
testable alone against hand-made states (a strategy is a pure choice over ``TargetState``s).

Times are ``time.monotonic()`` seconds on the request path (immune to clock steps) and UTC
datetimes in what is recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from tasks.config.routing import RouterTarget

if TYPE_CHECKING:  # the resilience parts import nothing from here but the types below
    from tasks.routing.breaker import CircuitBreaker

__all__ = [
    "IDEMPOTENT_METHODS",
    "Decision",
    "NoHealthyTarget",
    "Outcome",
    "PeakEwma",
    "Query",
    "RoutingError",
    "Strategy",
    "TargetState",
    "UnknownPool",
]

#: Methods safe to send twice (RFC 9110 §9.2.2): only these are hedged or retried after a body was sent.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class RoutingError(Exception):
    """A request the router cannot place; the proxy answers 503 with this message."""


class UnknownPool(RoutingError):
    """No pool matches the request (or a named pool does not exist)."""


class NoHealthyTarget(RoutingError):
    """Every target of the pool is full, open-breaker or ejected (even in panic mode)."""


@dataclass(frozen=True)
class Query:
    """What the router knows of a request before sending it: enough to classify it, not the body."""

    method: str = "GET"
    path: str = "/"
    kind: str | None = None  # declared by the client (router.kind_header)
    size: int = 0  # request body bytes
    text: str = ""  # the head of a text body (at most 4 KiB), for text features
    key: str | None = None  # affinity key for consistent hashing (router.hash_header)
    idempotent: bool | None = None  # None: decided by the method

    @property
    def is_idempotent(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method.upper() in IDEMPOTENT_METHODS


class PeakEwma:
    """Finagle's / Tower's peak-sensitive EWMA of round-trip time.

    Between samples the estimate decays toward zero with time constant ``decay_s`` (Finagle reads
    it as an observation of 0), so a target that was slow long ago gets tried again. A sample above
    the decayed estimate replaces it at once (peaks are believed immediately); one below pulls it
    toward itself with weight ``1 − exp(−Δt/τ)``, Δt the time since the previous sample. An unseen
    target starts at ``default_ms`` (Linkerd: 30 ms).

    Why reads do not change the state here (Finagle's ``get`` re-stamps on every read): otherwise a
    sample's weight would depend on how often the balancer happened to look at the target.
    """

    __slots__ = ("decay_s", "stamp", "value_ms")

    def __init__(self, decay_s: float, default_ms: float, now: float) -> None:
        self.decay_s = decay_s
        self.value_ms = default_ms
        self.stamp = now

    def get(self, now: float) -> float:
        """The estimate at ``now`` (ms)."""
        dt = max(now - self.stamp, 0.0)
        return self.value_ms * math.exp(-dt / self.decay_s)

    def observe(self, rtt_ms: float, now: float) -> None:
        current = self.get(now)
        if rtt_ms > current:
            self.value_ms = rtt_ms
        else:
            w = math.exp(-max(now - self.stamp, 0.0) / self.decay_s)
            self.value_ms = current * w + rtt_ms * (1.0 - w)
        self.stamp = now


@dataclass
class TargetState:
    """One target's live state: what a strategy sees. Mutated only by ``Router``."""

    pool: str
    target: RouterTarget
    ewma: PeakEwma
    breaker: CircuitBreaker | None = None  # None: breakers off
    pending: int = 0  # requests in flight
    requests: int = 0  # attempts sent since start (for status)
    failures: int = 0  # failed attempts since start
    ejected_until: float = 0.0  # monotonic time; 0 = not ejected (set from the pool's OutlierDetector)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def full(self) -> bool:
        return self.pending >= self.target.capacity

    def ejected(self, now: float) -> bool:
        return self.ejected_until > now

    def healthy(self, now: float) -> bool:
        """Not ejected and the breaker would let a call through (capacity is load, not health)."""
        return not self.ejected(now) and (self.breaker is None or self.breaker.available())

    def cost(self, now: float) -> float:
        """Peak-EWMA load: ``ewma_rtt × (pending + 1)`` (Finagle/Linkerd)."""
        return self.ewma.get(now) * (self.pending + 1)


class Strategy(Protocol):
    """Picks one target among candidates for a query.

    ``candidates`` is never empty and holds only targets the router may use now (healthy, or every
    non-full target in panic mode). A strategy must not mutate them; it may keep its own state (a
    round-robin cursor, a hash ring, a model).
    """

    name: str

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState: ...


@dataclass
class Decision:
    """A routing decision: the chosen target, why, and what to record when the attempt ends."""

    pool: str
    target: TargetState
    strategy: str
    started: float  # monotonic time the attempt was handed out
    started_at: datetime  # the same instant in UTC (recorded)
    query: Query
    attempt: int = 1  # 1 = first try; >1 = retry
    hedged: bool = False  # a hedge (second concurrent try)
    panic: bool = False  # chosen in panic mode (too few healthy targets)
    explored: bool = False  # the learned strategy explored instead of exploiting
    features: dict[str, Any] = field(default_factory=dict)
    permitted: bool = False  # the target's breaker granted this attempt a call (record/release report to it)
    done: bool = False  # recorded or released (a decision is closed once)


@dataclass(frozen=True)
class Outcome:
    """One upstream attempt as the lake's ``router_outcomes`` table stores it."""

    outcome_id: str
    ts: datetime
    pool: str
    target: str
    strategy: str
    method: str
    path: str
    kind: str | None
    size: int
    latency_ms: float
    status: int  # 0: no HTTP answer (connection error, timeout): see error
    ok: bool
    error: str | None
    attempt: int
    hedged: bool
    features: str  # JSON object

"""The router: picks a target for each query, learns from each outcome, protects sick targets.

``Router`` is the in-process API (``route`` → send → ``record``) that the proxy, the benchmark and
users' own code share. It holds live state only (pending counts, EWMAs, breakers, ejections); what
it learns for longer is recorded as outcomes (``drain``) that the recorder writes to the lake and
the ``router`` flow trains from.

Order of concerns in ``route``, each from the balancer that defined it:
1. **health** — a target is usable when not ejected (Envoy outlier detection) and its breaker
   permits a call (resilience4j); **panic mode** (Envoy): when fewer than
   ``panic_threshold_percent`` of a pool's targets are healthy, route over all of them, since
   concentrating the whole load on a few survivors would take them down too;
2. **capacity** — a target with ``capacity`` requests in flight is skipped (never queued on);
3. **strategy** — the pool's strategy picks among what is left.

Not thread-safe on purpose: the proxy runs on one event loop, where nothing interleaves between
``route``'s checks and its ``pending += 1``; a thread-pooled user wraps calls in a lock.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.config.routing import RouterPool, RouterSettings
from tasks.redact import redact_url
from tasks.routing.breaker import CircuitBreaker
from tasks.routing.ejection import OutlierDetector
from tasks.routing.features import query_features
from tasks.routing.model import (
    Decision,
    NoHealthyTarget,
    Outcome,
    PeakEwma,
    Query,
    Strategy,
    TargetState,
    UnknownPool,
)
from tasks.routing.retry_budget import RetryBudget
from tasks.routing.strategies import build_strategy

__all__ = ["MAX_BUFFERED", "PoolState", "Router"]

#: Outcomes kept for the recorder at most; beyond it the oldest are dropped and counted (``dropped``)
#: rather than growing without bound when the lake is unreachable.
MAX_BUFFERED = 200_000


@dataclass
class PoolState:
    """A pool's live state: its config, strategy, targets and outlier detector."""

    settings: RouterPool
    strategy: Strategy
    targets: dict[str, TargetState]
    detector: OutlierDetector

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def prefix(self) -> str:
        return self.settings.prefix


def _prefix_matches(prefix: str, path: str) -> bool:
    """``/api`` serves ``/api`` and ``/api/x`` but not ``/apix``."""
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or len(path) == len(prefix) or path[len(prefix)] in "/?"


class Router:
    """Routes queries over the configured pools. See the module docstring for the order of checks."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        self.retry_budget = RetryBudget(settings.retry)
        self.model: Any = None
        self.model_version: str | None = None
        self.pools: dict[str, PoolState] = {}
        self._by_prefix: list[PoolState] = []
        self._buffer: deque[Outcome] = deque()
        self.dropped = 0
        self._build(settings)

    # ---- configuration --------------------------------------------------------------------------
    def _build(self, settings: RouterSettings) -> None:
        now = self.clock()
        old = self.pools
        pools: dict[str, PoolState] = {}
        for p in settings.pools:
            strategy = build_strategy(p.strategy or settings.strategy, settings, self.rng)
            if hasattr(strategy, "model"):
                strategy.model = self.model
            prev = old.get(p.name)
            detector = prev.detector if prev is not None else OutlierDetector(settings.ejection, self.clock)
            detector.settings = settings.ejection
            targets: dict[str, TargetState] = {}
            for t in p.targets:
                kept = prev.targets.get(t.name) if prev is not None else None
                if kept is not None and kept.target.url == t.url:
                    kept.target = t  # weight, capacity, tags and cost changes apply at once
                    kept.ewma.decay_s = settings.ewma_decay_s
                    if kept.breaker is not None and settings.breaker.enabled:
                        kept.breaker.settings = settings.breaker
                    else:
                        kept.breaker = self._breaker(settings)
                    targets[t.name] = kept
                else:
                    if prev is not None:
                        detector.forget(t.name)
                    targets[t.name] = TargetState(
                        pool=p.name,
                        target=t,
                        ewma=PeakEwma(settings.ewma_decay_s, settings.ewma_default_ms, now),
                        breaker=self._breaker(settings),
                    )
            if prev is not None:
                for gone in prev.targets.keys() - targets.keys():
                    detector.forget(gone)
            pools[p.name] = PoolState(p, strategy, targets, detector)
        self.settings = settings
        self.pools = pools
        self._by_prefix = sorted(pools.values(), key=lambda ps: len(ps.prefix), reverse=True)
        self.retry_budget.settings = settings.retry

    def _breaker(self, settings: RouterSettings) -> CircuitBreaker | None:
        return CircuitBreaker(settings.breaker, self.clock) if settings.breaker.enabled else None

    def reload(self, settings: RouterSettings) -> None:
        """Apply new pools and settings; a target whose (pool, name, url) survives keeps its live
        state (EWMA, breaker, ejection), and requests in flight finish on the objects they hold."""
        self._build(settings)

    def set_model(self, model: Any, version: str | None = None) -> None:
        """Hand the learned strategies a (new) model; ``None`` makes them fall back to P2C-EWMA."""
        self.model = model
        self.model_version = version if model is not None else None
        for ps in self.pools.values():
            if hasattr(ps.strategy, "model"):
                ps.strategy.model = model

    # ---- routing --------------------------------------------------------------------------------
    def pool_for(self, path: str) -> PoolState:
        """The pool with the longest prefix that serves ``path``."""
        for ps in self._by_prefix:
            if _prefix_matches(ps.prefix, path):
                return ps
        raise UnknownPool(f"no pool serves path {path[:200]!r}")

    def _pool(self, query: Query, pool: str | None) -> PoolState:
        if pool is None:
            return self.pool_for(query.path)
        ps = self.pools.get(pool)
        if ps is None:
            raise UnknownPool(f"pool: unknown pool {pool[:100]!r} (pools: {', '.join(self.pools) or 'none'})")
        return ps

    def route(
        self,
        query: Query,
        *,
        pool: str | None = None,
        exclude: Collection[str] = (),
        attempt: int = 1,
        hedged: bool = False,
        features: dict[str, Any] | None = None,
    ) -> Decision:
        """Choose a target for ``query`` and count it in flight there.

        ``exclude`` names targets not to use (a retry goes elsewhere); ``features`` passes the
        query's feature record when the caller already computed it (retries, hedges).
        """
        ps = self._pool(query, pool)
        now = self.clock()
        targets = list(ps.targets.values())
        for t in targets:
            t.ejected_until = ps.detector.ejected_until(t.name)
        healthy = [t for t in targets if t.healthy(now)]
        panic = len(healthy) * 100.0 < self.settings.panic_threshold_percent * len(targets)
        candidates = [t for t in (targets if panic else healthy) if not t.full and t.name not in exclude]
        chosen: TargetState | None = None
        permitted = False
        while candidates:
            choice = ps.strategy.choose(query, candidates, now)
            if choice.breaker is None:
                chosen = choice
                break
            if choice.breaker.try_acquire():
                chosen, permitted = choice, True
                break
            if panic:  # panic routes regardless of health; the breaker is not told of this call
                chosen = choice
                break
            candidates.remove(choice)
        if chosen is None:
            raise NoHealthyTarget(self._why_none(ps, targets, now, exclude))
        feats = dict(features) if features is not None else query_features(query)
        feats["pending"] = chosen.pending
        feats["ewma_ms"] = round(chosen.ewma.get(now), 3)
        chosen.pending += 1
        return Decision(
            pool=ps.name,
            target=chosen,
            strategy=ps.strategy.name,
            started=now,
            started_at=self.wall(),
            query=query,
            attempt=attempt,
            hedged=hedged,
            panic=panic,
            explored=bool(getattr(ps.strategy, "last_explored", False)),
            features=feats,
            permitted=permitted,
        )

    @staticmethod
    def _why_none(ps: PoolState, targets: list[TargetState], now: float, exclude: Collection[str]) -> str:
        full = sum(t.full for t in targets)
        ejected = sum(t.ejected(now) for t in targets)
        opened = sum(t.breaker is not None and not t.breaker.available() for t in targets)
        excluded = sum(t.name in exclude for t in targets)
        return (
            f"pool {ps.name!r}: no target can take the request "
            f"({len(targets)} targets: {full} full, {ejected} ejected, {opened} breaker open, {excluded} already tried)"
        )

    def route_batch(self, queries: Sequence[Query], *, pool: str | None = None) -> list[Decision]:
        """One decision per query, in order; each counts in flight before the next is placed, so a
        batch spreads over targets the way concurrent requests would. All or nothing: when one
        cannot be placed, the ones already placed are released and the error is raised."""
        out: list[Decision] = []
        try:
            for q in queries:
                out.append(self.route(q, pool=pool))
        except Exception:
            for d in out:
                self.release(d)
            raise
        return out

    # ---- outcomes -------------------------------------------------------------------------------
    def record(self, decision: Decision, *, status: int, latency_ms: float, error: str | None = None) -> Outcome:
        """Close ``decision`` with what happened: status 0 = no HTTP answer (``error`` says why).

        A failure never makes a target look faster: its latency only raises the EWMA (a target
        that fails fast would otherwise attract ever more traffic — the "black hole" of
        least-latency balancers).
        """
        if decision.done:
            raise ValueError("decision: already recorded or released")
        decision.done = True
        t = decision.target
        t.pending = max(0, t.pending - 1)
        t.requests += 1
        ok = error is None and 0 < status < 500
        now = self.clock()
        latency_ms = max(0.0, float(latency_ms))
        if ok:
            t.ewma.observe(latency_ms, now)
        else:
            t.failures += 1
            t.ewma.observe(max(latency_ms, t.ewma.get(now)), now)
        if decision.permitted and t.breaker is not None:
            t.breaker.record(ok, latency_ms / 1000.0)
        ps = self.pools.get(decision.pool)
        if ps is not None and ps.targets.get(t.name) is t:
            until = ps.detector.record(t.name, 0 if error is not None else status, len(ps.targets))
            if until is not None:
                t.ejected_until = until
        q = decision.query
        outcome = Outcome(
            outcome_id=uuid.uuid4().hex,
            ts=decision.started_at,
            pool=decision.pool,
            target=t.name,
            strategy=decision.strategy,
            method=q.method.upper(),
            path=q.path[:2048],
            kind=q.kind,
            size=q.size,
            latency_ms=latency_ms,
            status=int(status),
            ok=ok,
            error=error[:500] if error is not None else None,
            attempt=decision.attempt,
            hedged=decision.hedged,
            features=json.dumps(decision.features, separators=(",", ":"), default=str),
        )
        if len(self._buffer) >= MAX_BUFFERED:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(outcome)
        return outcome

    def release(self, decision: Decision) -> None:
        """Close a decision that was never sent, or was cancelled before an answer (a hedge's loser)."""
        if decision.done:
            return
        decision.done = True
        t = decision.target
        t.pending = max(0, t.pending - 1)
        if decision.permitted and t.breaker is not None:
            t.breaker.release()

    def drain(self, limit: int | None = None) -> list[Outcome]:
        """Buffered outcomes, oldest first (at most ``limit``), removed from the buffer."""
        n = len(self._buffer) if limit is None else min(limit, len(self._buffer))
        return [self._buffer.popleft() for _ in range(n)]

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # ---- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Pools, targets, breakers, ejections and the model, as JSON-able data (URLs redacted)."""
        now = self.clock()
        pools = []
        for ps in self.pools.values():
            targets = []
            n_healthy = 0
            for t in ps.targets.values():
                t.ejected_until = ps.detector.ejected_until(t.name)
                healthy = t.healthy(now)
                n_healthy += healthy
                targets.append(
                    {
                        "name": t.name,
                        "url": redact_url(t.target.url),
                        "pending": t.pending,
                        "capacity": t.target.capacity,
                        "ewma_ms": round(t.ewma.get(now), 3),
                        "breaker": t.breaker.snapshot() if t.breaker is not None else None,
                        "ejected_for_s": round(max(0.0, t.ejected_until - now), 3),
                        "requests": t.requests,
                        "failures": t.failures,
                        "healthy": healthy,
                        "tags": dict(t.target.tags),
                        "cost": t.target.cost,
                    }
                )
            total = len(ps.targets)
            pools.append(
                {
                    "name": ps.name,
                    "prefix": ps.prefix,
                    "strategy": ps.strategy.name,
                    "healthy": n_healthy,
                    "panic": n_healthy * 100.0 < self.settings.panic_threshold_percent * total,
                    "targets": targets,
                }
            )
        model = None
        if self.model is not None:
            model = {"name": self.settings.learned.model, "version": self.model_version}
        return {
            "pools": pools,
            "model": model,
            "buffered": len(self._buffer),
            "dropped": self.dropped,
            "retry_budget": self.retry_budget.snapshot(),
        }

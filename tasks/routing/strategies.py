"""Selection strategies: which of a pool's usable targets gets the next query.

Each is a small object with a ``choose`` over ``TargetState``s (the ``Strategy`` protocol), so each
is tested alone on hand-made states. They copy the balancers users know:

- ``round_robin``: nginx's smooth weighted round-robin (weights spread, not bunched).
- ``p2c``: Envoy's least-request with power of two choices — two random targets, the one with fewer
  requests in flight per unit of weight.
- ``p2c_ewma``: Finagle's / Linkerd's P2C with peak EWMA — the lower ``ewma_rtt × (pending + 1)``.
- ``consistent_hash``: a weighted hash ring (Ketama-style virtual nodes) on the query's key (the
  ``router.hash_header`` value, else its path), walking on to the next usable target, so a key keeps
  its target (cache affinity) and losing a target moves only that target's keys.
- ``learned``: ``tasks.routing.learned`` (a model of latency and failure per query and target).

Why two random choices and not the best of all: with many balancers acting on stale load figures,
"best of all" herds every request onto the same target; two random choices keep most of the
benefit without herding (Mitzenmacher, "The Power of Two Choices").
"""

from __future__ import annotations

import bisect
import hashlib
import random

from tasks.config.routing import STRATEGIES, RouterSettings
from tasks.routing.learned import LearnedStrategy
from tasks.routing.model import Query, Strategy, TargetState

__all__ = ["ConsistentHash", "P2CLeastRequest", "P2CPeakEwma", "RoundRobin", "build_strategy"]

#: Virtual nodes per unit of weight on the hash ring (Ketama uses 100–160 per server).
VNODES_PER_WEIGHT = 100
MAX_VNODES = 10_000


class RoundRobin:
    """Smooth weighted round-robin (nginx): each pick adds every candidate's weight to its credit,
    takes the highest credit and charges it the total — weights 5:1:1 give a a b a c a a, not a a a a a b c."""

    name = "round_robin"

    def __init__(self) -> None:
        self._credit: dict[str, float] = {}

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        total = 0.0
        best: TargetState | None = None
        best_credit = float("-inf")
        for t in candidates:
            w = t.target.weight
            c = self._credit.get(t.name, 0.0) + w
            self._credit[t.name] = c
            total += w
            if c > best_credit:
                best, best_credit = t, c
        assert best is not None  # candidates is never empty
        self._credit[best.name] = best_credit - total
        return best


def _two(candidates: list[TargetState], rng: random.Random) -> tuple[TargetState, TargetState]:
    i = rng.randrange(len(candidates))
    j = rng.randrange(len(candidates) - 1)
    if j >= i:
        j += 1
    return candidates[i], candidates[j]


class _PowerOfTwoChoices:
    """Of two distinct random candidates, the one with the lower ``load`` (ties to the first drawn)."""

    name = ""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def load(self, t: TargetState, now: float) -> float:
        raise NotImplementedError

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        if len(candidates) == 1:
            return candidates[0]
        a, b = _two(candidates, self.rng)
        return a if self.load(a, now) <= self.load(b, now) else b


class P2CLeastRequest(_PowerOfTwoChoices):
    """Envoy's least-request balancer with two choices: fewer requests in flight per unit of weight."""

    name = "p2c"

    def load(self, t: TargetState, now: float) -> float:
        return (t.pending + 1) / t.target.weight


class P2CPeakEwma(_PowerOfTwoChoices):
    """Finagle/Linkerd: of two random targets, the one with the lower peak-EWMA cost."""

    name = "p2c_ewma"

    def load(self, t: TargetState, now: float) -> float:
        return t.cost(now)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class ConsistentHash:
    """A weighted ring over every target seen so far; a key goes to the first usable target clockwise.

    Why the ring holds targets that are not usable now: a target that is full or ejected for a
    moment must keep its place, or every key would move twice (away and back).
    """

    name = "consistent_hash"

    def __init__(self) -> None:
        self._weights: dict[str, float] = {}
        self._points: list[int] = []
        self._owners: list[str] = []

    def _rebuild(self) -> None:
        ring: list[tuple[int, str]] = []
        for name, weight in self._weights.items():
            n = max(1, min(MAX_VNODES, round(VNODES_PER_WEIGHT * weight)))
            ring.extend((_hash64(f"{name}#{i}"), name) for i in range(n))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [o for _, o in ring]

    def choose(self, query: Query, candidates: list[TargetState], now: float) -> TargetState:
        changed = False
        for t in candidates:
            if self._weights.get(t.name) != t.target.weight:
                self._weights[t.name] = t.target.weight
                changed = True
        if changed:
            self._rebuild()
        usable = {t.name: t for t in candidates}
        key = query.key if query.key is not None else query.path
        start = bisect.bisect_left(self._points, _hash64(key))
        n = len(self._owners)
        seen: set[str] = set()
        for k in range(n):
            owner = self._owners[(start + k) % n]
            if owner in usable:
                return usable[owner]
            seen.add(owner)
            if len(seen) == len(self._weights):
                break
        return candidates[0]  # unreachable: every candidate is on the ring


def build_strategy(name: str, settings: RouterSettings, rng: random.Random) -> Strategy:
    """The strategy called ``name``; ``learned`` falls back to P2C-EWMA until a model is set."""
    if name == "round_robin":
        return RoundRobin()
    if name == "p2c":
        return P2CLeastRequest(rng)
    if name == "p2c_ewma":
        return P2CPeakEwma(rng)
    if name == "consistent_hash":
        return ConsistentHash()
    if name == "learned":
        return LearnedStrategy(settings.learned, P2CPeakEwma(rng), rng)
    raise ValueError(f"strategy: unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")

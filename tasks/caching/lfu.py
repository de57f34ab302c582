"""Hot keys from what Redis itself counts: ``OBJECT FREQ`` under an LFU eviction policy.

Why a second source: a cache whose application pushes no ``cache_access`` samples still knows its
hot keys when it runs ``allkeys-lfu`` or ``volatile-lfu`` — each key carries a logarithmic access
counter that decays by ``lfu-decay-time`` minutes. It answers "what is hot now" (no forecast, no
daily pattern), so it is the fallback when the lake has no access history, never a replacement.
``OBJECT FREQ`` fails under an LRU policy; we say so instead of guessing.

Bounded work: keys are read with ``SCAN`` over every primary and scored in pipelines, at most
``sample`` keys (a 100-million-key cache is sampled, not walked).
"""

from __future__ import annotations

import heapq

from tasks.caching.client import CacheClient, CacheError
from tasks.caching.hotkeys import HotKey

__all__ = ["lfu_hot_keys", "lfu_policy"]


def lfu_policy(client: CacheClient) -> str | None:
    """The LFU policy every primary runs (``allkeys-lfu``/``volatile-lfu``), else ``None``."""
    policies = {str(info.get("maxmemory_policy", "")) for info in client.info("memory").values()}
    if len(policies) == 1 and (policy := policies.pop()).endswith("-lfu"):
        return policy
    return None


def lfu_hot_keys(client: CacheClient, top: int, *, sample: int = 100_000, batch: int = 500) -> list[HotKey]:
    """The ``top`` keys with the highest ``OBJECT FREQ`` among up to ``sample`` scanned keys.

    Raises :class:`CacheError` when the policy is not LFU (the counter does not exist then)."""
    if lfu_policy(client) is None:
        raise CacheError("OBJECT FREQ needs an LFU maxmemory-policy (allkeys-lfu or volatile-lfu) on every primary")
    best: list[tuple[int, str]] = []
    pending: list[bytes] = []

    def score(keys: list[bytes]) -> None:
        pipe = client.redis.pipeline(transaction=False)
        for k in keys:
            pipe.object("freq", k)
        for k, freq in zip(keys, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(freq, int):  # a key that expired meanwhile answers an error: skip it
                item = (freq, k.decode("utf-8", errors="backslashreplace"))
                if len(best) < top:
                    heapq.heappush(best, item)
                else:
                    heapq.heappushpop(best, item)

    for seen, key in enumerate(client.scan_keys(count=1000), 1):
        pending.append(key)
        if len(pending) >= batch:
            score(pending)
            pending = []
        if seen >= sample:
            break
    if pending:
        score(pending)
    return [HotKey(k, float(f)) for f, k in sorted(best, key=lambda fk: (-fk[0], fk[1]))]

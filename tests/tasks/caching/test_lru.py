"""The exact LRU simulator against hit ratios computed by hand."""

from __future__ import annotations

import pytest

from tasks.caching.lru import LRUCache, lru_hit_ratio


def test_hand_computed_trace() -> None:
    # capacity 2: a b a c b a → miss miss hit miss(evicts b) miss(evicts a) miss(evicts c)
    assert LRUCache(2).replay("abacba") == 1
    # capacity 3 holds all three after the first misses: hits on a, b, a
    assert lru_hit_ratio("abacba", 3) == pytest.approx(3 / 6)


def test_preload_puts_the_best_key_last_to_be_evicted() -> None:
    c = LRUCache(2)
    c.preload(["best", "second", "third"])  # only two fit
    assert c.keys() == ["second", "best"]
    assert c.access("new") is False  # evicts the least recent: "second"
    assert "best" in c and "second" not in c


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LRUCache(0)

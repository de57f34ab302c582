"""Fixtures for the source tests: a schema check every source's output must pass."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from tasks.lake.schema import Sample, canonical_labels, to_utc_ms, validate_metric_name, validate_value
from tasks.sources import base


def _check(samples: Iterable[Sample]) -> list[Sample]:
    """Every sample passes the lake's own validators (the writer would otherwise reject it)."""
    out = list(samples)
    for s in out:
        assert isinstance(s, Sample), s
        validate_metric_name(s.metric)
        canonical_labels(s.labels)
        assert all(isinstance(v, str) for v in s.labels.values()), s
        validate_value(s.value)
        assert to_utc_ms(s.ts) == s.ts, f"{s.metric}: ts must be aware UTC at ms precision"
    return out


@pytest.fixture
def check_samples() -> Callable[[Iterable[Sample]], list[Sample]]:
    return _check


@pytest.fixture(autouse=True)
def _fresh_log_once() -> None:
    """Each test sees "said once" notices anew, whatever ran before it."""
    base._forget_once()


def find(samples: Iterable[Sample], metric: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.fixture
def pick() -> Callable[..., list[Sample]]:
    """``pick(samples, metric, **labels)``: the samples of one metric whose labels include ``labels``."""
    return find

"""Helpers of tasks.sources.base: name sanitising, say-it-once logging."""

from __future__ import annotations

import logging

import pytest

from tasks.lake.schema import validate_label_name, validate_metric_name
from tasks.sources.base import log_once, sanitize_label_name, sanitize_metric_name


@pytest.mark.parametrize(
    ("raw", "metric", "label"),
    [
        ("used_memory", "used_memory", "used_memory"),
        ("7d-hits.rate", "_7d_hits_rate", "_7d_hits_rate"),
        ("a:b", "a:b", "a_b"),
        ("__x", "__x", "_x"),
        ("", "_", "_"),
        ("ünï", "_n_", "_n_"),
    ],
)
def test_sanitize_names_are_valid(raw: str, metric: str, label: str) -> None:
    assert sanitize_metric_name(raw) == metric
    assert sanitize_label_name(raw) == label
    validate_metric_name(sanitize_metric_name(raw))
    validate_label_name(sanitize_label_name(raw))


def test_log_once(caplog) -> None:
    log = logging.getLogger("cortex_perf.sources.test")
    with caplog.at_level(logging.INFO):
        assert log_once(log, "k1", logging.INFO, "hello %s", "a")
        assert not log_once(log, "k1", logging.INFO, "hello %s", "b")
        assert log_once(log, "k2", logging.INFO, "other")
    assert [r.getMessage() for r in caplog.records] == ["hello a", "other"]

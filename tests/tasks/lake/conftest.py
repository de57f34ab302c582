"""Fixtures for lake tests: a fresh lake per test and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks.lake import Lake

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def now() -> datetime:
    return NOW

"""Fixtures for flow and CLI tests: one Prefect test harness per session, small tmp lakes.

Why session-scoped: the harness starts a temporary Prefect server (15–25 s here); starting one per
test would dominate the suite's time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Sources that need hardware or a Prefect API are off, so flow tests collect host metrics only.
QUIET_SOURCES = ["sources.gpu.enabled=false", "sources.prefect.enabled=false", "sources.redis.enabled=false"]


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect server + database for every flow run in the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    os.environ.update({"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def lake_overrides(tmp_path: Path) -> list[str]:
    """``--set`` overrides for a fresh lake, state DB and data dir under tmp_path, host source only.

    Every runtime path is redirected: a flow run in a test must never touch the checkout's
    ``data/`` (a later ``run --demo`` there would pick up the tests' detector state and models).
    """
    return [
        f"lake.root={tmp_path / 'lake'}",
        f"state.path={tmp_path / 'state.duckdb'}",
        f"data_dir={tmp_path / 'data'}",
        *QUIET_SOURCES,
    ]

"""Fixtures shared by the domain tests of more than one package.

``report_lake``: the planted report history (``report_history.py``), read by the report numbers'
tests (``tests/tasks/analytics``) and the report notebooks' tests (``tests/tasks/reports``).
Session-scoped because every reader only reads it and the build (a demo day, alerts, acks, a
model, forecasts) is the slow part of those tests.
"""

from __future__ import annotations

import pytest
from report_history import plant_report_history

from tasks.lake import Lake


@pytest.fixture(scope="session")
def report_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, str]:
    """The planted report history: (lake, state DB path)."""
    return plant_report_history(tmp_path_factory.mktemp("reports-lake"))

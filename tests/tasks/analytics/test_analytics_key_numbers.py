"""tasks.analytics.key_numbers: each report's headline figures, on the planted report history and on
an empty lake, and a set of them for every report notebook."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_history import window

from tasks import analytics as A
from tasks.analytics.key_numbers import REPORTS
from tasks.lake import Lake
from tasks.reports import NOTEBOOKS


def test_key_numbers(report_lake: tuple[Lake, str]) -> None:
    lake, state_path = report_lake
    perf = A.key_numbers("performance_report", lake, *window())
    assert perf["hosts"] == 4 and perf["alert firings"] == 5 and perf["scaling decisions"] == 2
    assert 0 < perf["min CPU headroom"] < 1
    review = A.key_numbers("alert_review", lake, *window(), state_path)
    assert review["noisiest rule"] == "Flappy" and review["flapping rules"] == 1
    assert review["MTTR (min)"] == pytest.approx((300 * 3 + 600) / 4 / 60, abs=0.05)


def test_an_empty_lake_has_no_hosts(tmp_path: Path) -> None:
    assert A.key_numbers("performance_report", Lake(str(tmp_path / "lake")), *window())["hosts"] == 0


def test_every_report_notebook_has_key_numbers() -> None:
    assert set(REPORTS) == set(NOTEBOOKS)

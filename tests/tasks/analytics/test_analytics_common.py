"""tasks.analytics.common: a report window people type (``--since``/``--until``) is read once, and a
bad one names the field."""

from __future__ import annotations

import pytest

from tasks import analytics as A


def test_report_window_names_the_field() -> None:
    with pytest.raises(A.ReportError, match="since"):
        A.report_window("soon")
    with pytest.raises(A.ReportError, match="until"):
        A.report_window("1d", "later")
    with pytest.raises(A.ReportError, match="not before"):
        A.report_window("1h", "2h")

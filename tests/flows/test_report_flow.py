"""The report flow under Prefect's test harness (demo lake in tmp), and ``cortex-perf report``."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.demo import seed_demo
from tasks.lake import Lake
from tasks.lake.schema import Event


def _lake(overrides: list[str]) -> Lake:
    return Lake(next(o.split("=", 1)[1] for o in overrides if o.startswith("lake.root=")))


def _data_dir(overrides: list[str]) -> Path:
    return Path(next(o.split("=", 1)[1] for o in overrides if o.startswith("data_dir=")))


@pytest.fixture
def demo(lake_overrides: list[str]) -> list[str]:
    """Half a day of demo history and one alert that fired and resolved."""
    lake = _lake(lake_overrides)
    now = datetime.now(UTC)
    seed_demo(lake, now=now, days=0.5)
    payload = {"rule": "r.yaml:HighCpu", "labels": {"alertname": "HighCpu"}}
    lake.write_events(
        [
            Event("alert.firing", "cortex.alert.f1", payload, ts=now - timedelta(hours=2)),
            Event("alert.resolved", "cortex.alert.f1", payload, ts=now - timedelta(hours=1)),
        ]
    )
    return lake_overrides


@pytest.mark.usefixtures("prefect_harness")
def test_report_flow_writes_html_and_artifacts(demo: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.report import TABLE_KEY, artifact_key, report

    state = report(overrides=demo, notebooks=["alert_review", "performance_report"], since="1d", return_state=True)
    summary = state.result()
    reports = {r["name"]: r for r in summary["reports"]}
    assert list(reports) == ["alert_review", "performance_report"]
    day = datetime.fromisoformat(summary["until"]).strftime("%Y-%m-%d")
    for name, r in reports.items():
        html = Path(r["html"])
        assert html == _data_dir(demo) / "reports" / f"{name}-{day}.html" and html.stat().st_size == r["bytes"]
        assert r["images"] >= 1 and "<img" in html.read_text()
    assert reports["alert_review"]["key_numbers"]["alert firings"] == 1
    assert reports["performance_report"]["key_numbers"]["hosts"] == 4

    run_id = state.state_details.flow_run_id
    keys = [TABLE_KEY, artifact_key("alert_review"), artifact_key("performance_report")]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    mine = {a.key: a for a in arts}
    assert set(mine) == set(keys)  # no link artifact: a file:// link to the worker's disk opens nothing in the UI
    assert not any("file://" in str(a.data) for a in arts)
    md = str(mine["report-alert-review"].data)
    assert "| alert firings | 1 |" in md
    # the path on the worker, as text to copy (not a link), and how to get the report from anywhere
    assert f"`{reports['alert_review']['html']}`" in md and socket.gethostname() in md
    assert "](" not in md and "cortex-perf report" in md
    table = mine[TABLE_KEY].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {"report": "performance_report", "figure": "hosts", "value": "4"} in rows


@pytest.mark.usefixtures("prefect_harness")
def test_report_flow_rejects_an_unknown_notebook(lake_overrides: list[str]) -> None:
    from flows.report import report

    state = report(overrides=lake_overrides, notebooks=["nope"], return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="notebook: unknown report 'nope'"):
        state.result()
    assert not (_data_dir(lake_overrides) / "reports").exists()


def test_cli_report(demo: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli import app

    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    args = [a for o in demo for a in ("--set", o)]
    res = CliRunner().invoke(app, [*args, "report", "--notebook", "alert_review", "--since", "1d", "--open", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    html = Path(out[0]["html"])
    assert out[0]["name"] == "alert_review" and html.exists() and html.parent == _data_dir(demo) / "reports"
    assert opened == [html.resolve().as_uri()]
    res = CliRunner().invoke(app, [*args, "report", "--notebook", "nope"])
    assert res.exit_code == 2 and "notebook: unknown report 'nope'" in res.stderr
    res = CliRunner().invoke(app, [*args, "report", "--since", "soon"])
    assert res.exit_code == 2 and "since:" in res.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_report_flow_is_skipped_when_disabled(lake_overrides: list[str]) -> None:
    from flows.report import report

    summary = report(overrides=[*lake_overrides, "reports.enabled=false"])
    assert summary == {"flow": "report", "skipped": True, "reason": "reports.enabled is false"}
    assert not (_data_dir(lake_overrides) / "reports").exists()

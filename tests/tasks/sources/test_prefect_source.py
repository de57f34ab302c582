"""PrefectSource without a server: no API means no samples (and no ephemeral server); the mapping.

Reading a live Prefect server is tested elsewhere (slow tests that start one).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.config.settings import PrefectSourceSettings
from tasks.sources import PrefectSource, collect_all
from tasks.sources.prefect_runs import flow_runs_to_samples

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def test_no_api_yields_nothing_once_and_starts_no_server(monkeypatch, caplog) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    server_loaded = "prefect.server.api.server" in sys.modules
    src = PrefectSource.from_settings(PrefectSourceSettings())
    t0 = time.perf_counter()
    with temporary_settings(restore_defaults={PREFECT_API_URL}), caplog.at_level(logging.INFO):
        assert src.collect(NOW) == []
        assert src.collect(NOW) == []
    assert time.perf_counter() - t0 < 3.0  # an ephemeral server takes 15 s or more
    assert ("prefect.server.api.server" in sys.modules) == server_loaded
    notices = [r for r in caplog.records if r.name == "cortex_perf.sources.prefect"]
    assert len(notices) == 1 and "no Prefect API" in notices[0].getMessage()
    assert notices[0].levelno == logging.INFO


def test_unreachable_api_is_a_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = PrefectSource(api_url=f"http://127.0.0.1:{port}/api")
    res = collect_all([src], timeout_s=10, now=NOW)
    assert [f.source for f in res.failures] == ["prefect"]
    assert res.failures[0].error.startswith("prefect API: ConnectError")


def run(flow_id: uuid.UUID, state: StateType, start: datetime | None, end: datetime | None) -> FlowRun:
    return FlowRun(
        flow_id=flow_id,
        name=f"run-{uuid.uuid4().hex[:6]}",
        state=State(type=state, name=state.value.title()),
        start_time=start,
        end_time=end,
    )


def test_flow_runs_to_samples(check_samples) -> None:
    etl, report = uuid.uuid4(), uuid.uuid4()
    t = NOW - timedelta(minutes=30)
    runs = [
        run(etl, StateType.COMPLETED, t, t + timedelta(seconds=42)),
        run(etl, StateType.COMPLETED, t + timedelta(minutes=5), t + timedelta(minutes=6)),
        run(etl, StateType.FAILED, t, t + timedelta(seconds=3)),
        run(report, StateType.RUNNING, t, None),
        run(report, StateType.SCHEDULED, None, None),
    ]
    samples = check_samples(flow_runs_to_samples(runs, {etl: "etl", report: "report"}, NOW))
    assert all(type(s.ts) is datetime for s in samples)  # not pendulum's subclass
    durations = [
        (s.labels["flow"], s.labels["state"], s.value, s.ts)
        for s in samples
        if s.metric == "prefect_flow_run_duration_seconds"
    ]
    assert durations == [
        ("etl", "completed", 42.0, t + timedelta(seconds=42)),
        ("etl", "completed", 60.0, t + timedelta(minutes=6)),
        ("etl", "failed", 3.0, t + timedelta(seconds=3)),
    ]
    counts = {(s.labels["flow"], s.labels["state"]): s.value for s in samples if s.metric == "prefect_flow_runs"}
    assert counts == {
        ("etl", "completed"): 2,
        ("etl", "failed"): 1,
        ("report", "running"): 1,
        ("report", "scheduled"): 1,
    }
    assert all(s.ts == NOW for s in samples if s.metric == "prefect_flow_runs")


def test_no_api_is_decided_without_prefect_only_when_nothing_could_set_one(monkeypatch, tmp_path) -> None:
    """The fast "no API" answer is conservative: a variable, a profile or a project file that could
    name an API sends the question to Prefect's own settings."""
    from tasks.sources.prefect_runs import _surely_no_api

    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert _surely_no_api()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profiles.toml").write_text('[profiles.x]\nPREFECT_API_URL = "http://h:4200/api"\n')
    assert not _surely_no_api()
    (tmp_path / "home" / "profiles.toml").unlink()
    (tmp_path / "pyproject.toml").write_text('[tool.prefect.api]\nurl = "http://h:4200/api"\n')
    assert not _surely_no_api()
    (tmp_path / "pyproject.toml").unlink()
    monkeypatch.setenv("PREFECT_API_URL", "http://h:4200/api")
    assert not _surely_no_api()

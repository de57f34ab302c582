"""tasks.prefect_api: the one reader of Prefect flow runs (the ``prefect`` source and the health
check), against a real ``prefect server start``; and the API key sent with every request."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from localhttp import JsonHandler, LocalServer

from tasks import health, prefect_api
from tasks.config import load_settings
from tasks.health import check_health
from tasks.lake import Lake
from tasks.sources.prefect_runs import PrefectSource

FLOW = "cortex-prefect-api-test"


@pytest.fixture(scope="module")
def finished_run(prefect_server: str) -> str:
    """One completed run of ``FLOW`` on the session's server; its API URL."""
    from prefect import flow
    from prefect.states import Completed

    @flow(name=FLOW)
    def probe() -> None:
        pass

    with prefect_api.client(prefect_server) as c:
        c.create_flow_run(probe, state=Completed())
    return prefect_server


@pytest.mark.slow
def test_the_source_and_the_health_check_read_the_same_runs(finished_run: str, tmp_path: Path) -> None:
    now = datetime.now(UTC) + timedelta(minutes=1)
    with prefect_api.client(finished_run) as c:
        runs, names = prefect_api.recent_runs(c, now - timedelta(hours=1), now, limit=50)
        statuses = {s.flow: s for s in prefect_api.flow_statuses(c)}
    assert FLOW in [names[r.flow_id] for r in runs]
    assert statuses[FLOW].state == "COMPLETED" and statuses[FLOW].next_at is None

    samples = PrefectSource(api_url=finished_run).collect(now)
    counts = {(s.labels["flow"], s.labels["state"]): s.value for s in samples if s.metric == "prefect_flow_runs"}
    assert counts[(FLOW, "completed")] >= 1

    settings = load_settings(
        None,
        {
            "lake.root": str(tmp_path / "lake"),
            "state.path": str(tmp_path / "state.duckdb"),
            "sources.prefect.api_url": finished_run,
        },
    )
    res = {r.name: r for r in check_health(settings, Lake(settings.lake.root), now=now, timeout_s=60)}
    assert res[f"flow:{FLOW}"].status == "OK" and "last run completed" in res[f"flow:{FLOW}"].why
    assert res["source:prefect"].status == "OK"


class _Recorder(JsonHandler):
    """A stand-in Prefect API that records each request's Authorization header and knows no flows."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def _note(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))

    def do_GET(self) -> None:
        self._note()
        if self.path.startswith("/api/csrf-token"):  # what a server without CSRF protection answers
            self._send(422, {"detail": "CSRF protection is disabled."})
        else:
            self._send(200, True)

    def do_POST(self) -> None:
        self._note()
        length = int(self.headers.get("Content-Length") or 0)
        json.loads(self.rfile.read(length) or b"{}")
        self._send(200, [])


@pytest.mark.parametrize(
    ("setting", "value", "header"),
    [
        ("PREFECT_API_KEY", "pnu_secret", "Bearer pnu_secret"),
        ("PREFECT_API_AUTH_STRING", "admin:pass", "Basic " + base64.b64encode(b"admin:pass").decode()),
    ],
)
def test_the_api_key_goes_with_every_request(setting: str, value: str, header: str) -> None:
    """Flow health used to ignore the key (every flow "not reachable" on Prefect Cloud); now the
    source, the flow-health reader and the ``/health`` probe all send it. (Called here in this thread,
    where the settings context is: ``check_health`` runs them in threads of their own, which see
    the settings Prefect read from the environment at import, not a test's temporary ones.)"""
    import prefect.settings

    srv = LocalServer(_Recorder)
    _Recorder.seen = []
    with prefect.settings.temporary_settings(updates={getattr(prefect.settings, setting): value}):
        api = f"{srv.url}/api"
        now = datetime.now(UTC)
        assert PrefectSource(api_url=api).collect(now) == []  # no runs: no samples
        (flows,) = health._flows(api, now)
        assert flows.status == "unknown" and "knows no flows" in flows.why
        probe = health._http_probe("source:prefect", "source", f"{api}/health", 5.0, prefect_api.auth_headers())
        assert probe.status == "OK"
    srv.close()
    paths = {p.partition("?")[0] for p, _ in _Recorder.seen}
    assert {"/api/flow_runs/filter", "/api/flows/filter", "/api/health"} <= paths
    assert {h for _, h in _Recorder.seen} == {header}

"""``cortex-perf status`` over a tmp lake: exit codes, JSON, the table, and the recorded series."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.health import COMPONENT_UP
from tasks.lake import Lake, Sample

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fresh lake (a sample 10 s old), host source only, no Prefect API."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    lake = Lake(str(tmp_path / "lake"))
    lake.write_samples([Sample("cpu_ratio", 0.4, datetime.now(UTC) - timedelta(seconds=10), {"host": "a"})])
    return [
        *("--set", f"lake.root={tmp_path / 'lake'}"),
        *("--set", f"state.path={tmp_path / 'state.duckdb'}"),
        *("--set", f"data_dir={tmp_path / 'data'}"),
        *("--set", "sources.gpu.enabled=false"),
        *("--set", "sources.prefect.enabled=false"),
    ]


def _dead_target() -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return ["--set", f'sources.prometheus=[{{"name": "gone", "url": "http://127.0.0.1:{port}/metrics"}}]']


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def test_all_up_exits_0_and_records(env: list[str], tmp_path: Path) -> None:
    code, out = _run(*env, "status", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["ok"] is True
    comps = {c["name"]: c for c in data["components"]}
    assert comps["lake"]["status"] == "OK" and comps["source:host"]["status"] == "OK"
    assert comps["flows"]["status"] == "unknown"
    now = datetime.now(UTC)
    df = Lake(str(tmp_path / "lake")).raw(COMPONENT_UP, now - timedelta(minutes=5), now + timedelta(minutes=1))
    recorded = {json.loads(lb)["component"] for lb in df.get_column("labels").to_list()}
    assert recorded == {n for n, c in comps.items() if c["status"] != "unknown"}


def test_down_target_exits_1_with_table(env: list[str]) -> None:
    code, out = _run(*env, *_dead_target(), "status", "--no-record")
    assert code == 1, out
    assert "source:prometheus:gone" in out and "down" in out and "ConnectError" in out
    assert "cortex-perf status:" in out


def test_no_record_leaves_lake_alone(env: list[str], tmp_path: Path) -> None:
    code, out = _run(*env, *_dead_target(), "status", "--json", "--no-record")
    assert code == 1, out
    data = json.loads(out)
    assert data["ok"] is False
    [gone] = [c for c in data["components"] if c["name"] == "source:prometheus:gone"]
    assert gone["status"] == "down" and gone["kind"] == "source"
    now = datetime.now(UTC)
    df = Lake(str(tmp_path / "lake")).raw(COMPONENT_UP, now - timedelta(minutes=5), now + timedelta(minutes=1))
    assert df.height == 0


def test_bad_config_is_one_line_exit_2(env: list[str]) -> None:
    code, out = _run(*env, "--set", "collect.interval_s=-1", "status")
    assert code == 2 and "collect.interval_s" in out


def test_flows_last_run_from_a_real_prefect_api(prefect_harness: None, tmp_path: Path) -> None:
    """A flow whose last run failed is down, one that completed is OK (a real temporary Prefect server)."""
    from prefect import flow
    from prefect.settings import get_current_settings

    from tasks.config.settings import Settings
    from tasks.health import check_health

    @flow(name="cortex-health-ok")
    def ok() -> int:
        return 1

    @flow(name="cortex-health-fails")
    def fails() -> None:
        raise RuntimeError("planned failure")

    ok()
    with pytest.raises(RuntimeError):
        fails()
    api = str(get_current_settings().api.url)
    s = Settings(
        lake={"root": str(tmp_path / "lake")},
        state={"path": str(tmp_path / "state.duckdb")},
        sources={"gpu": {"enabled": False}, "host": {"enabled": False}, "prefect": {"api_url": api}},
    )
    res = {r.name: r for r in check_health(s, Lake(s.lake.root), now=datetime.now(UTC), timeout_s=30)}
    assert res["source:prefect"].status == "OK"
    assert res["flow:cortex-health-ok"].status == "OK" and "completed" in res["flow:cortex-health-ok"].why
    failed = res["flow:cortex-health-fails"]
    assert failed.status == "down" and "failed" in failed.why


def test_flow_status_is_the_last_finished_run_and_the_next_scheduled_one(prefect_harness: None, tmp_path: Path) -> None:
    """A run scheduled an hour ahead is the *next* run, not the last one ("last run scheduled -60 min
    ago" was the bug): the last run is the newest finished one, and the next is reported beside it."""
    import asyncio

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings
    from prefect.states import Scheduled

    from tasks.config.settings import Settings
    from tasks.health import check_health

    @flow(name="cortex-health-scheduled")
    def ticks() -> int:
        return 1

    ticks()
    now = datetime.now(UTC)

    async def schedule_ahead() -> None:
        async with get_client() as client:
            for minutes in (60, 120):
                await client.create_flow_run(ticks, state=Scheduled(scheduled_time=now + timedelta(minutes=minutes)))

    asyncio.run(schedule_ahead())
    api = str(get_current_settings().api.url)
    s = Settings(
        lake={"root": str(tmp_path / "lake")},
        state={"path": str(tmp_path / "state.duckdb")},
        sources={"gpu": {"enabled": False}, "host": {"enabled": False}, "prefect": {"api_url": api}},
    )
    res = {r.name: r for r in check_health(s, Lake(s.lake.root), now=now, timeout_s=30)}
    got = res["flow:cortex-health-scheduled"]
    assert got.status == "OK", got
    assert got.why.startswith("last run completed"), got.why
    assert "-" not in got.why.split(";")[0], got.why  # no negative age
    assert "next run in 60 min" in got.why, got.why
    assert 3500 <= got.numbers["next_run_in_s"] <= 3600
    assert 0 <= got.numbers["last_run_age_s"] < 600

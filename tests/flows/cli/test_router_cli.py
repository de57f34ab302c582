"""``cortex-perf router serve|status|route``: a real service (uvicorn in a thread, and the CLI's own
``serve`` as a subprocess) in front of real backends on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from routerhttp import Backend, Service, free_port
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.router import server_stack
from tasks.config import load_settings
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.routing.proxy import build_app
from tasks.routing.router import Router

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend("a")
    yield b
    b.close()


def _config(tmp_path: Path, url: str, port: int = 8090) -> Path:
    cfg = tmp_path / "cortex-perf.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "lake": {"root": str(tmp_path / "lake")},
                "state": {"path": str(tmp_path / "state.duckdb")},
                "router": {
                    "service": {"port": port, "flush_s": 3600},
                    "pools": [
                        {
                            "name": "api",
                            "prefix": "/api",
                            "targets": [{"name": "a", "url": url}, {"name": "b", "url": url + "/b"}],
                        }
                    ],
                },
            }
        )
    )
    return cfg


def test_status_of_a_running_router(tmp_path: Path, backend: Backend) -> None:
    cfg = _config(tmp_path, "http://u:s3cret@" + backend.url.removeprefix("http://"))
    settings = load_settings(cfg)
    service = Service(build_app(Router(settings.router), settings, None))
    try:
        httpx.get(service.url + "/api/echo")
        res = runner.invoke(app, ["--config", str(cfg), "router", "status", "--url", service.url, "--json"])
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        assert data["running"] is True
        targets = data["pools"][0]["targets"]
        assert [t["name"] for t in targets] == ["a", "b"] and sum(t["requests"] for t in targets) == 1
        table = runner.invoke(app, ["--config", str(cfg), "router", "status", "--url", service.url])
        assert table.exit_code == 0 and "pool api (/api, learned): 2/2 healthy" in table.stdout
        assert "s3cret" not in table.stdout + res.stdout
    finally:
        service.stop()


def test_status_with_no_router_running_shows_the_config(tmp_path: Path, backend: Backend) -> None:
    cfg = _config(tmp_path, "http://u:s3cret@" + backend.url.removeprefix("http://"), port=free_port())
    res = runner.invoke(app, ["--config", str(cfg), "router", "status", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["running"] is False and [t["name"] for t in data["pools"][0]["targets"]] == ["a", "b"]
    table = runner.invoke(app, ["--config", str(cfg), "router", "status"])
    assert "No router answers" in table.output and "pool api" in table.stdout
    assert "s3cret" not in table.output + res.output


def test_route_dry_run_names_the_target_and_why(tmp_path: Path, backend: Backend) -> None:
    cfg = _config(tmp_path, backend.url)
    res = runner.invoke(
        app, ["--config", str(cfg), "router", "route", "--path", "/api/x", "--kind", "search", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["pool"] == "api" and out["target"] in ("a", "b") and out["strategy"] == "learned"
    assert [c["name"] for c in out["candidates"]] == ["a", "b"]
    assert backend.hits == []  # nothing was sent
    rr = runner.invoke(app, ["--config", str(cfg), "router", "route", "--path", "/api/x", "--strategy", "round_robin"])
    assert rr.exit_code == 0 and "by round_robin" in rr.stdout


def test_route_bad_input_is_one_line(tmp_path: Path, backend: Backend) -> None:
    cfg = _config(tmp_path, backend.url)
    for args, needle in (
        (["--path", "/elsewhere"], "no pool serves path '/elsewhere'"),
        (["--path", "api"], "must start with '/'"),
        (["--path", "/api", "--strategy", "fastest"], "unknown strategy 'fastest'"),
    ):
        res = runner.invoke(app, ["--config", str(cfg), "router", "route", *args])
        assert res.exit_code == 2, res.output
        assert needle in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_serve_proxies_and_writes_outcomes_on_sigterm(tmp_path: Path, backend: Backend) -> None:
    port = free_port()
    cfg = _config(tmp_path, backend.url, port=port)
    env = {**os.environ, "CORTEX_PERF_CONFIG": str(cfg)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "router", "serve", "--strategy", "round_robin"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(base + "/_router/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "router serve did not start"
            time.sleep(0.1)
        seen = [httpx.get(base + f"/api/echo/{i}").json()["path"] for i in range(4)]
        assert sorted(p.startswith("/b/") for p in seen) == [False, False, True, True]  # round-robin over a, b
        assert httpx.get(base + "/_router/status").json()["pools"][0]["strategy"] == "round_robin"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit by SIGTERM)
    assert proc.returncode in (0, -signal.SIGTERM), err
    now = datetime.now(UTC)
    rows = Lake(str(tmp_path / "lake")).read_rows(S.ROUTER_OUTCOMES, now - timedelta(hours=1), now + timedelta(hours=1))
    assert rows.height == 4 and set(rows.get_column("target")) == {"a", "b"}  # flushed on stop (flush_s is 1 h)


def test_serve_stack_bad_input_is_one_line_and_starts_nothing(tmp_path: Path, backend: Backend) -> None:
    cfg = _config(tmp_path, backend.url, port=free_port())
    for args, needle in (
        (["--loop", "fast"], "--loop: unknown event loop 'fast'"),
        (["--http", "h3"], "--http: unknown HTTP parser 'h3'"),
    ):
        res = runner.invoke(app, ["--config", str(cfg), "router", "serve", *args])
        assert res.exit_code == 2, res.output
        assert needle in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "lake").exists() and backend.hits == []


def test_server_stack_prefers_the_fast_parts_and_honours_a_choice() -> None:
    assert server_stack() == ("uvloop", "httptools")  # dependencies: measured faster (BENCHMARKS.md)
    assert server_stack("asyncio", "h11") == ("asyncio", "h11")

"""A scrape URL's password (``http://u:PW@host/metrics``) never leaves the settings: not in the CLI's
output, the lake's files, Python's logs or Prefect's run logs. Real HTTP servers on 127.0.0.1 (one
answering 500, one port refusing), a real lake, a real temporary Prefect server for the flow."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from localhttp import JsonHandler, LocalServer
from typer.testing import CliRunner

from flows.cli import app

PW = "Pw-s3cr3t-9f2"
runner = CliRunner()


class _Fails(JsonHandler):
    def do_GET(self) -> None:
        self._send(500, {"error": "broken exporter"})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config with two credentialed scrape targets (HTTP 500, connection refused) and a tmp lake."""
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    srv = LocalServer(_Fails)
    cfg = tmp_path / "cortex-perf.yaml"
    cfg.write_text(
        f"""
data_dir: {tmp_path / "data"}
lake: {{root: {tmp_path / "lake"}}}
state: {{path: {tmp_path / "state.duckdb"}}}
sources:
  host: {{enabled: false}}
  gpu: {{enabled: false}}
  prefect: {{enabled: false}}
  prometheus:
    - {{name: fails, url: "http://scraper:{PW}@127.0.0.1:{srv.port}/metrics", timeout_s: 2}}
    - {{name: refused, url: "http://scraper:{PW}@127.0.0.1:{_closed_port()}/metrics", timeout_s: 2}}
"""
    )
    yield cfg
    srv.close()


def _cli(cfg: Path, *args: str) -> str:
    res = runner.invoke(app, ["--config", str(cfg), *args])
    return res.stdout + res.stderr + (repr(res.exception) if res.exception else "")


def _lake_text_and_bytes(root: Path) -> tuple[str, bytes]:
    """Every row of every Parquet file as text (read with DuckDB), and the files' raw bytes."""
    files = sorted(root.rglob("*.parquet"))
    assert files, "the lake has no files"
    con = duckdb.connect()
    text = "\n".join(
        str(row) for f in files for row in con.sql("SELECT * FROM read_parquet($f)", params={"f": str(f)}).fetchall()
    )
    return text, b"".join(f.read_bytes() for f in files)


def test_password_never_printed_or_stored(config: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        shown = _cli(config, "config", "show")
        assert "scraper:***@127.0.0.1" in shown  # still recognisable, password masked
        as_json = _cli(config, "config", "show", "--json")
        assert json.loads(as_json)["sources"]["prometheus"][0]["url"].startswith("http://scraper:***@127.0.0.1:")
        dry = _cli(config, "collect", "--dry-run")
        assert "HTTP 500" in dry and "failed" in dry
        status = _cli(config, "status", "--timeout", "5")
        assert "prometheus:fails" in status
    for out in (shown, as_json, dry, status):
        assert PW not in out, out
    assert PW not in caplog.text
    text, raw = _lake_text_and_bytes(config.parent / "lake")  # status recorded its samples
    assert PW not in text and PW.encode() not in raw


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_collect_flow_keeps_the_password_out_of_lake_and_prefect(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`cortex-perf collect` runs the flow on a real temporary Prefect server: the source.failed
    events, the samples (instance label) and the run's logs in Prefect's database hold no password."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    with caplog.at_level(logging.DEBUG):
        out = _cli(config, "collect")
    assert "failed_sources" in out and PW not in out
    assert PW not in caplog.text
    text, raw = _lake_text_and_bytes(config.parent / "lake")
    assert "source.failed" in text and "HTTP 500" in text
    assert "127.0.0.1:" in text  # the instance label is there, without the credentials
    assert PW not in text and PW.encode() not in raw

    APILogHandler().flush()  # logs go to Prefect in background batches: send what is queued now

    async def logs() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            run = next(r for r in runs if r.flow_id and r.parameters.get("config_path") == str(config))
            found = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            return [f"{lg.name} {lg.message}" for lg in found] + [json.dumps(run.parameters), run.state.message or ""]

    lines = asyncio.run(logs())
    assert any("HTTP 500" in line for line in lines), lines  # the failure was logged ...
    assert not [line for line in lines if PW in line]  # ... without the password


def test_secret_overrides_reach_settings_but_not_flow_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--set` values that carry a secret are taken out of what a flow gets as parameters, still win
    over file and environment inside the block, and leave no trace in the environment afterwards."""
    from tasks.config import load_settings, secret_overrides_stashed
    from tasks.config.settings import SECRET_OVERRIDES_ENV

    monkeypatch.delenv(SECRET_OVERRIDES_ENV, raising=False)
    url = f"http://scraper:{PW}@127.0.0.1:9/metrics"
    given = [f'sources.prometheus=[{{"name": "x", "url": "{url}"}}]', "lake.root=/tmp/elsewhere", "api_token=tok-1"]
    with secret_overrides_stashed(given) as public:
        assert public == ["lake.root=/tmp/elsewhere"]
        settings = load_settings(None, public)
        assert settings.sources.prometheus[0].url == url
        assert settings.lake.root == "/tmp/elsewhere"
    assert SECRET_OVERRIDES_ENV not in os.environ
    assert load_settings(None, None).sources.prometheus == []


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_password_given_with_set_is_not_stored_as_a_flow_parameter(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same scrape target given on the command line (`--set sources.prometheus=[...]`): the flow
    scrapes it (its failure is recorded), and Prefect's database holds no password in the run's
    parameters (the CLI hands flows their --set values as parameters) nor in its logs."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    text = config.read_text()
    head, targets = text.split("  prometheus:\n")
    plain = config.with_name("plain.yaml")
    plain.write_text(head)  # the same config without its scrape targets
    listed = [line.strip().removeprefix("- ") for line in targets.strip().splitlines()]
    as_json = json.dumps([dict(_flow_mapping(item)) for item in listed])
    res = runner.invoke(app, ["--config", str(plain), "--set", f"sources.prometheus={as_json}", "collect"])
    out = res.stdout + res.stderr
    assert res.exit_code == 0, out
    assert "failed_sources" in out and PW not in out
    lake_text, raw = _lake_text_and_bytes(config.parent / "lake")
    assert "source.failed" in lake_text and "HTTP 500" in lake_text  # the --set target was scraped
    assert PW not in lake_text and PW.encode() not in raw
    APILogHandler().flush()

    async def stored() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            run = next(r for r in runs if r.flow_id and r.parameters.get("config_path") == str(plain))
            found = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            return [f"{lg.name} {lg.message}" for lg in found] + [json.dumps(run.parameters)]

    lines = asyncio.run(stored())
    assert not [line for line in lines if PW in line], lines


def _flow_mapping(item: str) -> dict[str, object]:
    """`{name: fails, url: "http://…", timeout_s: 2}` (the fixture's YAML flow mapping) as a dict."""
    import yaml

    parsed = yaml.safe_load(item)
    assert isinstance(parsed, dict)
    return parsed

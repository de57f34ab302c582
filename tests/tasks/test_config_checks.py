"""``config check`` and every command refuse values that would hurt: a non-positive retention (it
would delete the whole lake), an infinite interval, an empty lake root, a selector that does not
parse, a report or report parameter that does not exist, a scaling metric the lake cannot query, an
actuator kind that is not installed or a config it does not take. Each error names the field."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows._common import load
from flows.cli import app
from tasks.config import ConfigError
from tasks.lake import Lake, Sample

runner = CliRunner()

#: (override, the field its error must name)
BAD = [
    ('lake.retention_days={"samples":-1,"series":-1}', "lake.retention_days.samples"),
    ('lake.retention_days={"events":0}', "lake.retention_days.events"),
    ('lake.retention_days={"sample":30}', "lake.retention_days.sample"),
    ("collect.interval_s=.inf", "collect.interval_s"),
    ("collect.source_timeout_s=.inf", "collect.source_timeout_s"),
    ("lake.root=", "lake.root"),
    ("lake.root='   '", "lake.root"),
    ('forecast.selectors=["host_cpu_utilization_ratio", "cpu{host=\\"a\\""]', "forecast.selectors[1]"),
    ('anomaly.selectors=["{"]', "anomaly.selectors[0]"),
    ('reports.parameters={"capacity_planning":{"capacty":0.8}}', "reports.parameters.capacity_planning.capacty"),
    ('reports.notebooks=["weekly"]', "reports.notebooks"),
    ('scaling.targets=[{"name":"w","capacity_per_unit":1,"metric":{"selector":"x"},"actuator":{"kind":"helm"}}]',
     "scaling.targets[0].actuator.kind"),
    ('scaling.targets=[{"name":"w","capacity_per_unit":1,"metric":{"selector":"x"},'
     '"actuator":{"kind":"command","argv":[]}}]', "scaling.targets[0].actuator.argv"),
    ('scaling.targets=[{"name":"w","capacity_per_unit":1,"metric":{"selector":"x","agg":"p101"}}]',
     "scaling.targets.0.metric.agg"),
    ('scaling.targets=[{"name":"w","capacity_per_unit":1,"metric":{"selector":"x{"}}]',
     "scaling.targets.0.metric.selector"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(("override", "field"), BAD, ids=[b[1] for b in BAD])
def test_config_check_refuses_naming_the_field(override: str, field: str) -> None:
    res = runner.invoke(app, ["--set", override, "config", "check"])
    assert res.exit_code == 1, res.stdout
    assert field in res.stderr
    assert "config OK" not in res.stdout


@pytest.mark.parametrize(("override", "field"), BAD, ids=[b[1] for b in BAD])
def test_every_loader_refuses(override: str, field: str) -> None:
    res = runner.invoke(app, ["--set", override, "lake", "stats"])  # any command that loads the config
    assert res.exit_code == 2 and field in res.stderr
    from tasks.config_checks import load_checked_settings

    for loader in (lambda: load(None, [override]), lambda: load_checked_settings(None, [override])):
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace(".", r"\.")):
            loader()


def test_config_file_errors_are_all_listed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "lake:\n  retention_days: {samples: 7, sample: 3}\n"
        "forecast:\n  selectors: ['ok_metric', 'a{b=~\"(\"}']\n"
        "reports:\n  parameters: {capacity_planning: {capacty: 0.8}}\n"
    )
    res = runner.invoke(app, ["--config", str(cfg), "config", "check"])
    assert res.exit_code == 1
    for field in (
        "lake.retention_days.sample",
        "forecast.selectors[1]",
        "reports.parameters.capacity_planning.capacty",
    ):
        assert field in res.stderr


def test_good_values_pass(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "--set",
            'lake.retention_days={"samples":1,"events":7}',
            "--set",
            'forecast.selectors=["cpu{host=~\\"web-.*\\"}"]',
            "--set",
            'reports.parameters={"capacity_planning":{"capacity":0.8}}',
            "config",
            "check",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert "config OK" in res.stdout


def test_negative_retention_never_reaches_the_lake(tmp_path: Path) -> None:
    """The reported incident: `--set lake.retention_days=...-1` then maintenance wiped the lake."""
    root = tmp_path / "lake"
    now = datetime.now(UTC)
    lake = Lake(str(root))
    lake.write_samples([Sample("m", 1.0, now - timedelta(days=d)) for d in range(3)], now=now)
    before = lake.storage.partitions("samples")
    with pytest.raises(ConfigError, match=r"lake\.retention_days\.samples"):
        load(None, [f"lake.root={root}", 'lake.retention_days={"samples":-1,"series":-1}'])
    assert Lake(str(root)).storage.partitions("samples") == before

"""``cortex-perf router set|reset|overrides``: routing changes as recorded actions, from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tasks.lake import Lake

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def _config(tmp_path: Path, targets: tuple[str, ...] = ("a", "b")) -> Path:
    cfg = tmp_path / "cortex-perf.yaml"
    pools = [
        {"name": "api", "targets": [{"name": n, "url": f"http://127.0.0.1:{9000 + i}"} for i, n in enumerate(targets)]}
    ]
    cfg.write_text(
        yaml.safe_dump(
            {
                "lake": {"root": str(tmp_path / "lake")},
                "state": {"path": str(tmp_path / "state.duckdb")},
                "router": {"pools": pools},
            }
        )
    )
    return cfg


def cli(cfg: Path, *args: str) -> object:
    return runner.invoke(app, ["--config", str(cfg), "router", *args])


def test_set_shows_from_to_applies_once_and_lists_the_override(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    dry = cli(cfg, "set", "api/a", "weight=3", "capacity=8", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry-run" in dry.output and "weight" in dry.output and "1.0" in dry.output and "3" in dry.output
    assert "no overrides" in cli(cfg, "overrides").output
    res = cli(cfg, "set", "api/a", "weight=3", "capacity=8", "--reason", "a has a bigger box", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["result"]["status"] == "applied" and out["action"]["to"] == {"weight": 3, "capacity": 8}
    assert out["action"]["from"] == {"weight": 1.0, "capacity": 100} and out["action"]["reason"] == "a has a bigger box"
    listed = json.loads(cli(cfg, "overrides", "--json").stdout)["overrides"]
    assert {(o["scope"], o["field"], o["value"], o["stale"]) for o in listed} == {
        ("api/a", "weight", 3, False),
        ("api/a", "capacity", 8, False),
    }
    events = Lake(str(tmp_path / "lake")).events(name="action.applied")
    assert events.height == 1  # recorded in the lake once


def test_router_wide_breaker_setting_and_reset(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cli(cfg, "set", "router", "breaker.failure_rate_threshold=30", "ejection.enabled=false").exit_code == 0
    assert cli(cfg, "set", "api", "strategy=round_robin").exit_code == 0
    assert len(json.loads(cli(cfg, "overrides", "--json").stdout)["overrides"]) == 3
    assert "would remove 2" in cli(cfg, "reset", "router", "--dry-run").output
    assert "removed 2" in cli(cfg, "reset", "router").output
    assert "removed 1" in cli(cfg, "reset", "--all").output
    bad = cli(cfg, "reset")
    assert bad.exit_code != 0 and "give a SCOPE or --all" in bad.output


def test_an_override_of_a_target_that_left_the_config_is_shown_stale(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert cli(cfg, "set", "api/b", "cost=0.5").exit_code == 0
    _config(tmp_path, targets=("a",))
    table = cli(cfg, "overrides")
    assert table.exit_code == 0 and "api/b" in table.output and "stale" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("api/a", "weight=-2"), "router.pools.0.targets.0.weight"),
        (("api/zz", "weight=2"), "unknown target 'zz'"),
        (("api", "weight=2"), "weight: cannot be set on a pool"),
        (("router", "weight"), "is not FIELD=VALUE"),
        (("router", "breaker.window_size=[1"), "is not a value"),
    ],
)
def test_bad_changes_are_one_line_errors_and_store_nothing(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    cfg = _config(tmp_path)
    res = cli(cfg, "set", *args)
    assert res.exit_code != 0 and message in " ".join(res.output.split())
    assert "no overrides" in cli(cfg, "overrides").output

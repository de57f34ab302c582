"""Actuator kinds from other packages, through the entry-point group ``cortex_perf.actuators``.

A real distribution, not a registry call: a tiny package with its ``*.dist-info/entry_points.txt``
in a temporary directory put on the path, which ``importlib.metadata`` finds as it would an
installed wheel. What could break: a plug-in that needs this repository edited to be found, that
works in-process but not in a fresh ``cortex-perf`` process, a broken plug-in failing with an
unreadable traceback, or two packages claiming one kind silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.actuators import (
    ENTRY_POINT_GROUP,
    ActionLedger,
    ActuatorConfigError,
    ScaleAction,
    actuator_kinds,
    build_actuator,
    discover,
    parse_actuator_config,
)
from tasks.lake import Lake, Sample

PLUGIN = '''
"""A team's own actuator: keeps a count in a file."""
from pathlib import Path
from typing import Any, Literal

from tasks.actuators import ActuatorConfig, CountActuator, ScaleAction


class FileCounterConfig(ActuatorConfig):
    kind: Literal["file_counter"] = "file_counter"
    path: str


class FileCounter(CountActuator):
    kind = "file_counter"
    config_model = FileCounterConfig
    config: FileCounterConfig

    def _read(self, target: str) -> int:
        p = Path(self.config.path)
        return int(p.read_text()) if p.exists() else 1

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        Path(self.config.path).write_text(str(action.to))
        detail["plugin"] = "file_counter"
        return self._read(action.target)
'''


def make_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Lay out an installed distribution ``name`` in ``site``: its modules and its dist-info."""
    for module, source in modules.items():
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines) + "\n")


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    make_distribution(site, "file-counter-plugin", {"file_counter": "file_counter:FileCounter"},
                      {"file_counter": PLUGIN})  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    discover()
    yield site
    monkeypatch.undo()
    sys.modules.pop("file_counter", None)
    discover()


def test_an_installed_plugin_is_a_kind_without_editing_this_repository(plugin_site: Path, tmp_path: Path) -> None:
    assert "file_counter" in actuator_kinds() and "log" in actuator_kinds()
    act = build_actuator(
        {"kind": "file_counter", "path": str(tmp_path / "n")}, ledger=ActionLedger(str(tmp_path / "s"))
    )
    res = act.apply(ScaleAction(id="p-1", target="queue", to=7), dry_run=False)
    assert (res.status, res.observed, res.detail) == ("applied", 7, {"plugin": "file_counter"})
    assert (tmp_path / "n").read_text() == "7"
    # its own config model names its own fields
    with pytest.raises(ActuatorConfigError) as err:
        parse_actuator_config({"kind": "file_counter"}, origin="scaling.targets[0].actuator")
    assert err.value.problems == ["scaling.targets[0].actuator.path: Field required"]


def test_without_the_plugin_the_kind_is_unknown() -> None:
    with pytest.raises(ActuatorConfigError, match=r"unknown actuator 'file_counter' \(known: command, kubernetes, log"):
        parse_actuator_config({"kind": "file_counter"})


def test_a_fresh_cortex_perf_process_scales_a_target_through_the_plugin(plugin_site: Path, tmp_path: Path) -> None:
    """``actuator: {kind: file_counter, ...}`` in a scaling target, ``cortex-perf scale apply``."""
    lake = Lake(str(tmp_path / "lake"))
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    lake.write_samples([Sample("app_load_rps", 100.0, end - timedelta(minutes=m, seconds=-5), {"job": "q"})
                        for m in range(1, 31)])  # fmt: skip
    count = tmp_path / "count.txt"
    target = {"name": "queue", "capacity_per_unit": 50, "policy": "static", "rails": {"min_units": 1, "max_units": 4},
              "metric": {"selector": 'app_load_rps{job="q"}', "lookback": "1h"},
              "actuator": {"kind": "file_counter", "path": str(count)}}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    cli = str(Path(sys.executable).parent / "cortex-perf")
    args = [cli, "--set", f"lake.root={tmp_path / 'lake'}", "--set", f"state.path={tmp_path / 'state.duckdb'}",
            "--set", "scaling.targets=" + json.dumps([target]), "scale", "apply", "--json"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout)["targets"]
    assert outcome["status"] == "applied" and outcome["action"]["detail"] == {"plugin": "file_counter"}
    assert count.read_text() == "4"
    # and without the plug-in on the path, the same config is refused naming the field
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    refused = subprocess.run([*args[:-3], "config", "check"], env=env, capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)  # fmt: skip
    assert refused.returncode != 0
    assert "scaling.targets[0].actuator.kind: unknown actuator 'file_counter'" in refused.stderr


def test_a_broken_plugin_and_a_kind_claimed_twice_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    make_distribution(site, "broken-plugin", {"broken": "broken_actuator:Nope"},
                      {"broken_actuator": "raise ImportError('needs libfoo')\n"})  # fmt: skip
    make_distribution(site, "rival-plugin", {"log": "rival:LogActuator"}, {"rival": ""})
    monkeypatch.syspath_prepend(str(site))
    try:
        with pytest.raises(ActuatorConfigError, match=r"'log' is declared twice") as clash:
            discover()
        assert "rival:LogActuator" in str(clash.value) and "tasks.actuators.log:LogActuator" in str(clash.value)
    finally:
        (site / "rival_plugin-0.1.dist-info" / "entry_points.txt").unlink()
    discover()
    with pytest.raises(
        ActuatorConfigError, match=r"broken_actuator:Nope cannot be imported: ImportError: needs libfoo"
    ):
        parse_actuator_config({"kind": "broken"})
    monkeypatch.undo()
    discover()

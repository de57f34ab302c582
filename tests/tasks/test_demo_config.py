"""tasks.demo_config: the cortex-perf.yaml `run --demo` leaves behind: it loads, points at the demo
rules and the demo scaling target, carries a receiver example that parses, and never replaces a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tasks.alerting.notify.notify_config import parse_notify_config
from tasks.config import ScalingTargetSettings, load_settings
from tasks.config_checks import load_checked_settings
from tasks.demo_config import (
    DEMO_RULES,
    DEMO_SCALING_TARGET,
    demo_scaling_target,
    ensure_demo_config,
    receiver_hint,
    with_demo_setup,
)


@pytest.fixture(autouse=True)
def fresh_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_writes_a_working_config_into_a_fresh_project(tmp_path: Path) -> None:
    path, written = ensure_demo_config()
    assert written and path == tmp_path / "cortex-perf.yaml"
    s = load_settings()
    assert [Path(p).resolve() for p in s.alerting.rule_files] == [DEMO_RULES.resolve()]
    assert [t.name for t in s.scaling.targets] == [DEMO_SCALING_TARGET["name"]]
    assert s.scaling.mode == "dry-run" and s.alerting.notify_config is None
    # from a subfolder (a notebook's kernel) the same file and the same rules
    (tmp_path / "notebooks").mkdir()
    os.chdir(tmp_path / "notebooks")
    assert [Path(p).resolve() for p in load_settings().alerting.rule_files] == [DEMO_RULES.resolve()]


def test_the_commented_receiver_example_is_a_valid_notification_config() -> None:
    path, _ = ensure_demo_config()
    lines = path.read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.strip() == "#   route: {receiver: team, group_by: [alertname]}"
    )
    example = []
    for line in lines[start:]:
        if not line.startswith("  #   "):
            break
        example.append(line[len("  #   ") :])
    cfg = parse_notify_config("\n".join(example))
    assert set(cfg.parsed_receivers) == {"team"}
    text = "\n".join(lines)
    assert "slack://" in text and "mailto" in text and "# notify_config: alerting.yml" in text


def test_never_overwrites_an_existing_config(tmp_path: Path) -> None:
    mine = tmp_path / "cortex-perf.yaml"
    mine.write_text("lake:\n  root: /my/lake\n")
    path, written = ensure_demo_config()
    assert (path, written) == (mine, False)
    assert mine.read_text() == "lake:\n  root: /my/lake\n"
    named = tmp_path / "elsewhere.yaml"
    path, written = ensure_demo_config(named)  # --config naming a file that does not exist yet: written there
    assert (path, written) == (named, True) and load_settings(named).scaling.targets


def test_receiver_hint_names_slack_email_and_the_file(tmp_path: Path) -> None:
    lines = receiver_hint(tmp_path / "cortex-perf.yaml")
    text = "\n".join(lines)
    assert "Slack" in text and "e-mail" in text and str(tmp_path / "cortex-perf.yaml") in text
    assert "alerts test-notify team" in lines[-1]


def test_the_demo_setup_is_what_the_json_overrides_gave_as_typed_values() -> None:
    """The pipeline used to re-load the config with ``scaling.targets=<json>`` and
    ``alerting.rule_files=<json>``; it now hands the stages ``with_demo_setup(settings)``: same values."""
    old = load_checked_settings(
        None,
        [
            f"scaling.targets={json.dumps([DEMO_SCALING_TARGET])}",
            f"alerting.rule_files={json.dumps([str(DEMO_RULES)])}",
        ],
    )
    new = with_demo_setup(load_checked_settings(None, None))
    assert isinstance(new.scaling.targets[0], ScalingTargetSettings)
    assert new.scaling.targets == old.scaling.targets == [demo_scaling_target()]
    assert new.alerting.rule_files == old.alerting.rule_files
    assert new.model_dump() == old.model_dump()


def test_the_demo_setup_leaves_a_configured_target_and_rules_alone() -> None:
    path, _ = ensure_demo_config()
    configured = load_checked_settings(path)  # the demo file: a target and rule files of its own
    assert with_demo_setup(configured) is configured

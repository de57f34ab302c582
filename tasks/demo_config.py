"""The ``cortex-perf.yaml`` that ``cortex-perf run --demo`` leaves in a project that has none.

Why a file and not only demo fallbacks inside the pipeline: after the demo people try the other
commands (``scale plan``, ``alerts run``) and start the deployments; with nothing configured those
failed ("no scaling targets configured") or completed doing nothing. The written file is the
demo's own setup made visible and editable: the demo rules, the demo web tier as a dry-run scaling
target, and a commented receiver example for the one thing the demo cannot guess (where to send
alerts). A file that exists is never replaced: it is the user's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tasks.config import ScalingSettings, ScalingTargetSettings, Settings
from tasks.config.project import CONFIG_FILE, project_root
from tasks.config.settings import config_path
from tasks.scaling.settings_check import scaling_settings_problems, with_typed_actuators

__all__ = [
    "DEMO_RULES",
    "DEMO_SCALING_TARGET",
    "demo_config_text",
    "demo_scaling_target",
    "ensure_demo_config",
    "receiver_hint",
    "with_demo_setup",
]

#: The demo's alert rules (Watchdog, CPU, latency, GPU idle, source down, scaling emergency).
DEMO_RULES = Path(__file__).resolve().parents[1] / "data" / "examples" / "alerting" / "demo-rules.yml"

#: The demo web tier: its request rate, 40 req/s per replica, dry-run through the ``log`` actuator
#: (assumed to run 8 replicas).
DEMO_SCALING_TARGET: dict[str, Any] = {
    "name": "demo-web",
    "capacity_per_unit": 40,
    "provisioning_delay_s": 120,
    "interval_s": 120,
    "cost_per_unit_hour": 0.1,
    "rails": {"min_units": 2, "max_units": 20},
    "metric": {"selector": 'http_requests_per_second{source="demo"}', "agg": "avg", "combine": "sum", "step": "1m"},
    "actuator": {"kind": "log", "initial": 8},
}


def demo_scaling_target() -> ScalingTargetSettings:
    """The demo web tier as a checked target, its actuator config typed the way ``check_settings``
    leaves a configured one (so the scale stage cannot tell it from a target in the file)."""
    scaling = ScalingSettings(targets=[ScalingTargetSettings.model_validate(DEMO_SCALING_TARGET)])
    problems = scaling_settings_problems(scaling)
    if problems:  # pragma: no cover - the demo target is ours; a failure here is a bug in this file
        raise ValueError("the demo scaling target is invalid: " + "; ".join(problems))
    return with_typed_actuators(scaling).targets[0]


def with_demo_setup(settings: Settings) -> Settings:
    """``settings`` plus the demo's own setup where the configuration has none: the demo web tier as
    the scaling target and the demo rules as the rule files.

    Why here and typed: without a config (``run --demo`` writes one; a pipeline called directly may
    have none) the demo still decides for its web tier and evaluates its rules; the pipeline hands
    these settings to its stages instead of re-reading the config with JSON overrides."""
    update: dict[str, Any] = {}
    if not settings.scaling.targets:
        update["scaling"] = settings.scaling.model_copy(update={"targets": [demo_scaling_target()]})
    if not settings.alerting.rule_files:
        update["alerting"] = settings.alerting.model_copy(update={"rule_files": [str(DEMO_RULES)]})
    return settings.model_copy(update=update) if update else settings


_RECEIVER_EXAMPLE = """\
# Who hears about alerts: nobody yet. Create alerting.yml next to this file (Alertmanager's
# route/receivers; receivers are Apprise URLs), e.g.
#
#   route: {receiver: team, group_by: [alertname]}
#   receivers:
#     - name: team
#       apprise: ["slack://TokenA/TokenB/TokenC/#alerts"]
#       # or e-mail: apprise: ["mailtos://user:app-password@smtp.example.com?to=oncall@example.com"]
#
# then uncomment the next line and try it: cortex-perf alerts test-notify team
# notify_config: alerting.yml"""


def _rules_path(root: Path) -> str:
    """The demo rules as the file should name them: relative when under the project, else absolute."""
    try:
        return str(DEMO_RULES.relative_to(root.resolve()))
    except ValueError:
        return str(DEMO_RULES)


def demo_config_text(root: Path, now: datetime | None = None) -> str:
    """The demo configuration for a project rooted at ``root`` (YAML with comments)."""
    stamp = f"{(now or datetime.now(UTC)):%Y-%m-%d}"
    scaling = yaml.safe_dump(
        {"scaling": {"mode": "dry-run", "targets": [DEMO_SCALING_TARGET]}}, sort_keys=False, width=1000
    )
    receiver = "\n".join(f"  {line}" for line in _RECEIVER_EXAMPLE.splitlines())
    return (
        f"# cortex-perf configuration written by `cortex-perf run --demo` on {stamp}. It is yours now:\n"
        "# edit it freely, the demo never writes over it. Every field is optional; cortex-perf.example.yaml\n"
        "# lists them all with their defaults. Relative paths are relative to this file's folder.\n"
        "# Check it with `cortex-perf config check`.\n\n"
        "alerting:\n"
        "  rule_files:                       # Prometheus rule files (globs allowed)\n"
        f"    - {_rules_path(root)}\n"
        f"{receiver}\n\n"
        '# The demo web tier (series labelled source="demo"), decided every 2 minutes, dry-run: replace\n'
        "# it with your own targets (see cortex-perf.example.yaml) and an actuator that applies.\n"
        f"{scaling}"
    )


def ensure_demo_config(explicit: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """``(config file, written)``: the config in force when there is one (left untouched, ``False``),
    else the demo configuration written at the named path or the project root's ``cortex-perf.yaml``.

    Written with exclusive create, so a file that appears meanwhile is not replaced either."""
    path = config_path(explicit)
    if path is None:
        path = project_root() / CONFIG_FILE
    if path.exists():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(demo_config_text(project_root(path)))
    except FileExistsError:
        return path, False
    return path, True


def receiver_hint(config: Path) -> list[str]:
    """The demo's last lines: how to get its alerts in Slack or by e-mail (plain text, no markup)."""
    return [
        "Alerts are evaluated, but nobody is told yet. To get them in Slack or by e-mail:",
        '  1. create alerting.yml with a receiver: apprise: ["slack://TokenA/TokenB/TokenC/#alerts"]',
        '     or apprise: ["mailtos://user:app-password@smtp.example.com?to=you@example.com"] (e-mail)',
        f"  2. uncomment `notify_config: alerting.yml` in {config} (the example is there)",
        "  3. check it: cortex-perf alerts test-notify team",
    ]

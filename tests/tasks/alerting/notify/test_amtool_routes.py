"""Oracle test: Alertmanager's own ``amtool config routes test`` (0.25) must name the same receivers,
in the same order, as our router — for a non-trivial tree and many seeded random label sets.

The seed and case count come from ``AMTOOL_ROUTES_SEED`` / ``AMTOOL_ROUTES_CASES`` so a disagreement
can be replayed; amtool is run once per label set (it has no batch mode), ~10 ms each.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tasks.alerting.notify.notify_config import alertmanager_config, load_notify_config, parse_notify_config
from tasks.alerting.notify.routing import receivers_for

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
SEED = int(os.environ.get("AMTOOL_ROUTES_SEED", "20240425"))
CASES = int(os.environ.get("AMTOOL_ROUTES_CASES", "300"))
EXAMPLE = Path(__file__).resolve().parents[4] / "data" / "examples" / "alerting" / "alerting.yml"

TREE = """
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['team="db"']
      receiver: db
      continue: true
      routes:
        - matchers: ['severity=~"crit|page"', 'env!="dev"']
          receiver: db-pager
        - match_re: {service: "pg.*|mysql"}
          receiver: db-sql
          continue: true
        - matchers: ['env!~"prod|staging"']
          receiver: db-nonprod
    - match: {team: web}
      receiver: web
      group_by: ['...']
      routes:
        - matchers: ['severity="crit"']
          continue: true
        - matchers: ['service=~".*api.*"']
          receiver: web-api
    - matchers: ['severity=~"crit|page"', 'service!~"pg.*"']
      receiver: pager
      continue: true
    - matchers: ['env=""']
      receiver: no-env
      continue: true
    - matchers: ['alertname=~"Disk.+"']
      receiver: disk
      routes:
        - matchers: ['env="prod"', 'team!="web"']
          receiver: disk-prod
          continue: true
        - matchers: ['team=~"db|web"']
          receiver: disk-team
    - matchers: ['team="ops"']
      receiver: ops
"""

RECEIVERS = [
    "default",
    "db",
    "db-pager",
    "db-sql",
    "db-nonprod",
    "web",
    "web-api",
    "pager",
    "no-env",
    "disk",
    "disk-prod",
    "disk-team",
    "ops",
]

VALUES = {
    "alertname": ["DiskFull", "Disk", "DiskLatency", "HighCPU", "Down"],
    "team": ["db", "web", "ops", "dbx", "", "DB"],
    "severity": ["crit", "page", "warning", "critical", ""],
    "env": ["prod", "staging", "dev", "test", "", "production"],
    "service": ["pg", "pgbouncer", "mysql", "api", "webapi", "frontend", "pg-api", ""],
}


def _config_text() -> str:
    recv = "\n".join(f"  - name: {r}\n    apprise: ['json://127.0.0.1:9/{r}']" for r in RECEIVERS)
    return TREE + "receivers:\n" + recv + "\n"


def _label_sets(seed: int, n: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        labels = {}
        for name, values in VALUES.items():
            if rng.random() < 0.8:
                v = rng.choice(values)
                if v:  # an empty value is the same as a missing label
                    labels[name] = v
        out.append(labels)
    return out


def _amtool_receivers(config_file: Path, labels: dict[str, str]) -> list[str]:
    args = [f'{k}="{v}"' for k, v in sorted(labels.items())]
    if not args:
        args = ['nolabel=""']  # amtool needs at least one label; an empty one equals a missing one
    proc = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={config_file}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"amtool failed for {labels}: {proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return lines[-1].split(",")


def test_amtool_is_installed():
    out = subprocess.run([AMTOOL, "--version"], capture_output=True, text=True, check=True)
    assert "0.2" in out.stdout + out.stderr


def test_router_agrees_with_amtool_on_random_label_sets(tmp_path):
    cfg = parse_notify_config(_config_text(), "routes.yml")
    am_file = tmp_path / "am.yml"
    am_file.write_text(yaml.safe_dump(alertmanager_config(cfg)))
    check = subprocess.run([AMTOOL, "check-config", str(am_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    cases = _label_sets(SEED, CASES)
    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(pool.map(lambda ls: _amtool_receivers(am_file, ls), cases))
    disagreements = []
    reached: set[str] = set()
    multi = 0
    for labels, expected in zip(cases, theirs, strict=True):
        ours = receivers_for(cfg.route, labels)
        reached.update(ours)
        multi += len(ours) > 1
        if ours != expected:
            disagreements.append((labels, ours, expected))
    assert not disagreements, (
        f"seed={SEED} cases={CASES}: {len(disagreements)} disagreements, first: {disagreements[:3]}"
    )
    # The generator must exercise the tree, or agreement means little.
    assert reached == set(RECEIVERS), sorted(set(RECEIVERS) - reached)
    assert multi > CASES // 10


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"team": "db", "severity": "crit", "env": "prod", "service": "pg"}, ["db-pager"]),
        ({"team": "db", "service": "mysql", "env": "prod"}, ["db-sql"]),
        ({"team": "db", "service": "mysql", "env": "dev"}, ["db-sql", "db-nonprod"]),
        ({"alertname": "HighCPU", "severity": "page", "team": "ops"}, ["pager", "no-env", "ops"]),
        ({"team": "web", "severity": "crit", "service": "webapi", "env": "prod"}, ["web", "web-api"]),
        ({"alertname": "Disk", "env": "prod"}, ["default"]),
        ({"alertname": "DiskFull", "env": "prod", "team": "db"}, ["db", "disk-prod", "disk-team"]),
    ],
)
def test_hand_worked_cases_match_amtool(tmp_path, labels, expected):
    """Cases worked out by hand from route.go's rules; amtool confirms each."""
    cfg = parse_notify_config(_config_text(), "routes.yml")
    am_file = tmp_path / "am.yml"
    am_file.write_text(yaml.safe_dump(alertmanager_config(cfg)))
    assert receivers_for(cfg.route, labels) == expected
    assert _amtool_receivers(am_file, labels) == expected


def test_example_config_passes_amtool_check_config(tmp_path):
    cfg = load_notify_config(EXAMPLE)
    am_file = tmp_path / "example-am.yml"
    am_file.write_text(yaml.safe_dump(alertmanager_config(cfg)))
    check = subprocess.run([AMTOOL, "check-config", str(am_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "5 receivers" in check.stdout and "1 inhibit rules" in check.stdout
    labels = {"alertname": "ReplicationLag", "team": "db", "env": "prod", "severity": "page"}
    assert receivers_for(cfg.route, labels) == _amtool_receivers(am_file, labels) == ["pager", "db-lag"]

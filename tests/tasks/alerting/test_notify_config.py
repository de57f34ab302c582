from __future__ import annotations

from pathlib import Path

import pytest

from tasks.alerting.notify_config import NotifyConfigError, load_notify_config, parse_notify_config
from tasks.alerting.routing import receivers_for

EXAMPLE = Path(__file__).resolve().parents[3] / "data" / "examples" / "alerting" / "alerting.yml"

GOOD = """\
route:
  receiver: ops
  routes:
    - matchers: ['team="db"']
      receiver: db
receivers:
  - name: ops
    apprise: ["json://127.0.0.1:9/ops"]
    send_resolved: false
  - name: db
    apprise_config: apprise.yml
    tag: db
escalation_policies:
  - name: default
    steps: [{after: 15m, receiver: db}]
flapping: {window: 30m}
"""


def test_loads_sections_and_keeps_receivers_raw():
    cfg = parse_notify_config(GOOD, "n.yml")
    assert cfg.receivers == {
        "ops": {"apprise": ["json://127.0.0.1:9/ops"], "send_resolved": False},
        "db": {"apprise_config": "apprise.yml", "tag": "db"},
    }
    assert receivers_for(cfg.route, {"team": "db"}) == ["db"]
    assert cfg.escalation_policies == [{"name": "default", "steps": [{"after": "15m", "receiver": "db"}]}]
    assert cfg.flapping == {"window": "30m"} and cfg.rate_limits is None
    # later validators of the raw sections can point into the file
    assert cfg.error(("escalation_policies", 0, "steps", 0, "receiver"), "bad") == "n.yml:15:36: bad"


def test_example_config_loads():
    cfg = load_notify_config(EXAMPLE)
    assert set(cfg.receivers) == {"ops", "pager", "db", "db-lag", "web"}
    assert set(cfg.time_intervals) == {"offhours", "business-hours"} and len(cfg.inhibit_rules) == 1
    assert receivers_for(cfg.route, {"severity": "critical", "service": "api"}) == ["pager", "web"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("receiver: db\n", "receiver: dbx\n", 1), "n.yml:5:17: undefined receiver 'dbx' used in route"),
        (GOOD.replace("  - name: db\n", "  - name: ops\n"), "n.yml:10:11: receiver name 'ops' is not unique"),
        (GOOD.replace("['team=\"db\"']", "['team=~\"(\"']"), "n.yml:4:26: label 'team': invalid regular expression"),
        (GOOD + "silences: []\n", "n.yml:17:1: unknown section 'silences'"),
        (GOOD.replace("    tag: db\n", "    tag: db\n    tag: x\n"), "n.yml:13:5: field 'tag' already set"),
        (
            GOOD.replace("  receiver: ops\n", "  receiver: ops\n  group_wait: soon\n", 1),
            'n.yml:3:15: not a valid duration string: "soon"',
        ),
        ("route: [\n", "n.yml:2:1: YAML syntax error"),
        ("receivers: []\n", "n.yml:1:1: route: no route provided in config"),
    ],
)
def test_errors_carry_file_line_col(text, expected):
    with pytest.raises(NotifyConfigError) as exc:
        parse_notify_config(text, "n.yml")
    assert any(e.startswith(expected) for e in exc.value.errors), exc.value.errors


def test_collects_errors_from_independent_sections():
    text = GOOD.replace("receiver: db\n", "receiver: nope\n", 1) + (
        "inhibit_rules:\n  - equal: [bad-name]\ntime_intervals:\n  - name: t\n    time_intervals: [{weekdays: [x]}]\n"
    )
    with pytest.raises(NotifyConfigError) as exc:
        parse_notify_config(text, "n.yml")
    msgs = exc.value.errors
    assert len(msgs) == 3, msgs
    assert any("undefined receiver" in m for m in msgs) and any("invalid label name" in m for m in msgs)
    assert any("not a valid weekday" in m for m in msgs)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(NotifyConfigError, match="cannot read"):
        load_notify_config(tmp_path / "nope.yml")

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.alerting.notify.notify_config import NotifyConfigError, load_notify_config, parse_notify_config
from tasks.alerting.notify.routing import receivers_for

EXAMPLE = Path(__file__).resolve().parents[4] / "data" / "examples" / "alerting" / "alerting.yml"

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
    apprise: ["json://127.0.0.1:9/db"]
    format: text
escalation:
  ops:
    name: default
    steps: [{after: 0m, receiver: ops}, {after: 15m, receiver: db}]
flapping: {window: 30m}
"""


def test_loads_sections_receivers_and_our_extensions():
    cfg = parse_notify_config(GOOD, "n.yml")
    assert cfg.receivers == {
        "ops": {"apprise": ["json://127.0.0.1:9/ops"], "send_resolved": False},
        "db": {"apprise": ["json://127.0.0.1:9/db"], "format": "text"},
    }
    assert cfg.parsed_receivers["ops"].send_resolved is False and cfg.parsed_receivers["db"].format == "text"
    assert receivers_for(cfg.route, {"team": "db"}) == ["db"]
    policy = cfg.dispatch.escalation["ops"]
    assert [(s.after.total_seconds(), s.receiver) for s in policy.steps] == [(0, "ops"), (900, "db")]
    assert cfg.dispatch.flapping.window.total_seconds() == 1800
    assert cfg.error(("escalation", "ops", "steps", 1, "receiver"), "bad") == "n.yml:16:64: bad"


def test_receivers_and_extensions_are_validated_with_their_place():
    with pytest.raises(NotifyConfigError) as e:
        parse_notify_config(GOOD.replace("    format: text\n", "    format: pdf\n"), "n.yml")
    assert e.value.errors[0].startswith("n.yml:12:13: ") and "format" in e.value.errors[0]
    with pytest.raises(NotifyConfigError) as e:
        parse_notify_config(GOOD.replace("receiver: db}]", "receiver: nobody}]"), "n.yml")
    assert "escalation step receiver 'nobody' is not a defined receiver" in e.value.errors[0]
    with pytest.raises(NotifyConfigError) as e:
        parse_notify_config(GOOD.replace("flapping: {window: 30m}", "flapping: {window: soon}"), "n.yml")
    assert e.value.errors[0].startswith("n.yml:17:1: ") and "window" in e.value.errors[0]


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
        (GOOD + "silences: []\n", "n.yml:18:1: unknown section 'silences'"),
        (
            GOOD.replace("    format: text\n", "    format: text\n    format: x\n"),
            "n.yml:13:5: field 'format' already set",
        ),
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

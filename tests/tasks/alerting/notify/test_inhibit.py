from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.inhibit import inhibited, inhibited_by, parse_inhibit_rule, parse_inhibit_rules
from tasks.alerting.notify.matchers import ConfigPathError

T = datetime(2024, 4, 25, 12, tzinfo=UTC)
RULE = parse_inhibit_rule(
    {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["cluster"]}
)


def alert(status: str = "firing", ends_at: datetime | None = None, **labels: str) -> Alert:
    return Alert(labels=dict(labels), status=status, ends_at=ends_at)  # type: ignore[arg-type]


def test_firing_source_inhibits_target_with_equal_labels():
    crit = alert(alertname="Down", severity="critical", cluster="a")
    warn_a = alert(alertname="Slow", severity="warning", cluster="a")
    warn_b = alert(alertname="Slow", severity="warning", cluster="b")
    assert inhibited([crit, warn_a, warn_b], [RULE], T) == {warn_a.fingerprint}
    assert inhibited_by([crit, warn_a], [RULE], T) == {warn_a.fingerprint: [crit.fingerprint]}


def test_missing_equal_label_on_both_counts_as_equal():
    crit = alert(alertname="Down", severity="critical")
    warn = alert(alertname="Slow", severity="warning")
    warn_c = alert(alertname="Slow", severity="warning", cluster="a")
    assert inhibited([crit, warn, warn_c], [RULE], T) == {warn.fingerprint}


def test_only_unresolved_sources_inhibit():
    resolved = alert(status="resolved", alertname="Down", severity="critical", cluster="a")
    ended = alert(ends_at=T - timedelta(seconds=1), alertname="Down2", severity="critical", cluster="a")
    ending_later = alert(ends_at=T + timedelta(minutes=5), alertname="Down3", severity="critical", cluster="a")
    warn = alert(alertname="Slow", severity="warning", cluster="a")
    assert inhibited([resolved, ended, warn], [RULE], T) == set()
    assert inhibited([ending_later, warn], [RULE], T) == {warn.fingerprint}


def test_alert_matching_both_sides_does_not_inhibit_itself_or_its_kind():
    rule = parse_inhibit_rule(
        {"source_matchers": ['alertname=~"Node.*"'], "target_matchers": ['alertname=~".+"'], "equal": ["instance"]}
    )
    node_down = alert(alertname="NodeDown", instance="i1")
    node_slow = alert(alertname="NodeSlow", instance="i1")
    disk = alert(alertname="DiskFull", instance="i1")
    # NodeDown/NodeSlow match both sides: neither inhibits the other (nor itself); DiskFull is inhibited
    assert inhibited([node_down], [rule], T) == set()
    assert inhibited([node_down, node_slow, disk], [rule], T) == {disk.fingerprint}
    assert inhibited_by([node_down, node_slow, disk], [rule], T)[disk.fingerprint] == sorted(
        [node_down.fingerprint, node_slow.fingerprint]
    )


def test_legacy_fields_and_errors():
    (rule,) = parse_inhibit_rules(
        [{"source_match": {"alertname": "Down"}, "target_match_re": {"severity": "warn.*"}, "equal": ["dc"]}]
    )
    assert inhibited(
        [alert(alertname="Down", dc="x"), w := alert(alertname="X", severity="warning", dc="x")], [rule], T
    ) == {w.fingerprint}
    with pytest.raises(ConfigPathError, match=r"inhibit_rules\[0\]\.equal\[0\]: invalid label name"):
        parse_inhibit_rules([{"source_matchers": ['a="b"'], "equal": ["bad-name"]}])
    with pytest.raises(ConfigPathError, match=r"inhibit_rules\[1\]\.source_matchers\[0\]"):
        parse_inhibit_rules([{}, {"source_matchers": ["a=~'("]}])
    with pytest.raises(ConfigPathError, match="unknown field 'source'"):
        parse_inhibit_rules([{"source": []}])


@pytest.mark.timeout(30)
def test_catastrophic_regex_matchers_inhibit_in_linear_time():
    """Source/target matchers with ``(a*)*c`` against 40-character values backtracked for hours."""
    long = "a" * 40
    rule = parse_inhibit_rule(
        {"source_matchers": ['host=~"(a*)*c"'], "target_matchers": ['host!~"(a|aa)+c"'], "equal": ["dc"]}
    )
    src = alert(alertname="Down", host=long + "c", dc="x")
    tgt = alert(alertname="Slow", host="a" * 60, dc="x")
    not_src = alert(alertname="Down2", host=long, dc="y")
    other = alert(alertname="Slow2", host="a" * 60, dc="y")
    assert inhibited([src, tgt, not_src, other], [rule], T) == {tgt.fingerprint}

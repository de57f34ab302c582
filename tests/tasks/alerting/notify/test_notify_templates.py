"""Default titles/bodies per format, HTML escaping, the possible-duplicate note, and custom
sandboxed templates with Alertmanager's data."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.notify_templates import (
    Notification,
    NotifyTemplateError,
    as_notification,
    render,
    template_data,
)
from tasks.alerting.notify.receivers import parse_receiver

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _alerts() -> tuple[Alert, ...]:
    return (
        Alert(
            {"alertname": "HighCPU", "env": "prod", "severity": "critical", "instance": "web-1"},
            {"summary": "CPU at 97%", "description": "web-1 is hot", "runbook_url": "https://runbooks.example.com/cpu"},
            "firing",
            T0,
            value=0.97,
        ),
        Alert(
            {"alertname": "HighCPU", "env": "prod", "severity": "critical", "instance": "web-2"},
            {"summary": "CPU at 95%"},
            "firing",
            T0,
        ),
        Alert(
            {"alertname": "HighCPU", "env": "prod", "severity": "critical", "instance": "web-3"},
            {"summary": "CPU back to normal"},
            "resolved",
            T0,
            T1,
        ),
    )


def _notification(reason: str = "initial", alerts: tuple[Alert, ...] | None = None) -> Notification:
    return Notification(
        receiver="r",
        group_key='{}:{alertname="HighCPU"}',
        group_labels={"alertname": "HighCPU"},
        alerts=alerts if alerts is not None else _alerts(),
        reason=reason,
        notes=("flapping held for 10m",),
    )


def _rec(**kw):
    return parse_receiver({"name": "r", "apprise": "json://127.0.0.1:9/x", **kw})


def test_markdown_default_reads_like_alertmanager():
    out = render(_notification(), _rec())
    assert out.format == "markdown"
    assert out.title == "[FIRING:2] HighCPU (prod critical)"
    body = out.body
    assert body.startswith("🔥 **FIRING** (2 firing, 1 resolved)")
    for text in (
        "**Firing**",
        "**Resolved**",
        "CPU at 97%",
        "web-1 is hot",
        "`instance=web-1`",
        "Since 2024-05-01 12:00:00 UTC",
        "resolved 2024-05-01 12:30:00 UTC",
        "[Runbook](https://runbooks.example.com/cpu)",
        "flapping held for 10m",
    ):
        assert text in body, text
    assert body.index("**Firing**") < body.index("web-2") < body.index("**Resolved**") < body.index("web-3")
    assert "possible duplicate" not in body.lower()


def test_resolved_and_reason_in_title():
    resolved = tuple(a for a in _alerts() if a.resolved)
    out = render(_notification("repeat", resolved), _rec())
    assert out.title == "[RESOLVED] HighCPU (prod web-3 critical) [repeat]"
    assert out.body.startswith("✅ **RESOLVED**")


def test_html_default_is_escaped_and_links_only_http():
    evil = Alert(
        {"alertname": "Bad", "instance": "<script>alert(1)</script>"},
        {"summary": "a & b <b>", "runbook_url": "javascript:alert(1)"},
        "firing",
        T0,
    )
    rec = _rec(format="html")
    out = render(_notification(alerts=(evil,)), rec)
    assert "<script>" not in out.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.body
    assert "a &amp; b &lt;b&gt;" in out.body
    assert "javascript:" not in out.body
    assert out.title == "[FIRING:1] HighCPU (<script>alert(1)</script>)"  # a subject is text, not HTML
    ok = render(_notification(), rec).body
    assert '<a href="https://runbooks.example.com/cpu">Runbook</a>' in ok
    assert ok.startswith("<html>") and "<h3>Resolved</h3>" in ok


def test_text_default_has_no_markup():
    out = render(_notification(), _rec(format="text"))
    assert "**" not in out.body and "<" not in out.body and "`" not in out.body
    assert "Runbook: https://runbooks.example.com/cpu" in out.body
    assert "Labels: alertname=HighCPU, env=prod, instance=web-1, severity=critical" in out.body


def test_possible_duplicate_is_said_in_title_and_body_even_by_custom_templates():
    for rec in (_rec(), _rec(format="html"), _rec(format="text")):
        out = render(_notification(), rec, possible_duplicate=True)
        assert out.title.startswith("(possible duplicate) [FIRING:2]")
        assert "possible duplicate" in out.body.lower()
    custom = render(_notification(), _rec(title="{{ status }}", body="just {{ status }}"), possible_duplicate=True)
    assert custom.title == "(possible duplicate) firing"
    assert custom.body.startswith("Possible duplicate:") and custom.body.rstrip().endswith("just firing")


def test_custom_templates_see_alertmanager_data():
    rec = _rec(
        title="{{ receiver }}/{{ status }}/{{ alerts.firing | length }}/{{ alerts.resolved | length }}",
        body=(
            "{{ group_labels.alertname }}|{{ common_labels | dictsort }}|{{ common_annotations }}|{{ reason }}|"
            "{{ notes[0] }}|{% for a in alerts.firing %}{{ a.labels.instance }}@{{ a.starts_at.isoformat() }} "
            "{% endfor %}|{{ alerts[2].ends_at.isoformat() }}|{{ alerts[0].fingerprint }}"
        ),
    )
    out = render(_notification(), rec)
    assert out.title == "r/firing/2/1"
    fp = _alerts()[0].fingerprint
    assert out.body.strip() == (
        "HighCPU|[('alertname', 'HighCPU'), ('env', 'prod'), ('severity', 'critical')]|{}|initial|"
        "flapping held for 10m|web-1@2024-05-01T12:00:00+00:00 web-2@2024-05-01T12:00:00+00:00 |"
        f"2024-05-01T12:30:00+00:00|{fp}"
    )
    data = template_data(_notification(), "r")
    assert data["common_annotations"] == {}
    assert template_data(_notification(alerts=_alerts()[:1]), "r")["common_annotations"]["summary"] == "CPU at 97%"


def test_html_custom_body_autoescapes():
    rec = _rec(format="html", body="<p>{{ alerts[0].labels.instance }}</p>")
    out = render(_notification(alerts=(Alert({"alertname": "X", "instance": "<i>"}, status="firing"),)), rec)
    assert out.body.strip() == "<p>&lt;i&gt;</p>"


def test_undefined_variable_names_receiver_and_template():
    rec = _rec(body="{% for a in alerts %}{{ a.lables }}{% endfor %}")
    with pytest.raises(NotifyTemplateError, match=r"receiver 'r': body template: .*lables"):
        render(_notification(), rec)
    with pytest.raises(NotifyTemplateError, match=r"receiver 'r': title template: 'nope' is undefined"):
        render(_notification(), _rec(title="{{ nope }}"))


def test_sandbox_blocks_python_internals():
    rec = _rec(body="{{ alerts.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(NotifyTemplateError, match="receiver 'r': body template"):
        render(_notification(), rec)


def test_as_notification_accepts_router_objects_and_names_bad_fields():
    obj = SimpleNamespace(
        receiver="r",
        group_key="g",
        group_labels={"alertname": "X"},
        alerts=[{"labels": {"alertname": "X"}, "status": "resolved"}],
        reason="update",
        notes="one note",
    )
    n = as_notification(obj)
    assert n.alerts[0].resolved and n.notes == ("one note",) and n.reason == "update"
    assert as_notification(n.to_dict()) == n
    with pytest.raises(ValueError, match="notification.group_key"):
        as_notification({"receiver": "r", "alerts": []})
    with pytest.raises(ValueError, match="notification.alerts: a notification needs at least one alert"):
        as_notification({"receiver": "r", "group_key": "g", "alerts": []})
    with pytest.raises(ValueError, match=r"notification.alerts\[0\]: alert status"):
        as_notification({"receiver": "r", "group_key": "g", "alerts": [{"labels": {}, "status": "odd"}]})

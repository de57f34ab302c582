"""E-mail delivery for real: Apprise's ``mailto://`` plugin to an ``aiosmtpd`` server on
127.0.0.1 (plain SMTP: no TLS, no auth — an explicit port on ``mailto://`` means insecure mode)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.message import Message

from tasks.alerting.model import Alert
from tasks.alerting.notify.delivery import deliver_due, enqueue, list_outbox
from tasks.alerting.notify.notify_templates import Notification
from tasks.alerting.notify.receivers import parse_receiver
from tasks.state import State

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _parts(msg: Message) -> dict[str, str]:
    out = {}
    for part in msg.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out[part.get_content_type()] = payload.decode(part.get_content_charset() or "utf-8")
    return out


def _note(n: int, instance: str = "db1") -> Notification:
    alert = Alert(
        {"alertname": "ReplicaLag", "severity": "critical", "instance": instance},
        {"summary": f"lag is {n}s", "runbook_url": "https://runbooks.example.com/lag"},
        "firing",
        T0,
    )
    return Notification("mail", f"g{n}", {"alertname": "ReplicaLag"}, (alert,), "initial")


def test_html_mail_through_local_smtp_without_throttling(smtp, tmp_path):
    box, port = smtp
    state = State(str(tmp_path / "state.duckdb"))
    rec = parse_receiver(
        {"name": "mail", "apprise": f"mailto://127.0.0.1:{port}?from=alerts@example.com&to=oncall@example.com"}
    )
    assert rec.format == "html" and rec.send_resolved is False  # Alertmanager's email defaults
    enqueue(_note(1, instance="<db&1>"), rec, T0, state=state)
    enqueue(_note(2), rec, T0, state=state)
    enqueue(_note(3), rec, T0, state=state)
    start = time.monotonic()
    results = deliver_due(T0, {"mail": rec}, state=state)
    elapsed = time.monotonic() - start
    assert [r.status for r in results] == ["sent", "sent", "sent"]
    assert elapsed < 3.0, f"three mails took {elapsed:.1f}s: Apprise's 5.5 s throttle is not off"
    assert len(box.messages) == 3
    sender, rcpts, msg = next(m for m in box.messages if "lag is 1s" in _parts(m[2]).get("text/html", ""))
    assert sender == "alerts@example.com" and rcpts == ["oncall@example.com"]
    assert msg["Subject"] == "[FIRING:1] ReplicaLag (<db&1> critical)"
    html_part = _parts(msg)["text/html"]
    assert "&lt;db&amp;1&gt;" in html_part and "<db&1>" not in html_part
    assert '<a href="https://runbooks.example.com/lag">Runbook</a>' in html_part
    assert "<h3>Firing</h3>" in html_part


def test_refused_mail_is_retried(smtp, tmp_path):
    box, port = smtp
    box.refuse = True
    state = State(str(tmp_path / "state.duckdb"))
    rec = parse_receiver(
        {
            "name": "mail",
            "apprise": f"mailto://127.0.0.1:{port}?from=alerts@example.com&to=oncall@example.com",
            "retry_backoff": "1m",
        }
    )
    enqueue(_note(1), rec, T0, state=state)
    [r] = deliver_due(T0, {"mail": rec}, state=state)
    assert r.status == "failed" and r.error and 'Sending email to "oncall@example.com" failed' in r.error
    box.refuse = False
    [r] = deliver_due(r.next_attempt_at, {"mail": rec}, state=state)
    assert r.status == "sent" and len(box.messages) == 1
    assert list_outbox(state)[0].attempts == 2

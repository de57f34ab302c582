"""Receiver parsing: defaults (Alertmanager's send_resolved per integration, format by scheme),
errors that name the receiver and field, and URLs that never print whole."""

from __future__ import annotations

import pytest

from tasks.alerting.notify.receivers import ReceiverError, parse_receiver, parse_receivers, redact_text, redact_url

SECRET = "hunter2secret"


def test_defaults_follow_alertmanager_and_scheme():
    hook = parse_receiver({"name": "hook", "apprise": "json://127.0.0.1:9000/alerts"})
    assert hook.urls == ("json://127.0.0.1:9000/alerts",)
    assert hook.send_resolved is True  # webhook_configs default
    assert hook.format == "markdown"
    assert (hook.max_retries, hook.retry_backoff_s, hook.retry_backoff_max_s) == (5, 30.0, 3600.0)

    mail = parse_receiver({"name": "mail", "apprise": ["mailto://127.0.0.1:25?from=a@example.com&to=b@example.com"]})
    assert mail.format == "html"
    assert mail.send_resolved is False  # email_configs default

    slack = parse_receiver({"name": "slack", "apprise": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"})
    assert slack.send_resolved is False  # slack_configs default
    assert slack.format == "markdown"

    explicit = parse_receiver(
        {
            "name": "x",
            "apprise": "mailto://127.0.0.1:25?from=a@example.com&to=b@example.com",
            "send_resolved": True,
            "format": "text",
            "max_retries": 2,
            "retry_backoff": "5s",
            "retry_backoff_max": "1m",
        }
    )
    assert (explicit.send_resolved, explicit.format, explicit.max_retries) == (True, "text", 2)
    assert [explicit.backoff_s(k) for k in (1, 2, 3, 4, 5)] == [5.0, 10.0, 20.0, 40.0, 60.0]


def test_apprise_config_with_tags(tmp_path):
    cfg = tmp_path / "apprise.yml"
    cfg.write_text("urls:\n  - json://127.0.0.1:9/a:\n      tag: oncall\n")
    rec = parse_receiver({"name": "cfg", "apprise_config": "apprise.yml", "tag": "oncall"}, base_dir=tmp_path)
    assert rec.config_path == str(cfg)
    assert rec.tags == ("oncall",)
    assert rec.send_resolved is True


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"name": "r"}, "apprise", "exactly one of"),
        ({"name": "r", "apprise": "json://h.example.com/x", "apprise_config": "f.yml"}, "apprise", "exactly one of"),
        ({"name": "r", "apprise": "json://h.example.com/x", "format": "pdf"}, "format", "pdf"),
        ({"name": "r", "apprise": "json://h.example.com/x", "max_retries": -1}, "max_retries", "-1"),
        ({"name": "r", "apprise": "json://h.example.com/x", "max_retries": True}, "max_retries", "True"),
        ({"name": "r", "apprise": "json://h.example.com/x", "retry_backoff": "soon"}, "retry_backoff", "soon"),
        ({"name": "r", "apprise": "json://h.example.com/x", "send_resolved": "yes"}, "send_resolved", "yes"),
        ({"name": "r", "apprise": "json://h.example.com/x", "colour": "red"}, "colour", "unknown field"),
        ({"name": "r", "apprise": "json://h.example.com/x", "tag": "a"}, "tag", "apprise_config"),
        ({"name": "r", "apprise_config": "/nonexistent/apprise.yml"}, "apprise_config", "does not exist"),
        ({"name": "r", "apprise": [1]}, "apprise", "list of strings"),
        ({"name": "r", "apprise": "json://h.example.com/x", "body": "{% if %}"}, "body template", "line 1"),
        ({"name": "r", "apprise": "json://h.example.com/x", "title": 3}, "title", "template string"),
    ],
)
def test_errors_name_receiver_and_field(raw, field, fragment):
    with pytest.raises(ValueError) as ei:
        parse_receiver(raw)
    msg = str(ei.value)
    assert "receiver 'r'" in msg and f"{field}" in msg and fragment in msg, msg


def test_bad_url_error_never_prints_the_secret():
    with pytest.raises(ReceiverError) as ei:
        parse_receiver({"name": "r", "apprise": ["json://h.example.com/ok", f"nosuchscheme://bot:{SECRET}@host/x"]})
    msg = str(ei.value)
    assert "apprise[1]" in msg and "receiver 'r'" in msg
    assert SECRET not in msg and "bot:****@" in msg


def test_bad_name_and_duplicates():
    with pytest.raises(ReceiverError, match="name"):
        parse_receiver({"name": "", "apprise": "json://h.example.com/x"})
    with pytest.raises(ReceiverError, match=r"receivers\[1\]: receiver 'a': name: defined twice"):
        parse_receivers([{"name": "a", "apprise": "json://h.example.com/x"}] * 2)
    with pytest.raises(ReceiverError, match=r"receivers\[0\]: receiver 'b': format"):
        parse_receivers([{"name": "b", "apprise": "json://h.example.com/x", "format": "rtf"}])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"json://bot:{SECRET}@hooks.example.com/alerts", "json://bot:****@hooks.example.com/alerts"),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
            "slack://T1****/A1****/TI****/#general",
        ),
        (
            f"mailto://user:{SECRET}@smtp.example.com:587?from=a@example.com&to=b@example.com",
            "mailto://user:****@smtp.example.com:587?from=a@example.com&to=b@example.com",
        ),
        (f"ntfy://ntfy.example.com/topic?token={SECRET}", "ntfy://ntfy.example.com/topic?token=****"),
        ("json://127.0.0.1:8080/hook", "json://127.0.0.1:8080/hook"),
        ("not a url with " + SECRET, "****"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected
    assert SECRET not in redact_url(url)


def test_repr_and_redact_text_hide_secrets():
    url = f"json://bot:{SECRET}@hooks.example.com/abcdefgh12345678?token=tok{SECRET}"
    rec = parse_receiver({"name": "r", "apprise": url})
    for text in (repr(rec), str(rec), str(rec.redacted_urls())):
        assert SECRET not in text
        assert "hooks.example.com" in text
    leaked = f"POST {url} failed; server said: bad token tok{SECRET} for abcdefgh12345678"
    clean = redact_text(leaked, [url])
    assert SECRET not in clean and "abcdefgh12345678" not in clean
    assert "failed; server said: bad token" in clean
    assert rec.redact(f"auth {SECRET} refused") == "auth **** refused"

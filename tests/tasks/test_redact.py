"""``tasks.redact``: URL credentials are secrets wherever a URL is printed, logged or stored."""

from __future__ import annotations

import logging

import pytest

from tasks.redact import install_log_redaction, redact_text, redact_tree, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://u:PW@host:9100/metrics", "http://u:***@host:9100/metrics"),
        ("https://TOKEN@host/metrics", "https://***@host/metrics"),
        ("redis://:pw@[::1]:6380/0", "redis://:***@[::1]:6380/0"),
        ("http://u:p@ss@host/x", "http://u:***@host/x"),  # an unencoded @ in the password
        ("http://host:9100/metrics?user=a@b", "http://host:9100/metrics?user=a@b"),  # no userinfo
        ("no url here: a@b", "no url here: a@b"),
        (
            "scrape http://u:PW@h/m failed; retry s3://K:S@bucket/p",
            "scrape http://u:***@h/m failed; retry s3://K:***@bucket/p",
        ),
        ("Client error for url 'http://u:PW@h:1/m'", "Client error for url 'http://u:***@h:1/m'"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_redact_tree_walks_dicts_and_lists_and_keeps_other_values() -> None:
    tree = {"a": ["http://u:PW@h/x", 3, None], "b": {"c": "https://t@h"}, "n": 1.5}
    assert redact_tree(tree) == {"a": ["http://u:***@h/x", 3, None], "b": {"c": "https://***@h"}, "n": 1.5}
    assert tree["a"][0] == "http://u:PW@h/x"  # a copy, the input is untouched


@pytest.mark.timeout(30)
def test_redact_url_is_linear_time() -> None:
    """Adversarial inputs: a long scheme-like run, many '://' and no '@' (a backtracking regex
    would take minutes on these)."""
    for text in ("a" * 200_000, "://" + "a" * 200_000, "http://" * 50_000, ("://a" * 50_000) + "@"):
        redact_url(text)


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    log = logging.getLogger("cortex_perf.test_redact")
    with caplog.at_level(logging.INFO):
        log.info("scrape %s failed", "http://u:PW@h/m")
        log.warning("plain %s", "value")
        try:
            raise RuntimeError("boom at http://u:PW@h/m")
        except RuntimeError:
            log.exception("failed")
    assert "PW" not in caplog.text
    assert "scrape http://u:***@h/m failed" in caplog.text and "plain value" in caplog.text


def test_redact_text_masks_urls_and_secrets_longest_first() -> None:
    assert redact_text("redis://:pw@h: bad pw", ["pw", None, ""]) == "redis://:***@h: bad ***"
    # a secret containing another is masked whole (the URL-quoted password and its plain form)
    assert redact_text("auth p%40ss failed", ["p@ss", "p%40ss"]) == "auth *** failed"

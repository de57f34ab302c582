"""Credentials inside URLs (``http://user:PASSWORD@host/…``) are secrets: the one place that hides them.

Why one module (a leaf: standard library only): a URL with userinfo reaches people and files by
many roads — ``config show``, an httpx error that quotes the URL, a ``source.failed`` event in the
lake, a log line that Prefect stores in its database, ``status``. Each road calls ``redact_url``
(on a URL or on any text that may quote one), ``redact_tree`` (on data about to be printed or
stored) or relies on ``install_log_redaction`` (every log record), so a new road needs no new
copy of the rule.

The rule: ``scheme://user:password@`` keeps the user name (it helps debugging) and masks the
password; ``scheme://token@`` (userinfo without a password is usually a token) is masked whole.
Apprise URLs hide more than userinfo (tokens in hosts and paths): ``tasks.alerting.notify.receivers``
has that richer rule for them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "install_log_redaction", "redact_text", "redact_tree", "redact_url"]

MASK = "***"

#: ``://`` then the userinfo up to the *last* ``@`` before the path, query, fragment or whitespace.
#: Linear time: the class cannot cross ``/``, so each ``://`` scans only up to the next one.
_USERINFO = re.compile(r"://([^/?#\s]*)@")


def _mask(m: re.Match[str]) -> str:
    user, colon, _ = m.group(1).partition(":")
    return f"://{user}:{MASK}@" if colon else f"://{MASK}@"


def redact_url(text: str) -> str:
    """``text`` (a URL, or any text quoting URLs) with the credentials of every URL masked.

    ``http://u:PW@host/m`` → ``http://u:***@host/m``; ``https://TOKEN@host`` → ``https://***@host``.
    Text without ``://…@`` comes back unchanged (the same object)."""
    if "://" not in text or "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)


def redact_tree(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, tuples, scalars) with ``redact_url`` applied to
    every string in it; for settings shown to people and event payloads written to the lake."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_tree(v) for v in value)
    return value


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: let logging report it as it always does
        return
    clean = redact_url(message)
    if clean is not message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_text is None:
        record.exc_text = redact_url(logging.Formatter().formatException(record.exc_info))


def install_log_redaction() -> None:
    """Redact URL credentials in every log record of this process, before any handler sees it.

    Why a record factory rather than a handler filter: Prefect ships run logs to its database
    through handlers it attaches itself (and re-attaches per run), and Python's own handlers are
    configured elsewhere; the factory runs once per record, ahead of all of them. Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_cortex_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _redact_record(record)
        return record

    factory._cortex_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with the credentials of every URL in it masked and every other non-empty secret
    (tokens, passwords) replaced by ``***``: errors from clients may echo both. Longest secrets go
    first, so a secret that contains another (a URL-quoted password and its unquoted form) is
    masked whole."""
    text = redact_url(text)
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, "***")
    return text

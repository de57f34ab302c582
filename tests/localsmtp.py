"""A real SMTP server on 127.0.0.1 for the tests (``aiosmtpd``): plain SMTP, no TLS, no auth.

One copy for every test that mails (alert e-mails, report e-mails); the ``smtp`` fixture in
``conftest.py`` starts one per test.
"""

from __future__ import annotations

import email
from email.message import Message
from typing import Any


class Mailbox:
    """aiosmtpd handler that keeps every message as (sender, recipients, message), or refuses
    them all with 554 while ``refuse`` is set."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.refuse = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        if self.refuse:
            return "554 5.7.1 Message rejected by policy"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

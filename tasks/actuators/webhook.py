"""The ``webhook`` actuator: POSTs the decision as JSON, signed with HMAC-SHA256.

Why GitHub's scheme: receivers already know how to verify ``X-Hub-Signature-256: sha256=<hex of
HMAC-SHA256(secret, raw body)>`` (compare in constant time, over the raw bytes), so any team can
accept our decisions with a few lines. ``X-Cortex-Delivery`` carries the decision id, so a receiver
can drop a delivery it has seen (we send again only after a recorded failure: at-least-once);
``sent_at`` in the body lets it refuse stale replays.

Guarantees: only a 2xx answer counts as applied; anything else (or no answer) is a recorded
failure naming the status. A receiver may answer ``{"current": N}`` to report the count it now
has; when it does and N differs from the decision, the action fails instead of passing silently.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from tasks.actuators.action import ScaleAction
from tasks.actuators.base import ActuatorConfig, CountActuator
from tasks.actuators.errors import ActuatorError
from tasks.actuators.ledger import ActionLedger
from tasks.redact import redact_url

__all__ = ["WebhookActuator", "WebhookConfig", "sign", "verify"]


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time compare, for receivers and tests)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class WebhookConfig(ActuatorConfig):
    """``url`` receives the POST; ``secret`` signs it; ``current_url`` (optional) answers GET with the count."""

    kind: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr
    signature_header: str = "X-Hub-Signature-256"
    current_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url", "current_url")
    @classmethod
    def _v_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("secret")
    @classmethod
    def _v_secret(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (an HMAC key anyone can guess signs nothing)")
        return v


def _count_from(payload: Any, where: str) -> int:
    if isinstance(payload, dict):
        for key in ("current", "replicas", "count"):
            if key in payload:
                payload = payload[key]
                break
    if isinstance(payload, bool) or not isinstance(payload, int) or payload < 0:
        raise ActuatorError(f'{where} answered {str(payload)[:80]!r}, expected a count or {{"current": N}}')
    return payload


class WebhookActuator(CountActuator):
    kind = "webhook"
    config_model = WebhookConfig
    config: WebhookConfig

    def __init__(self, config: WebhookConfig, *, ledger: ActionLedger, client: httpx.Client | None = None) -> None:
        super().__init__(config, ledger=ledger)
        #: injectable (httpx transports), as the project's sources take theirs
        self._owns_client = client is None
        self.client = client or httpx.Client(timeout=config.timeout_s, follow_redirects=False)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _read(self, target: str) -> int:
        if self.config.current_url is None:
            return self._ledger_count(target, "no current_url configured and nothing applied yet")
        body = b""
        headers = {self.config.signature_header: sign(self._key, body), **self.config.headers}
        where = f"{self.name}: GET {redact_url(self.config.current_url)}"
        try:
            resp = self.client.get(self.config.current_url, params={"target": target}, headers=headers)
        except httpx.HTTPError as exc:
            raise ActuatorError(f"{where} failed: {type(exc).__name__}") from None
        if resp.status_code // 100 != 2:
            raise ActuatorError(f"{where} answered HTTP {resp.status_code}")
        try:
            return _count_from(resp.json(), where)
        except ValueError:
            raise ActuatorError(f"{where} answered non-JSON {resp.text[:80]!r}") from None

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        payload = {"decision": action.payload(), "sent_at": datetime.now(UTC).isoformat()}
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "X-Cortex-Event": f"{action.area}.decision",
            "X-Cortex-Delivery": action.id,
            self.config.signature_header: sign(self._key, body),
        }
        where = f"{self.name}: POST {redact_url(self.config.url)}"
        try:
            resp = self.client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ActuatorError(f"{where} failed: {type(exc).__name__}: {exc}") from None
        detail["http_status"] = resp.status_code
        if resp.status_code // 100 != 2:
            raise ActuatorError(f"{where} answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            answer = resp.json() if resp.content else None
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "current" in answer:
            return _count_from(answer, where)
        return action.to

    @property
    def _key(self) -> bytes:
        return self.config.secret.get_secret_value().encode()

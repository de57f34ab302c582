"""The ``webhook`` actuator against a real HTTP server on 127.0.0.1 that verifies the signature.

The receiver checks ``X-Hub-Signature-256`` the way GitHub's docs tell receivers to (HMAC-SHA256 of
the raw body, constant-time compare), written here independently of the actuator's own ``sign``.
What could break: an unsigned or wrongly signed body, a non-2xx passing as applied, a retry after
a failure not being sent, a duplicate delivery of an applied decision, the count not read back."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from localhttp import JsonHandler, LocalServer

from tasks.actuators import ActionLedger, ScaleAction, build_actuator
from tasks.actuators.webhook import WebhookActuator, sign, verify

SECRET = "s3cr3t-hmac-key-for-tests"


class Receiver:
    """A scaling endpoint: verifies signatures, keeps a count per target, scripted failures."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.count: dict[str, int] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.answer_current = True
        outer = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(outer.secret, body, hashlib.sha256).hexdigest()
                got = self.headers.get("X-Hub-Signature-256", "")
                if not hmac.compare_digest(expected, got):
                    return self._send(401, {"error": "bad signature"})
                if outer.fail_next:
                    return self._send(outer.fail_next.pop(0), {"error": "try later"})
                payload = json.loads(body)
                outer.deliveries.append({"headers": dict(self.headers), "payload": payload})
                d = payload["decision"]
                outer.count[d["target"]] = d["to"]
                self._send(200, {"current": outer.count[d["target"]]} if outer.answer_current else {"ok": True})

            def do_GET(self) -> None:
                target = self.path.split("target=", 1)[1]
                self._send(200, {"current": outer.count.get(target, 0)})

        self.http = LocalServer(Handler)
        self.server, self.url = self.http.server, self.http.url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    r.http.close()


@pytest.fixture
def ledger(tmp_path: Any) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"))


def _d(id: str = "dec-1", to: int = 6) -> ScaleAction:
    return ScaleAction.model_validate(
        {"id": id, "target": "api", "to": to, "from": 3, "policy": "hybrid", "reason": "p90 forecast 540 req/s"}
    )


def _act(receiver: Receiver, ledger: ActionLedger, secret: str = SECRET, **extra: Any) -> WebhookActuator:
    act = build_actuator(
        {"kind": "webhook", "url": f"{receiver.url}/scale", "current_url": f"{receiver.url}/current", "secret": secret}
        | extra,
        ledger=ledger,
    )
    assert isinstance(act, WebhookActuator)
    return act


def test_posts_the_signed_decision_and_reads_the_count(receiver: Receiver, ledger: ActionLedger) -> None:
    act = _act(receiver, ledger)
    assert act.current("api") == 0
    res = act.apply(_d(), dry_run=False)
    assert (res.status, res.observed, res.detail["http_status"]) == ("applied", 6, 200), res.error
    [delivery] = receiver.deliveries
    assert delivery["headers"]["X-Cortex-Delivery"] == "dec-1"
    assert delivery["headers"]["Content-Type"] == "application/json"
    decision = delivery["payload"]["decision"]
    assert (decision["from"], decision["to"], decision["policy"]) == (3, 6, "hybrid")
    assert delivery["payload"]["sent_at"].endswith("+00:00")
    assert act.current("api") == 6
    with act:
        pass
    assert act.client.is_closed  # the client it opened is released


def test_the_same_decision_is_delivered_once(receiver: Receiver, ledger: ActionLedger) -> None:
    act = _act(receiver, ledger)
    assert act.apply(_d(), dry_run=False).status == "applied"
    assert act.apply(_d(), dry_run=False).status == "skipped"
    assert len(receiver.deliveries) == 1
    assert act.apply(_d("dec-2", 2), dry_run=False).status == "applied"
    assert len(receiver.deliveries) == 2 and receiver.count["api"] == 2


def test_a_wrong_secret_is_refused_by_the_receiver_and_recorded(receiver: Receiver, ledger: ActionLedger) -> None:
    res = _act(receiver, ledger, secret="another-secret-of-enough-length").apply(_d(), dry_run=False)
    assert res.status == "failed" and "HTTP 401" in (res.error or "") and "bad signature" in (res.error or "")
    assert receiver.deliveries == [] and "another-secret" not in (res.error or "")


def test_a_5xx_fails_and_the_retry_delivers(receiver: Receiver, ledger: ActionLedger) -> None:
    receiver.fail_next = [503]
    act = _act(receiver, ledger)
    first = act.apply(_d(), dry_run=False)
    assert first.status == "failed" and "HTTP 503" in (first.error or "")
    second = act.apply(_d(), dry_run=False)
    assert (second.status, second.attempt) == ("applied", 2)
    assert len(receiver.deliveries) == 1


def test_without_a_current_answer_the_ledger_stands_for_reality(receiver: Receiver, ledger: ActionLedger) -> None:
    receiver.answer_current = False
    act = build_actuator({"kind": "webhook", "url": f"{receiver.url}/scale", "secret": SECRET}, ledger=ledger)
    with pytest.raises(Exception, match="no current_url configured and nothing applied yet"):
        act.current("api")
    assert act.apply(_d(to=4), dry_run=False).observed == 4
    assert act.current("api") == 4


def test_unreachable_receiver_is_a_failure(ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "webhook", "url": "http://127.0.0.1:9/scale", "secret": SECRET}, ledger=ledger)
    res = act.apply(_d(), dry_run=False)
    assert res.status == "failed" and "ConnectError" in (res.error or "")


def test_sign_and_verify_match_githubs_published_example() -> None:
    # GitHub's docs: secret "It's a Secret to Everybody", payload "Hello, World!"
    body, secret = b"Hello, World!", b"It's a Secret to Everybody"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(secret, body) == expected
    assert verify(secret, body, expected)
    assert not verify(secret, body + b" ", expected) and not verify(secret, body, None)

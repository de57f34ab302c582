"""The outbox end to end through Apprise's ``json://`` plugin to a real HTTP server on 127.0.0.1:
sends, retries with backoff, dead letters, crash re-send, idempotent enqueue, records, secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.delivery import (
    apprise_send,
    deliver_due,
    enqueue,
    enqueue_many,
    export_to_lake,
    list_outbox,
    list_records,
    take_due,
    test_notify,
)
from tasks.alerting.notify.notify_templates import Notification
from tasks.alerting.notify.receivers import parse_receiver
from tasks.lake.lake import Lake
from tasks.state import State, observe_transactions

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cr3tpassw0rd"


@pytest.fixture
def state(tmp_path) -> State:
    return State(str(tmp_path / "state.duckdb"))


def _note(receiver: str = "hook", *, reason: str = "initial", resolved: bool = False, key: str = "g1") -> Notification:
    alerts = (
        Alert({"alertname": "DiskFull", "severity": "critical", "host": "db1"}, {"summary": "disk 99%"}, "firing", T0),
        Alert(
            {"alertname": "DiskFull", "severity": "critical", "host": "db2"},
            {"summary": "disk ok"},
            "resolved" if resolved else "firing",
            T0,
            T0 + timedelta(minutes=5) if resolved else None,
        ),
    )
    return Notification(receiver, key, {"alertname": "DiskFull"}, alerts, reason)


def test_delivers_json_payload(hook, state):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/alerts")})
    eid = enqueue(_note(resolved=True), rec, T0, state=state)
    [res] = deliver_due(T0, {"hook": rec}, state=state)
    assert (res.id, res.status, res.attempt, res.error) == (eid, "sent", 1, None)
    [payload] = hook.at("/alerts")
    assert payload["title"] == "[FIRING:1] DiskFull (critical)"
    assert payload["type"] == "failure"  # a critical alert is firing
    assert "disk 99%" in payload["message"] and "**Resolved**" in payload["message"]
    assert deliver_due(T0 + timedelta(hours=1), {"hook": rec}, state=state) == []  # sent once
    assert [r["status"] for r in list_records(state, notification_id=eid)] == ["pending", "sending", "sent"]
    [entry] = list_outbox(state)
    assert entry.status == "sent" and entry.sent_at == T0 and entry.attempts == 1


def test_failing_receiver_retried_with_backoff_then_sent(hook, state):
    hook.codes["/flaky"] = [500, 503, 200]
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/flaky"), "retry_backoff": "30s"})
    eid = enqueue(_note(), rec, T0, state=state)
    [r1] = deliver_due(T0, {"hook": rec}, state=state)
    assert r1.status == "failed" and r1.next_attempt_at == T0 + timedelta(seconds=30)
    assert "500" in (r1.error or "")
    assert deliver_due(T0 + timedelta(seconds=29), {"hook": rec}, state=state) == []  # not due yet
    [r2] = deliver_due(T0 + timedelta(seconds=30), {"hook": rec}, state=state)
    assert r2.status == "failed" and r2.attempt == 2
    assert r2.next_attempt_at == T0 + timedelta(seconds=30 + 60)  # doubled
    [r3] = deliver_due(T0 + timedelta(seconds=90), {"hook": rec}, state=state)
    assert (r3.status, r3.attempt) == ("sent", 3)
    assert len(hook.at("/flaky")) == 3
    statuses = [r["status"] for r in list_records(state, notification_id=eid)]
    assert statuses == ["pending", "sending", "failed", "sending", "failed", "sending", "sent"]


def test_permanently_failing_receiver_ends_dead_and_stays_listed(hook, state):
    hook.codes["/down"] = [500]
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/down"), "max_retries": 2, "retry_backoff": "10s"})
    eid = enqueue(_note(), rec, T0, state=state)
    now = T0
    seen = []
    for _ in range(3):
        [r] = deliver_due(now, {"hook": rec}, state=state)
        seen.append(r.status)
        now = r.next_attempt_at or now
    assert seen == ["failed", "failed", "dead"]
    assert deliver_due(now + timedelta(days=1), {"hook": rec}, state=state) == []
    [dead] = list_outbox(state, status=["dead"])
    assert dead.id == eid and dead.attempts == 3 and "500" in (dead.last_error or "")
    assert len(hook.at("/down")) == 3


def test_enqueue_is_idempotent_per_tick(hook, state):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/a")})
    first = enqueue(_note(), rec, T0, state=state)
    assert enqueue(_note(), rec, T0, state=state) == first
    assert enqueue(_note(), rec, T0 + timedelta(seconds=20), state=state) == first  # same tick re-run
    changed = enqueue(_note(resolved=True), rec, T0, state=state)
    other_group = enqueue(_note(key="g2"), rec, T0, state=state)
    later_repeat = enqueue(_note(), rec, T0 + timedelta(hours=4), state=state)
    assert len({first, changed, other_group, later_repeat}) == 4
    assert len(list_outbox(state)) == 4
    assert len(deliver_due(T0, {"hook": rec}, state=state)) == 3  # the repeat is not due yet
    assert len(hook.at("/a")) == 3


def test_enqueue_many_one_transaction_same_ids(hook, state):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/m")})
    quiet = parse_receiver({"name": "quiet", "apprise": hook.url("/q"), "send_resolved": False})
    resolved_only = Notification("quiet", "g", {}, (Alert({"alertname": "X"}, status="resolved", ends_at=T0),))
    ids = enqueue_many(
        [(_note(), rec), (_note(key="g2"), rec), (_note(), rec), (resolved_only, quiet)], T0, state=state
    )
    assert ids[0] == ids[2] and ids[1] not in (ids[0], None) and ids[3] is None
    assert enqueue(_note(key="g2"), rec, T0, state=state) == ids[1]
    with pytest.raises(ValueError, match=r"notifications\[0\]: notification.receiver: 'hook' is not the receiver"):
        enqueue_many([(_note(), quiet)], T0, state=state)


def test_due_entries_listed_in_a_batch_are_sent_after_it_each_claimed_alone(hook, state):
    """The alert tick queues and lists inside its one batch; the claims must still each commit
    before their send, so deliver_due refuses the batch's State and takes the listed entries after."""
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/b")})
    with state.batch() as tx:
        enqueue_many([(_note(), rec), (_note(key="g2"), rec)], T0, state=tx)
        due = take_due(tx, T0)
        with pytest.raises(ValueError, match="commits each claim before its send"):
            deliver_due(T0, {"hook": rec}, state=tx, due=due)
    assert [d.attempts for d in due] == [0, 0] and hook.at("/b") == []
    with observe_transactions() as tx_count:
        results = deliver_due(T0, {"hook": rec}, state=state, due=due)
    assert [r.status for r in results] == ["sent", "sent"] and len(hook.at("/b")) == 2
    assert tx_count.count == 3  # claim 1; outcome 1 + claim 2; outcome 2
    # a second process holding the same listing finds both claimed: nothing is sent twice
    assert deliver_due(T0, {"hook": rec}, state=state, due=due) == [] and len(hook.at("/b")) == 2


def test_send_resolved_false_drops_resolved_alerts(hook, state):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/nr"), "send_resolved": False})
    all_resolved = Notification(
        "hook", "g", {"alertname": "X"}, (Alert({"alertname": "X"}, status="resolved", ends_at=T0),)
    )
    assert enqueue(all_resolved, rec, T0, state=state) is None
    enqueue(_note(resolved=True), rec, T0, state=state)
    deliver_due(T0, {"hook": rec}, state=state)
    [payload] = hook.at("/nr")
    assert "db1" in payload["message"] and "db2" not in payload["message"]


def test_crash_between_send_and_record_resends_once_as_possible_duplicate(hook, state):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/crash")})
    eid = enqueue(_note(), rec, T0, state=state)

    class Crash(BaseException):
        """The process dies right after the channel accepted the message."""

    def send_then_die(receiver, message, notify_type):
        apprise_send(receiver, message, notify_type)
        raise Crash

    def at(t):  # leases are judged by the wall clock; here it reads the ticks' times
        return {"state": state, "clock": lambda: t}

    with pytest.raises(Crash):
        deliver_due(T0, {"hook": rec}, send_then_die, **at(T0))
    [entry] = list_outbox(state)
    assert entry.status == "sending" and len(hook.at("/crash")) == 1
    # A run within the lease must not resend (its holder might still be sending)...
    assert deliver_due(T0 + timedelta(seconds=10), {"hook": rec}, **at(T0 + timedelta(seconds=10))) == []
    # ...after it, the dead run's claim (its heartbeat stopped with it) is taken over, once
    [res] = deliver_due(T0 + timedelta(minutes=1), {"hook": rec}, **at(T0 + timedelta(minutes=1)))
    assert (res.status, res.possible_duplicate, res.attempt) == ("sent", True, 2)
    first, second = hook.at("/crash")
    assert "possible duplicate" not in first["title"].lower()
    assert second["title"].startswith("(possible duplicate) ")
    assert "Possible duplicate:" in second["message"]
    assert deliver_due(T0 + timedelta(hours=1), {"hook": rec}, state=state) == []
    assert len(hook.at("/crash")) == 2  # once, not again
    assert [r["status"] for r in list_records(state, notification_id=eid)] == ["pending", "sending", "sending", "sent"]


def test_partial_success_is_a_failure(hook, state):
    hook.codes["/bad"] = [500, 200]
    rec = parse_receiver({"name": "hook", "apprise": [hook.url("/good"), hook.url("/bad")]})
    enqueue(_note(), rec, T0, state=state)
    [r] = deliver_due(T0, {"hook": rec}, state=state)
    assert r.status == "failed" and "500" in (r.error or "")
    [r] = deliver_due(r.next_attempt_at, {"hook": rec}, state=state)
    assert r.status == "sent"
    assert (len(hook.at("/good")), len(hook.at("/bad"))) == (2, 2)  # at least once on every channel


def test_apprise_config_file_with_tags(hook, state, tmp_path):
    cfg = tmp_path / "apprise.yml"
    cfg.write_text(f"urls:\n  - {hook.url('/ops')}:\n      tag: oncall\n  - {hook.url('/dev')}:\n      tag: devteam\n")
    rec = parse_receiver({"name": "hook", "apprise_config": str(cfg), "tag": ["oncall"]})
    enqueue(_note(), rec, T0, state=state)
    [r] = deliver_due(T0, {"hook": rec}, state=state)
    assert r.status == "sent"
    assert len(hook.at("/ops")) == 1 and hook.at("/dev") == []
    notag = parse_receiver({"name": "hook", "apprise_config": str(cfg), "tag": "nobody"})
    res = test_notify(notag, now=T0)
    assert res.status == "failed" and "no URL with tag nobody" in (res.error or "")


def test_errors_and_records_never_contain_secrets(state):
    rec = parse_receiver(
        {"name": "hook", "apprise": f"json://admin:{SECRET}@127.0.0.1:1/tok{SECRET}?cto=0.5", "max_retries": 0}
    )
    enqueue(_note(), rec, T0, state=state)
    [r] = deliver_due(T0, {"hook": rec}, state=state)
    assert r.status == "dead" and r.error
    dumped = json.dumps([r.to_dict(), [e.__dict__ for e in list_outbox(state)], list_records(state)], default=str)
    assert SECRET not in dumped
    assert SECRET not in repr(rec)


def test_unknown_receiver_is_retried_then_dead_not_dropped(state, hook):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/x")})
    enqueue(_note(), rec, T0, state=state)
    [r] = deliver_due(T0, {}, state=state)
    assert r.status == "failed" and "receiver 'hook' is not configured" in (r.error or "")
    [r] = deliver_due(r.next_attempt_at, {"hook": rec}, state=state)  # configured again: delivered
    assert r.status == "sent"


def test_test_notify(hook, state):
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/test")})
    res = test_notify(rec, now=T0, state=state)
    assert res.ok and res.reason == "test"
    [payload] = hook.at("/test")
    assert payload["type"] == "info" and "CortexPerfTestNotification" in payload["title"]
    assert "Test notification for receiver hook" in payload["message"]
    assert [r["status"] for r in list_records(state)] == ["sent"]
    hook.codes["/broken"] = [502]
    bad = test_notify(parse_receiver({"name": "hook", "apprise": hook.url("/broken")}), now=T0)
    assert bad.status == "failed" and "502" in (bad.error or "")


def test_records_go_to_the_lake(hook, state, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    hook.codes["/l"] = [500, 200]
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/l")})
    eid = enqueue(_note(), rec, T0, state=state)
    [r] = deliver_due(T0, {"hook": rec}, state=state, lake=lake)
    deliver_due(r.next_attempt_at, {"hook": rec}, state=state, lake=lake)
    con = lake.views()
    rows = con.execute(
        "SELECT attempt, status FROM notifications ORDER BY attempt, CASE status WHEN 'sending' THEN 0 ELSE 1 END"
    ).fetchall()
    assert rows == [(1, "sending"), (1, "failed"), (2, "sending"), (2, "sent")]
    # A full export adds the pending row; re-exporting writes nothing new (identity dedups).
    assert export_to_lake(state, lake) == 5
    export_to_lake(state, lake)
    n = (
        lake.views()
        .execute(
            "SELECT count(DISTINCT (notification_id, attempt, status)) FROM notifications WHERE notification_id = ?",
            [eid],
        )
        .fetchall()
    )
    assert n == [(5,)]

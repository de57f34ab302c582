"""``cortex-perf alerts …`` over a tmp lake and state DB (no Prefect needed: the CLI calls tasks directly)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.lake import Lake, Sample

runner = CliRunner()

RULES = """\
groups:
  - name: q
    rules:
      - alert: QueueDeep
        expr: queue_depth > 100
        annotations: {summary: "depth {{ $value }}"}
      - alert: QueueSlow
        expr: queue_depth > 100
        for: 1h
"""


@pytest.fixture
def env(tmp_path: Path) -> list[str]:
    lake = Lake(str(tmp_path / "lake"))
    now = datetime.now(UTC)
    lake.write_samples(
        [Sample("queue_depth", 500.0, now - timedelta(seconds=s), {"queue": "jobs"}) for s in (0, 30, 60, 90)]
    )
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    return [
        "--set",
        f"lake.root={tmp_path / 'lake'}",
        "--set",
        f"state.path={tmp_path / 'state.duckdb'}",
        "--set",
        f'alerting.rule_files=["{rules}"]',
    ]


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def test_run_dry_run_then_list(env: list[str]) -> None:
    code, out = _run(*env, "alerts", "run", "--dry-run", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["dry_run"] is True and [a["labels"]["alertname"] for a in data["firing"]] == ["QueueDeep"]
    code, out = _run(*env, "alerts", "list", "--json")
    assert code == 0 and json.loads(out) == []  # the dry run stored nothing

    code, out = _run(*env, "alerts", "run")
    assert code == 0, out
    assert "1 firing, 1 pending" in out and "QueueDeep" in out
    code, out = _run(*env, "alerts", "list", "--json")
    rows = json.loads(out)
    assert [(r["alertname"], r["state"]) for r in rows] == [("QueueDeep", "firing"), ("QueueSlow", "pending")]
    assert rows[0]["annotations"] == {"summary": "depth 500"} and len(rows[0]["id"]) == 16
    code, out = _run(*env, "alerts", "list")
    assert code == 0 and "QueueDeep" in out and "1 firing, 1 pending" in out


@pytest.mark.timeout(60)
def test_run_with_catastrophic_regexes_finishes(tmp_path: Path) -> None:
    """A rule selector, ``label_replace`` and a template with ``(a*)*c`` against a 40-character label
    value hung ``alerts run``: Python's backtracking re took hours; RE2 is linear."""
    long = "a" * 40
    now = datetime.now(UTC)
    samples = [Sample("queue_depth", 500.0, now - timedelta(seconds=s), {"queue": long}) for s in (0, 30, 60, 90)]
    Lake(str(tmp_path / "lake")).write_samples(samples)
    rules = tmp_path / "rules.yml"
    rules.write_text(
        """\
groups:
  - name: q
    rules:
      - alert: Never
        expr: queue_depth{queue=~"(a*)*c"} > 100
      - alert: Deep
        expr: label_replace(queue_depth{queue!~"(a|aa)+c"}, "q2", "$1", "queue", "(a*)*c") > 100
        annotations: {summary: '{{ reReplaceAll "(a*)*c" "x" $labels.queue }} {{ match "(a*)*c" $labels.queue }}'}
"""
    )
    env = ["--set", f"lake.root={tmp_path / 'lake'}", "--set", f"state.path={tmp_path / 'state.duckdb'}"]
    env += ["--set", f'alerting.rule_files=["{rules}"]']
    code, out = _run(*env, "alerts", "run", "--dry-run", "--json")
    assert code == 0, out
    (firing,) = json.loads(out)["firing"]
    assert firing["labels"] == {"alertname": "Deep", "queue": long}
    assert firing["annotations"] == {"summary": f"{long} false"}


def test_run_without_rule_files_says_so(tmp_path: Path) -> None:
    code, out = _run("--set", f"state.path={tmp_path / 's.duckdb'}", "alerts", "run")
    assert code == 1 and "alerting.rule_files is empty" in out


def test_help_on_every_alerts_command() -> None:
    for cmd in (["alerts"], ["alerts", "list"], ["alerts", "run"]):
        code, out = _run(*cmd, "--help")
        assert code == 0 and "Usage" in out


def test_silence_add_list_expire(tmp_path: Path) -> None:
    base = ["--set", f"state.path={tmp_path / 'state.duckdb'}", "alerts", "silence"]
    code, out = _run(*base, "add", 'alertname="QueueDeep"', "--for", "2h", "--dry-run")
    assert code == 0 and "would add silence" in out
    code, out = _run(*base, "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = _run(
        *base, "add", 'alertname="QueueDeep", queue=~"jo.*"', "--for", "2h", "--author", "ana", "--comment", "deploy"
    )
    assert code == 0, out
    sid = out.split("silence ", 1)[1].split(":", 1)[0]
    (row,) = json.loads(_run(*base, "list", "--json")[1])
    assert row["id"] == sid and row["state"] == "active" and row["created_by"] == "ana" and row["comment"] == "deploy"
    assert row["matchers"] == '{alertname="QueueDeep",queue=~"jo.*"}'  # amtool's form
    code, out = _run(*base, "expire", sid)
    assert code == 0 and "expired silence" in out
    assert json.loads(_run(*base, "list", "--json")[1]) == []
    assert [r["state"] for r in json.loads(_run(*base, "list", "--all", "--json")[1])] == ["expired"]
    code, out = _run(*base, "expire", sid)
    assert code == 2 and "already expired" in out


def test_silence_bad_input_names_the_problem(tmp_path: Path) -> None:
    base = ["--set", f"state.path={tmp_path / 'state.duckdb'}", "alerts", "silence", "add"]
    code, out = _run(*base, 'foo=~".*"')
    assert code == 2 and "must not match the empty string" in out
    code, out = _run(*base, 'alertname="X', "--for", "1h")
    assert code == 2 and "matchers" in out
    code, out = _run(*base, 'alertname="X"', "--for", "soon")
    assert code == 2 and "soon" in out


def test_ack_and_resolve_by_id_prefix(env: list[str]) -> None:
    assert _run(*env, "alerts", "run")[0] == 0
    rows = json.loads(_run(*env, "alerts", "list", "--json")[1])
    deep = next(r for r in rows if r["alertname"] == "QueueDeep")
    assert deep["ack"] is None and deep["manual_resolve"] is None

    code, out = _run(*env, "alerts", "ack", deep["id"][:8], "--for", "1h", "--dry-run")
    assert code == 0 and "would ack" in out
    assert json.loads(_run(*env, "alerts", "list", "--json")[1])[0]["ack"] is None

    code, out = _run(*env, "alerts", "ack", deep["id"][:8], "--for", "1h", "--author", "ana", "--comment", "on it")
    assert code == 0 and f"acked {deep['id']}" in out, out
    row = next(r for r in json.loads(_run(*env, "alerts", "list", "--json")[1]) if r["id"] == deep["id"])
    assert row["ack"]["by"] == "ana" and row["ack"]["comment"] == "on it"
    until = datetime.fromisoformat(row["ack"]["until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)

    code, out = _run(*env, "alerts", "resolve", deep["id"], "--reason", "drained by hand", "--author", "bo")
    assert code == 0 and "resolved" in out
    row = next(r for r in json.loads(_run(*env, "alerts", "list", "--json")[1]) if r["id"] == deep["id"])
    assert row["manual_resolve"]["by"] == "bo" and row["manual_resolve"]["reason"] == "drained by hand"


def test_ack_and_resolve_refuse_unknown_short_or_reasonless(env: list[str]) -> None:
    assert _run(*env, "alerts", "run")[0] == 0
    code, out = _run(*env, "alerts", "ack", "abc")
    assert code == 2 and "at least 6 characters" in out
    code, out = _run(*env, "alerts", "ack", "ffffffffff")
    assert code == 2 and "no firing or pending alert" in out
    rows = json.loads(_run(*env, "alerts", "list", "--json")[1])
    code, out = _run(*env, "alerts", "resolve", rows[0]["id"], "--reason", "  ")
    assert code == 2 and "--reason" in out
    code, out = _run(*env, "alerts", "resolve", rows[0]["id"])
    assert code == 2 and "reason" in out.lower()


def test_test_notify_and_notifications_list(tmp_path: Path, hook) -> None:
    notify = tmp_path / "notify.yml"
    notify.write_text(
        "route: {receiver: ops}\nreceivers:\n"
        f"  - name: ops\n    apprise: ['{hook.url('/ops')}']\n"
        f"  - name: broken\n    apprise: ['{hook.url('/broken')}']\n"
    )
    hook.codes["/broken"] = [500]
    base = ["--set", f"state.path={tmp_path / 'state.duckdb'}", "--set", f"alerting.notify_config={notify}"]
    code, out = _run(*base, "alerts", "test-notify", "ops", "--dry-run")
    assert code == 0 and "would send" in out and hook.posts == []
    code, out = _run(*base, "alerts", "test-notify", "ops")
    assert code == 0 and "sent to ops" in out, out
    (msg,) = hook.at("/ops")
    assert "CortexPerfTestNotification" in msg["title"] + msg["message"]
    code, out = _run(*base, "alerts", "test-notify", "broken")
    assert code == 1 and "FAILED" in out
    code, out = _run(*base, "alerts", "test-notify", "nobody")
    assert code == 2 and "not in" in out and "ops" in out
    code, out = _run(*base, "alerts", "notifications", "--json")
    assert code == 0 and json.loads(out) == []  # test sends bypass the outbox


def test_notifications_without_config_or_outbox(tmp_path: Path) -> None:
    base = ["--set", f"state.path={tmp_path / 'state.duckdb'}"]
    code, out = _run(*base, "alerts", "test-notify", "ops")
    assert code == 2 and "notify_config is not set" in out
    code, out = _run(*base, "alerts", "notifications")
    assert code == 0 and "No notifications." in out


def test_a_failing_rule_does_not_stop_the_others_and_alerts_list_shows_it(env: list[str], tmp_path: Path) -> None:
    """A rule failing at evaluation is reported by the tick and by `alerts list` (its health), while
    the other rules of the file still fire."""
    (tmp_path / "rules.yml").write_text(RULES + "      - alert: Broken\n        expr: topk(1e300, queue_depth) > 0\n")
    res = runner.invoke(app, [*env, "alerts", "run", "--json"])
    assert res.exit_code == 0, res.stdout + res.stderr
    # stdout is the JSON alone: the rule's failure is also logged, and log lines go to stderr (in a
    # long test session a logging handler of an earlier command may even report its own error there)
    data = json.loads(res.stdout)
    assert [a["labels"]["alertname"] for a in data["firing"]] == ["QueueDeep"]
    assert [(f["rule"], f["failures"]) for f in data["failing_rules"]] == [("Broken", 1)]
    code, out = _run(*env, "alerts", "list")
    assert code == 0 and "QueueDeep" in out
    assert "1 rule failing" in out and "Broken" in out and "overflows int64" in out


# ---- two `alerts run` processes and one outbox (issue 11: no duplicate without a crash) -------------

CLAIM_RULES = "groups:\n  - name: c\n    rules:\n" + "".join(
    f"      - alert: A{i}\n        expr: vector(1)\n" for i in range(1, 4)
)
CLAIM_NOTIFY = """\
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 0s
receivers:
  - name: ops
    apprise: ["{url}?rto=100"]  # Apprise's read timeout (4 s by default): the held send must outlast
    timeout: 100s                # the other run, not time out
"""
#: short, so a run that wrongly takes over a claim whose lease ran out does so within the test
LEASE = "1s"


def _tick_process(tmp_path: Path, hook_url: str) -> list[str]:
    """The command line of a real `cortex-perf alerts run` against tmp_path's lake and state."""
    import sys

    (tmp_path / "rules.yml").write_text(CLAIM_RULES)
    (tmp_path / "notify.yml").write_text(CLAIM_NOTIFY.format(url=hook_url))
    return [
        str(Path(sys.executable).parent / "cortex-perf"),
        *("--set", f"lake.root={tmp_path / 'lake'}", "--set", f"state.path={tmp_path / 'state.duckdb'}"),
        *("--set", f'alerting.rule_files=["{tmp_path / "rules.yml"}"]'),
        *("--set", f"alerting.notify_config={tmp_path / 'notify.yml'}"),
        *("--set", f"alerting.delivery_lease={LEASE}"),
        "alerts",
        "run",
    ]


def _wait_for(cond: Any, what: str, timeout_s: float = 90.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _titles(hook: Any) -> list[str]:
    return sorted(p["title"] for p in hook.at("/ops"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_run_never_takes_over_a_live_claim(tmp_path: Path, hook: Any) -> None:
    """Run 1 is sending its first message (the receiver holds it) for far longer than the lease;
    run 2 starts meanwhile and sends what is left, but must not resend the message in flight: run 1
    is alive and renews its lease. Before the fix, a claim older than 60 s (here: the lease) looked
    stale to run 2, which resent the in-flight message as a 'possible duplicate'."""
    import subprocess
    import threading
    import time

    hook.hold_first = threading.Event()
    cmd = _tick_process(tmp_path, hook.url("/ops"))
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: len(hook.posts) == 1 or first.poll() is not None, "run 1's first send")
        assert first.poll() is None, first.communicate()[0]
        time.sleep(3)  # three leases: a claim judged by its start time alone is stale now
        code, out = _run(*cmd[1:])  # the second run: this process (each start of the CLI costs seconds)
        assert code == 0, out
    finally:
        hook.hold_first.set()
        out = first.communicate(timeout=120)[0]
    assert first.returncode == 0, out
    assert _titles(hook) == ["[FIRING:1] A1", "[FIRING:1] A2", "[FIRING:1] A3"]  # each once, none a duplicate
    code, listing = _run(*cmd[1:9], "alerts", "notifications", "--json")
    assert code == 0, listing
    assert sorted((e["status"], e["possible_duplicate"]) for e in json.loads(listing)) == [("sent", False)] * 3, listing


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_dead_runs_claim_is_taken_over_once_as_a_possible_duplicate(tmp_path: Path, hook: Any) -> None:
    """Run 1 is killed while its first message is in flight: once its lease has run out (and its
    pid is gone), the next run re-sends that message once, flagged as a possible duplicate."""
    import signal
    import subprocess
    import threading
    import time

    hook.hold_first = threading.Event()
    cmd = _tick_process(tmp_path, hook.url("/ops"))
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(hook.posts) == 1 or first.poll() is not None, "run 1's first send")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    time.sleep(1.5)  # the lease runs out
    for _ in range(2):  # the second run (this process) re-sends once; a third has nothing left to do
        code, out = _run(*cmd[1:])
        assert code == 0, out
    hook.hold_first.set()
    titles = _titles(hook)
    held = hook.posts[0][1]["title"]  # what run 1 was sending when it died
    assert titles.count(held) == 1 and titles.count(f"(possible duplicate) {held}") == 1
    assert len(titles) == 4

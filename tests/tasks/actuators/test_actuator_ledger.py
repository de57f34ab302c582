"""The ledger's claims: a live apply is never taken over, a dead one is, and old ledgers carry over.

What could break (issue 11 item 4's review): a claim's staleness measured from its start with no
renewal, so a second process takes over an apply that is slow but alive and applies it twice; a
holder that was taken over overwriting its successor's outcome; the rows of the scaling-only
ledger (``scaling_actions``) lost on upgrade, so an applied decision would apply again."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tasks.actuators import ActionLedger, ScaleAction, parse_actuator_config
from tasks.actuators.command import CommandActuator
from tasks.actuators.log import LogActuator
from tasks.state import ClaimOwner

#: Appends who ran it to a log; the first run then holds its apply until the test creates the
#: release file (a second run, the bug, returns at once so the test fails instead of hanging).
BLOCKER = r"""
import os, sys, time
log, release = sys.argv[1], sys.argv[2]
with open(log, "a") as f:
    f.write(f"{os.getpid()} {os.environ['CORTEX_DECISION_ID']}\n")
if open(log).read().count("\n") > 1:
    sys.exit(0)
deadline = time.monotonic() + 60
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.02)
"""

LEASE_S = 1.0


class ShortLeaseCommand(CommandActuator):
    """The command actuator with a lease short enough for a test to outlive it."""

    @property
    def lease_s(self) -> float:
        return LEASE_S


def _apply(tmp: str, out: Any) -> None:
    """One process's whole apply of the shared decision (spawned: nothing inherited but arguments)."""
    script, log, release = (str(Path(tmp) / n) for n in ("blocker.py", "runs.log", "release"))
    cfg = parse_actuator_config({"kind": "command", "argv": [sys.executable, script, log, release]})
    act = ShortLeaseCommand(cfg, ledger=ActionLedger(str(Path(tmp) / "state.duckdb"), timeout_s=60))
    decision = ScaleAction.model_validate({"id": "slow-1", "target": "api", "to": 4, "from": 2})
    out.put(act.apply(decision, dry_run=False).status)


def _wait_for(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_live_but_slow_apply_is_never_taken_over_by_another_process(tmp_path: Path) -> None:
    (tmp_path / "blocker.py").write_text(BLOCKER)
    runs = tmp_path / "runs.log"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    first = ctx.Process(target=_apply, args=(str(tmp_path), out))
    first.start()
    try:
        _wait_for(lambda: runs.exists() and runs.read_text().count("\n") == 1, 60, "the first apply to start")
        time.sleep(3 * LEASE_S)  # the first claim is now older than its lease, and still working
        second = ctx.Process(target=_apply, args=(str(tmp_path), out))
        second.start()
        second.join(60)
        assert second.exitcode == 0
        assert out.get(timeout=5) == "skipped"  # the second process kept off the live claim
    finally:
        (tmp_path / "release").touch()
        first.join(60)
    assert first.exitcode == 0 and out.get(timeout=5) == "applied"
    assert runs.read_text().count("\n") == 1, runs.read_text()  # the command ran once, not twice


# ---- one process, the claim rules one by one ---------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"), timeout_s=20)


def _action(id: str = "a-1", to: int = 3) -> ScaleAction:
    return ScaleAction.model_validate({"id": id, "target": "api", "to": to, "from": 1})


def _expire(ledger: ActionLedger) -> None:
    with ledger.state.transaction() as con:
        con.execute("UPDATE actions SET lease_until = ?", [datetime.now(UTC) - timedelta(seconds=1)])


def _owner_of(proc: subprocess.Popen[bytes]) -> ClaimOwner:
    """The claim owner a process would have written (host, boot, pid, start time, a token)."""
    me = ClaimOwner.me()
    start = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return replace(me, pid=proc.pid, started=start)


def test_an_expired_lease_of_a_live_process_is_not_taken_over(ledger: ActionLedger) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert ledger.claim("log", _action(), lease_s=1, owner=_owner_of(holder))[0] == "claimed"
        _expire(ledger)  # its renewals are late (a stalled machine), but its process lives
        verdict, row = ledger.claim("log", _action(), lease_s=1)
        assert verdict == "busy" and row is not None and row.attempts == 1
    finally:
        holder.kill()
        holder.wait()
    # now it is gone: the next claim takes over, as a second attempt
    verdict, row = ledger.claim("log", _action(), lease_s=1)
    assert verdict == "claimed" and row is not None and row.attempts == 2


def test_a_live_lease_is_never_taken_over_and_a_holder_on_another_host_expires_with_it(ledger: ActionLedger) -> None:
    elsewhere = replace(ClaimOwner.me(), host="another-host")
    assert ledger.claim("log", _action(), lease_s=60, owner=elsewhere)[0] == "claimed"
    assert ledger.claim("log", _action(), lease_s=60)[0] == "busy"  # within its lease
    _expire(ledger)
    assert ledger.claim("log", _action(), lease_s=60)[0] == "claimed"  # only the lease can tell


def test_a_taken_over_holder_cannot_overwrite_its_successors_outcome(ledger: ActionLedger) -> None:
    first = replace(ClaimOwner.me(), host="another-host")
    ledger.claim("log", _action(), lease_s=60, owner=first)
    _expire(ledger)
    second = ClaimOwner.me()
    ledger.claim("log", _action(), lease_s=60, owner=second)
    assert ledger.finish("log", "a-1", second.token, observed=3, error=None)
    assert not ledger.finish("log", "a-1", first.token, observed=None, error="late failure")
    row = ledger.get("log", "a-1")
    assert row is not None and (row.status, row.observed, row.error) == ("applied", 3, None)


def test_the_heartbeat_renews_the_lease_while_the_apply_runs(ledger: ActionLedger) -> None:
    seen: list[datetime] = []

    class Slow(LogActuator):
        @property
        def lease_s(self) -> float:
            return 0.6

        def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
            for _ in range(3):
                time.sleep(0.45)
                row = self.ledger.get(self.name, action.id)
                assert row is not None and row.lease_until is not None
                seen.append(row.lease_until)
            return action.to

    act = Slow(parse_actuator_config({"kind": "log"}), ledger=ledger)
    assert act.apply(_action(), dry_run=False).status == "applied"
    assert seen == sorted(seen) and len(set(seen)) == 3  # renewed between each look
    row = ledger.get("log", "a-1")
    assert row is not None and row.lease_until is None  # finished: no lease left


def test_claims_from_before_owners_expire_after_the_lease_from_their_start(tmp_path: Path) -> None:
    """The ledger was ``scaling_actions`` (counts only, no owners): its rows move into ``actions``."""
    path = tmp_path / "state.duckdb"
    started = datetime.now(UTC) - timedelta(seconds=400)
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE scaling_actions (actuator VARCHAR NOT NULL, decision_id VARCHAR NOT NULL, target VARCHAR NOT "
        "NULL, to_count INTEGER NOT NULL, status VARCHAR NOT NULL, observed INTEGER, error VARCHAR, attempts INTEGER "
        "NOT NULL, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, PRIMARY KEY (actuator, decision_id))"
    )
    con.execute("INSERT INTO scaling_actions VALUES ('log', 'old', 'api', 4, 'applied', 4, NULL, 1, ?, ?)",
                [started, started])  # fmt: skip
    con.execute("INSERT INTO scaling_actions VALUES ('log', 'crashed', 'api', 5, 'applying', NULL, NULL, 1, ?, NULL)",
                [started])  # fmt: skip
    con.close()
    ledger = ActionLedger(str(path))
    old = ledger.get("log", "old")
    assert old is not None and (old.kind, old.to, old.observed, old.status) == ("replicas", 4, 4, "applied")
    assert ledger.claim("log", _action("old", 4), lease_s=300)[0] == "done"  # applied stays applied
    assert ledger.claim("log", _action("crashed", 5), lease_s=500)[0] == "busy"  # within the lease from its start
    verdict, row = ledger.claim("log", _action("crashed", 5), lease_s=300)
    assert verdict == "claimed" and row is not None and row.attempts == 2
    with ledger.state.transaction() as con2:
        assert con2.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'scaling_actions'"
                            ).fetchone() == (0,)  # fmt: skip

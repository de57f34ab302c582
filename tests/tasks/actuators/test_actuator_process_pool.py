"""The ``process_pool`` actuator with real worker processes on this machine.

What could break: workers not started or not counted, stopped workers left running or as zombies,
a pool that a later process (a new flow run) cannot find, a reused pid counted as ours, a worker
that dies at once passing as applied."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tasks.actuators import ActionLedger, ScaleAction, build_actuator
from tasks.actuators.process_pool import ProcessPoolActuator

# a worker that writes its index and exits cleanly on SIGTERM (as a real worker should)
WORKER = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "open(os.path.join(sys.argv[1], 'started-' + os.environ['CORTEX_WORKER_INDEX']), 'w').write(sys.argv[2])\n"
    "while True: time.sleep(0.05)\n"
)
# a worker that ignores SIGTERM (and says when it does), so only SIGKILL stops it
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'w').close()\n"
    "while True: time.sleep(0.05)\n"
)


@pytest.fixture
def ledger(tmp_path: Path) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"))


@pytest.fixture
def pool(tmp_path: Path, ledger: ActionLedger) -> Iterator[ProcessPoolActuator]:
    marks = tmp_path / "marks"
    marks.mkdir()
    act = build_actuator(
        {
            "kind": "process_pool",
            "argv": [sys.executable, "-c", WORKER, str(marks), "{target}:{index}"],
            "pid_dir": str(tmp_path / "pids"),
            "startup_grace_s": 0.2,
            "stop_timeout_s": 5,
        },
        ledger=ledger,
    )
    assert isinstance(act, ProcessPoolActuator)
    yield act
    _stop_all(act, "web")


def _stop_all(act: ProcessPoolActuator, target: str) -> None:
    for pid in act.workers(target).values():
        act._stop(pid)


def _d(id: str, to: int, target: str = "web") -> ScaleAction:
    return ScaleAction(id=id, target=target, to=to)


def _wait_for(cond: object, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_scales_real_processes_up_and_down(pool: ProcessPoolActuator, tmp_path: Path) -> None:
    assert pool.current("web") == 0
    up = pool.apply(_d("up", 3), dry_run=False)
    assert (up.status, up.observed) == ("applied", 3), up.error
    workers = pool.workers("web")
    assert sorted(workers) == [0, 1, 2]
    for pid in workers.values():
        assert psutil.Process(pid).is_running()
    assert _wait_for(lambda: len(list((tmp_path / "marks").glob("started-*"))) == 3)
    assert (tmp_path / "marks" / "started-2").read_text() == "web:2"
    assert json.loads((tmp_path / "pids" / "web" / "1.pid").read_text())["pid"] == workers[1]

    down = pool.apply(_d("down", 1), dry_run=False)
    assert (down.status, down.observed, down.detail["stopped_slots"]) == ("applied", 1, [2, 1])
    assert list(pool.workers("web")) == [0]
    for index in (1, 2):
        assert not psutil.pid_exists(workers[index])  # stopped and reaped: not even a zombie
        assert not (tmp_path / "pids" / "web" / f"{index}.pid").exists()
    assert psutil.Process(workers[0]).is_running()


def test_the_same_decision_starts_nothing_twice(pool: ProcessPoolActuator) -> None:
    assert pool.apply(_d("up", 2), dry_run=False).status == "applied"
    before = pool.workers("web")
    assert pool.apply(_d("up", 2), dry_run=False).status == "skipped"
    assert pool.workers("web") == before


def test_dry_run_starts_nothing(pool: ProcessPoolActuator) -> None:
    assert pool.apply(_d("up", 2)).status == "dry-run"
    assert pool.current("web") == 0


def test_a_new_actuator_instance_finds_the_pool_and_refills_a_dead_slot(
    pool: ProcessPoolActuator, ledger: ActionLedger
) -> None:
    assert pool.apply(_d("up", 3), dry_run=False).status == "applied"
    later = build_actuator(pool.config, ledger=ledger)  # as a later flow run would
    assert later.current("web") == 3
    victim = pool.workers("web")[1]
    os.kill(victim, 9)
    assert _wait_for(lambda: later.current("web") == 2)
    res = later.apply(_d("refill", 3), dry_run=False)
    assert res.status == "applied" and sorted(pool.workers("web")) == [0, 1, 2]
    assert pool.workers("web")[1] != victim


def test_a_reused_pid_is_not_counted(pool: ProcessPoolActuator, tmp_path: Path) -> None:
    slot_dir = tmp_path / "pids" / "web"
    slot_dir.mkdir(parents=True)
    # our own pid, but with another start time: some other process now holds that pid
    me = psutil.Process(os.getpid())
    (slot_dir / "0.pid").write_text(json.dumps({"pid": me.pid, "create_time": me.create_time() - 100}))
    (slot_dir / "1.pid").write_text("garbage")
    assert pool.current("web") == 0
    assert list(slot_dir.glob("*.pid")) == []


def test_a_worker_that_dies_at_once_fails_the_action(tmp_path: Path, ledger: ActionLedger) -> None:
    act = build_actuator(
        {
            "kind": "process_pool",
            "argv": [sys.executable, "-c", "import sys; sys.exit(2)"],
            "pid_dir": str(tmp_path / "pids"),
            "startup_grace_s": 0.5,
        },
        ledger=ledger,
    )
    res = act.apply(_d("up", 2), dry_run=False)
    assert res.status == "failed" and res.observed == 0 and "read back 0 after setting 2" in (res.error or "")


def test_a_worker_ignoring_sigterm_is_killed(tmp_path: Path, ledger: ActionLedger) -> None:
    act = build_actuator(
        {
            "kind": "process_pool",
            "argv": [sys.executable, "-c", STUBBORN, str(tmp_path / "ignoring")],
            "pid_dir": str(tmp_path / "pids"),
            "stop_timeout_s": 0.5,
        },
        ledger=ledger,
    )
    assert isinstance(act, ProcessPoolActuator)
    assert act.apply(_d("up", 1), dry_run=False).status == "applied"
    pid = act.workers("web")[0]
    assert _wait_for(lambda: (tmp_path / "ignoring").exists())
    t0 = time.monotonic()
    res = act.apply(_d("down", 0), dry_run=False)
    assert res.status == "applied" and res.observed == 0
    assert 0.5 <= time.monotonic() - t0 < 8
    assert not psutil.pid_exists(pid)


def test_over_max_workers_and_unsafe_target_fail(pool: ProcessPoolActuator) -> None:
    res = pool.apply(_d("big", 65), dry_run=False)
    assert res.status == "failed" and "over max_workers=64" in (res.error or "")
    bad = pool.apply(_d("x", 1, target="../etc"), dry_run=False)
    assert bad.status == "failed" and "not a safe directory name" in (bad.error or "")

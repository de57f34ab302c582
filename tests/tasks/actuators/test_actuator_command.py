"""The ``command`` actuator against real subprocesses: a tiny "scaler" script that keeps its count in a file.

What could break: the count not reaching the program (argument or environment), shell injection
through a value, a non-zero exit or a hung program passing as applied, and reading reality back."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tasks.actuators import ActionLedger, ScaleAction, build_actuator
from tasks.actuators.command import CommandActuator

SCALER = r"""
import os, sys, time
state = sys.argv[1]
mode = sys.argv[2]
if mode == "get":
    print(open(state).read().strip() if os.path.exists(state) else "0")
    sys.exit(0)
count = sys.argv[3]
if os.environ.get("FAIL"):
    print("quota exceeded for", os.environ["CORTEX_SCALE_TARGET"], file=sys.stderr)
    sys.exit(3)
if os.environ.get("HANG"):
    time.sleep(60)
assert count == os.environ["CORTEX_SCALE_COUNT"], (count, os.environ["CORTEX_SCALE_COUNT"])
with open(state + ".log", "a") as f:
    f.write(f"{os.environ['CORTEX_DECISION_ID']} {os.environ['CORTEX_SCALE_FROM']} {count}\n")
open(state, "w").write(str(int(count) + int(os.environ.get("SKEW", "0"))))
print("scaled to", count)
"""


@pytest.fixture
def scaler(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "scaler.py"
    script.write_text(SCALER)
    return script, tmp_path / "count.txt"


@pytest.fixture
def ledger(tmp_path: Path) -> ActionLedger:
    return ActionLedger(str(tmp_path / "state.duckdb"))


def _config(script: Path, state: Path, **extra: object) -> dict[str, object]:
    return {
        "kind": "command",
        "argv": [sys.executable, str(script), str(state), "set", "{count}"],
        "current_argv": [sys.executable, str(script), str(state), "get"],
        **extra,
    }


def _d(id: str, to: int, target: str = "api") -> ScaleAction:
    return ScaleAction.model_validate({"id": id, "target": target, "to": to, "from": 2})


def test_runs_the_argv_with_the_count_and_reads_it_back(scaler: tuple[Path, Path], ledger: ActionLedger) -> None:
    script, state = scaler
    act = build_actuator(_config(script, state), ledger=ledger)
    assert isinstance(act, CommandActuator)
    assert act.current("api") == 0
    res = act.apply(_d("d1", 4), dry_run=False)
    assert (res.status, res.observed) == ("applied", 4), res.error
    assert "scaled to 4" in res.detail["stdout_tail"]
    assert state.read_text() == "4" and act.current("api") == 4
    # idempotent: the same decision id does not run the program again
    assert act.apply(_d("d1", 4), dry_run=False).status == "skipped"
    assert Path(f"{state}.log").read_text().splitlines() == ["d1 2 4"]


def test_dry_run_does_not_run_the_program(scaler: tuple[Path, Path], ledger: ActionLedger) -> None:
    script, state = scaler
    res = build_actuator(_config(script, state), ledger=ledger).apply(_d("d1", 4))
    assert res.status == "dry-run" and not state.exists()


def test_values_stay_one_argument_no_shell(tmp_path: Path, ledger: ActionLedger) -> None:
    out = tmp_path / "argv.txt"
    probe = tmp_path / "probe.py"
    probe.write_text("import sys, json; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))")
    act = build_actuator(
        {"kind": "command", "argv": [sys.executable, str(probe), str(out), "--target={target}", "{count}", "$HOME"]},
        ledger=ledger,
    )
    evil = "api; touch pwned"
    res = act.apply(_d("d1", 2, target=evil), dry_run=False)
    assert res.status == "applied", res.error
    assert out.read_text() == '["--target=api; touch pwned", "2", "$HOME"]'
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_non_zero_exit_is_a_recorded_failure_with_stderr_and_the_retry_applies(
    scaler: tuple[Path, Path], ledger: ActionLedger
) -> None:
    script, state = scaler
    failing = build_actuator(_config(script, state, env={"FAIL": "1"}), ledger=ledger)
    res = failing.apply(_d("d1", 3), dry_run=False)
    assert res.status == "failed"
    assert "exited with code 3" in (res.error or "") and "quota exceeded for api" in (res.error or "")
    healthy = build_actuator(_config(script, state), ledger=ledger)
    assert healthy.apply(_d("d1", 3), dry_run=False).status == "applied"
    assert state.read_text() == "3"


def test_a_hung_program_is_killed_at_the_timeout(scaler: tuple[Path, Path], ledger: ActionLedger) -> None:
    script, state = scaler
    act = build_actuator(_config(script, state, env={"HANG": "1"}, timeout_s=1), ledger=ledger)
    t0 = time.monotonic()
    res = act.apply(_d("d1", 3), dry_run=False)
    assert time.monotonic() - t0 < 10
    assert res.status == "failed" and "timed out after 1s" in (res.error or "")


def test_a_program_that_sets_another_count_fails_the_read_back(scaler: tuple[Path, Path], ledger: ActionLedger) -> None:
    script, state = scaler
    res = build_actuator(_config(script, state, env={"SKEW": "1"}), ledger=ledger).apply(_d("d1", 3), dry_run=False)
    assert res.status == "failed" and res.observed == 4 and "read back 4 after setting 3" in (res.error or "")


def test_missing_program_and_no_way_to_read(tmp_path: Path, ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "command", "argv": [str(tmp_path / "nope"), "{count}"]}, ledger=ledger)
    res = act.apply(_d("d1", 1), dry_run=False)
    assert res.status == "failed" and "cannot run" in (res.error or "")
    with pytest.raises(Exception, match="no current_argv configured and nothing applied yet"):
        act.current("api")
    # without current_argv, what was applied last stands for reality
    ok = build_actuator({"kind": "command", "argv": ["true", "{count}"]}, ledger=ledger)
    assert ok.apply(_d("d2", 5), dry_run=False).status == "applied"
    assert ok.current("api") == 5


def test_current_argv_printing_garbage_is_an_error(tmp_path: Path, ledger: ActionLedger) -> None:
    act = build_actuator({"kind": "command", "argv": ["true"], "current_argv": ["echo", "lots"]}, ledger=ledger)
    with pytest.raises(Exception, match="printed 'lots', expected one integer"):
        act.current("api")

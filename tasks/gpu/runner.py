"""The launcher wrapper of a local GPU task: runs the command, waits, reports how it ended.

    python -m tasks.gpu.runner --state data/state.duckdb --task ID -- PROGRAM ARGS…

Why a wrapper (and not the command itself under the placer): the placer (``gpu place``, the gpu
flow) exits long before the work ends. The wrapper's pid answers for the task's reservation: it
marks the task ``done``/``failed`` with the exit code when the command ends, and if the wrapper
itself dies without a word the queue sees its pid gone and releases the reservation (``lost``).
SIGTERM/SIGINT are passed on to the command, so cancelling a task stops its work.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from types import FrameType

from tasks.gpu.queue import GpuQueue
from tasks.state import State


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tasks.gpu.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", required=True, help="the state DB file")
    ap.add_argument("--task", required=True, help="the task id")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="state DB lock timeout")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS…")
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command after --")
    queue = GpuQueue(State(a.state, timeout_s=a.timeout_s))
    try:
        child = subprocess.Popen(command)
    except OSError as e:
        queue.finish(a.task, "failed", exit_code=127, reason=f"could not start: {e.strerror or e}")
        return 127

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    # a cancelled task is already 'cancelled': finish() changes only a running one
    queue.finish(
        a.task, "done" if code == 0 else "failed", exit_code=code, reason=None if code == 0 else f"exit {code}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

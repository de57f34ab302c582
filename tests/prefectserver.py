"""A real ``prefect server start`` on 127.0.0.1 for tests that need a separate Prefect API process
(deploying from prefect.yaml, process workers, the work-pool actuator): one place for the offline
environment, the health wait with the server's log on failure, and the SIGTERM-then-kill stop.

Why not ``prefect_test_harness`` (``tests/flows/conftest.py``): it serves the API inside the test
process; these tests need a server that other processes (the ``prefect`` CLI, a worker) reach by URL.
The session fixture ``prefect_server`` in ``tests/conftest.py`` starts one per session with this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

#: The ``prefect`` CLI of the interpreter running the tests (the project's venv).
PREFECT = str(Path(sys.executable).parent / "prefect")


def clean_env() -> dict[str, str]:
    """The process environment without ``PREFECT_*``/``CORTEX_PERF_*`` settings, offline and untracked:
    the developer's own profile or lake must never leak into a test's server, CLI or worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CORTEX_PERF_"))}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    return env


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (Prefect servers and workers shut down cleanly on it), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def running_server(home: Path, port: int, startup_timeout_s: float = 150.0) -> Iterator[str]:
    """Start ``prefect server start`` with its database under ``home``; yield its API URL once
    ``/health`` answers; stop it on exit. No UI, no scheduler: only runs a test creates execute.

    The generous start-up limit is for a busy 2-core machine (15–25 s is usual, much more under load)."""
    env = clean_env()
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        }
    )
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        api = f"http://127.0.0.1:{port}/api"
        try:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"prefect server exited early:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"prefect server not healthy in {startup_timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.5)
            yield api
        finally:
            stop_process(proc)

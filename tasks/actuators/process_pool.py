"""The ``process_pool`` actuator: runs N copies of a worker command on this machine (the demo's cluster).

Why pid files: the pool must outlive the process that scaled it (a flow run ends, the next one
must find the workers), so each worker slot ``<pid_dir>/<target>/<index>.pid`` records its pid and
the process's start time. The start time guards against pid reuse: a pid whose process started at
another time is not ours, and its slot counts as empty. ``current`` counts live workers only.

Guarantees: scaling takes an exclusive file lock per target, so two appliers never race; it fills
the lowest empty slots on the way up and stops the highest on the way down (SIGTERM to the
worker's process group, SIGKILL after ``stop_timeout_s``, then the zombie is reaped when it is our
child); after ``startup_grace_s`` the live workers are counted again, and a worker that died at
once makes the action fail rather than pass as applied. Workers get ``CORTEX_WORKER_INDEX`` and
``CORTEX_SCALE_TARGET`` and log to ``<index>.log`` beside their pid file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import Field, field_validator

from tasks.actuators.action import ScaleAction
from tasks.actuators.base import ActuatorConfig, CountActuator
from tasks.actuators.errors import ActuatorError

__all__ = ["ProcessPoolActuator", "ProcessPoolConfig"]

_SAFE_TARGET = re.compile(r"^[A-Za-z0-9_.-]+$")
#: workers this process started, so stopping one also reaps it (no zombies in a long-lived caller)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ProcessPoolConfig(ActuatorConfig):
    """``argv``: the worker command (``{index}`` and ``{target}`` are filled in); ``pid_dir`` holds the slots."""

    kind: Literal["process_pool"] = "process_pool"
    argv: list[str]
    pid_dir: str
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    max_workers: int = Field(64, ge=1, le=1024)
    stop_timeout_s: float = Field(10.0, gt=0, le=300)
    startup_grace_s: float = Field(0.3, ge=0, le=60)

    @field_validator("argv")
    @classmethod
    def _v_argv(cls, v: list[str]) -> list[str]:
        if not v or not v[0].strip():
            raise ValueError("must name a program (a non-empty list)")
        for item in v:
            try:
                item.format(index=0, target="t")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"item {item!r}: unknown placeholder {exc} (known: {{index}}, {{target}})") from None
        return v


class ProcessPoolActuator(CountActuator):
    kind = "process_pool"
    config_model = ProcessPoolConfig
    config: ProcessPoolConfig

    @property
    def lease_s(self) -> float:
        return self.config.max_workers * (self.config.stop_timeout_s + 1) + 60

    def _dir(self, target: str) -> Path:
        if not _SAFE_TARGET.match(target):
            raise ActuatorError(f"{self.name}: target {target!r} is not a safe directory name ([A-Za-z0-9_.-])")
        d = Path(self.config.pid_dir) / target
        d.mkdir(parents=True, exist_ok=True)
        return d

    @contextlib.contextmanager
    def _locked(self, target: str) -> Iterator[Path]:
        d = self._dir(target)
        with (d / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def workers(self, target: str) -> dict[int, int]:
        """Live workers of ``target`` as ``{slot index: pid}`` (stale pid files are removed)."""
        with self._locked(target) as d:
            return self._live(d)

    def _read(self, target: str) -> int:
        return len(self.workers(target))

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        if action.to > self.config.max_workers:
            raise ActuatorError(f"{self.name}: {action.to} workers is over max_workers={self.config.max_workers}")
        with self._locked(action.target) as d:
            live = self._live(d)
            started: list[int] = []
            stopped: list[int] = []
            if len(live) < action.to:
                free = (i for i in range(self.config.max_workers) if i not in live)
                for index in [next(free) for _ in range(action.to - len(live))]:
                    live[index] = self._start(d, action.target, index)
                    started.append(live[index])
                if self.config.startup_grace_s:
                    time.sleep(self.config.startup_grace_s)
            elif len(live) > action.to:
                for index in sorted(live, reverse=True)[: len(live) - action.to]:
                    self._stop(live.pop(index))
                    (d / f"{index}.pid").unlink(missing_ok=True)
                    stopped.append(index)
            detail.update({"started_pids": started, "stopped_slots": stopped})
            after = self._live(d)
            detail["pids"] = sorted(after.values())
            return len(after)

    # --- slots --------------------------------------------------------------------------------

    def _live(self, d: Path) -> dict[int, int]:
        live: dict[int, int] = {}
        for f in d.glob("*.pid"):
            try:
                rec = json.loads(f.read_text())
                index, pid, started = int(f.stem), int(rec["pid"]), float(rec["create_time"])
            except (ValueError, KeyError, OSError, TypeError):
                f.unlink(missing_ok=True)
                continue
            if _alive(pid, started):
                live[index] = pid
            else:
                _reap(pid)
                f.unlink(missing_ok=True)
        return live

    def _start(self, d: Path, target: str, index: int) -> int:
        argv = [item.format(index=index, target=target) for item in self.config.argv]
        env = {**os.environ, **self.config.env, "CORTEX_WORKER_INDEX": str(index), "CORTEX_SCALE_TARGET": target}
        with (d / f"{index}.log").open("ab") as logf:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.config.cwd,
                    start_new_session=True,  # its own group: stopping it stops its children too
                )
            except OSError as exc:
                raise ActuatorError(f"{self.name}: worker {argv[0]!r} cannot start: {exc.strerror or exc}") from None
        _CHILDREN[proc.pid] = proc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = 0.0  # died already: the next _live() drops the slot
        tmp = d / f".{index}.pid.tmp"
        tmp.write_text(json.dumps({"pid": proc.pid, "create_time": create_time, "argv": argv}))
        tmp.replace(d / f"{index}.pid")
        return proc.pid

    def _stop(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if not _wait_gone(pid, self.config.stop_timeout_s):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not _wait_gone(pid, 5.0):
                raise ActuatorError(f"{self.name}: worker pid {pid} survived SIGKILL")


def _alive(pid: int, create_time: float) -> bool:
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - create_time) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited (and reap it when it is our child)."""
    deadline = time.monotonic() + timeout_s
    proc = _CHILDREN.get(pid)
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                _CHILDREN.pop(pid, None)
                return True
        else:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
        time.sleep(0.02)
    return False

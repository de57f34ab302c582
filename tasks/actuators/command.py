"""The ``command`` actuator: runs a configured program with the new count (no shell).

Why argv and no shell: the count, target and decision id go into the arguments as separate items,
so no value can inject shell syntax, and what runs is exactly what the config shows. The program
gets the count both as ``{count}`` in its arguments and as ``CORTEX_SCALE_COUNT`` in its
environment, and must set an **absolute** count (so re-running it after a failure is safe).

Guarantees: the exit code is checked and a non-zero code, a timeout (the whole process group is
killed) or a missing program is a recorded failure with the stderr tail; when ``current_argv`` is
configured the count is read back after the change, otherwise the exit code is the only evidence
and the count applied last (from the ledger) stands for reality.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any, Literal

from pydantic import Field, field_validator

from tasks.actuators.action import ScaleAction
from tasks.actuators.base import ActuatorConfig, CountActuator
from tasks.actuators.errors import ActuatorError

__all__ = ["CommandActuator", "CommandConfig", "render_argv"]

_PLACEHOLDERS = {"count": 0, "target": "t", "decision_id": "d", "from": 0}


def _check_argv(argv: list[str]) -> list[str]:
    if not argv or not argv[0].strip():
        raise ValueError("must name a program (a non-empty list, e.g. ['kubectl', 'scale', …])")
    for item in argv:
        try:
            item.format(**_PLACEHOLDERS)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"item {item!r}: unknown placeholder {exc} (known: {', '.join('{' + k + '}' for k in _PLACEHOLDERS)}; "
                "write {{ and }} for literal braces)"
            ) from None
    return argv


class CommandConfig(ActuatorConfig):
    """``argv``: program and arguments; ``{count}``, ``{target}``, ``{decision_id}``, ``{from}`` are filled in.

    ``current_argv`` (optional) prints the current count on stdout, so the actuator can read reality."""

    kind: Literal["command"] = "command"
    argv: list[str]
    current_argv: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout_s: float = Field(60.0, gt=0, le=3600)

    _v_argv = field_validator("argv")(_check_argv)

    @field_validator("current_argv")
    @classmethod
    def _v_current(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_argv(v)


def render_argv(
    argv: list[str], *, count: int, target: str, decision_id: str = "", from_: int | None = None
) -> list[str]:
    """Fill the placeholders of each item (each stays ONE argument, whatever the values hold)."""
    values = {"count": count, "target": target, "decision_id": decision_id, "from": "" if from_ is None else from_}
    return [item.format(**values) for item in argv]


class CommandActuator(CountActuator):
    kind = "command"
    config_model = CommandConfig
    config: CommandConfig

    @property
    def lease_s(self) -> float:
        return 2 * self.config.timeout_s + 30

    def _read(self, target: str) -> int:
        if self.config.current_argv is None:
            return self._ledger_count(target, "no current_argv configured and nothing applied yet")
        argv = render_argv(self.config.current_argv, count=0, target=target)
        out = self._run(argv, {"CORTEX_SCALE_TARGET": target}, what="current_argv")
        text = out.strip().splitlines()[-1].strip() if out.strip() else ""
        try:
            value = int(text)
        except ValueError:
            raise ActuatorError(f"{self.name}: current_argv printed {text[:80]!r}, expected one integer") from None
        if value < 0:
            raise ActuatorError(f"{self.name}: current_argv printed a negative count {value}")
        return value

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        argv = render_argv(
            self.config.argv, count=action.to, target=action.target, decision_id=action.id, from_=action.from_
        )
        env = {
            "CORTEX_SCALE_COUNT": str(action.to),
            "CORTEX_SCALE_TARGET": action.target,
            "CORTEX_DECISION_ID": action.id,
            "CORTEX_SCALE_FROM": "" if action.from_ is None else str(action.from_),
        }
        out = self._run(argv, env, what="argv")
        detail["stdout_tail"] = out[-500:]
        if self.config.current_argv is None:
            return action.to
        return self._read(action.target)

    def _run(self, argv: list[str], extra_env: dict[str, str], *, what: str) -> str:
        env = {**os.environ, **self.config.env, **extra_env}
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.config.cwd,
                text=True,
                start_new_session=True,  # its own process group, so a timeout kills its children too
            )
        except OSError as exc:
            raise ActuatorError(f"{self.name}: {what} {argv[0]!r} cannot run: {exc.strerror or exc}") from None
        try:
            out, err = proc.communicate(timeout=self.config.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ActuatorError(f"{self.name}: {what} {argv[0]!r} timed out after {self.config.timeout_s:g}s") from None
        if proc.returncode != 0:
            tail = (err or out).strip()[-400:]
            raise ActuatorError(f"{self.name}: {what} {argv[0]!r} exited with code {proc.returncode}: {tail}")
        return out

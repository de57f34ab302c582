"""A request for GPU work, checked: what ``gpu submit`` and the API accept, with one-line errors.

Why its own module: the CLI, the queue and (later) the REST/MCP faces take the same request, and
every bad value must be refused before anything is queued, naming the field and the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.gpu.cluster import TaskShape

__all__ = ["MAX_GPUS", "MAX_MEMORY_BYTES", "GpuRequest", "RequestError", "parse_bytes"]

#: Bounds on what one task may ask for (sizes are bounded everywhere user text turns into numbers).
MAX_GPUS = 64
MAX_MEMORY_BYTES = 1 << 40  # 1 TiB per GPU: more than any GPU has
MAX_PRIORITY = 1000
MAX_COMMAND_CHARS = 8192
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_BYTES = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_OWNER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DEPLOYMENT = re.compile(r"^[^/\s]{1,128}/[^/\s]{1,128}$")


class RequestError(ValueError):
    """A bad request: the message names the field and the value."""


def parse_bytes(text: str | int, *, field_name: str = "memory") -> int:
    """``"20GiB"``, ``"512MiB"``, ``"1.5GB"``, ``"1073741824"`` → bytes (binary suffixes K/M/G = KiB…)."""
    if isinstance(text, int):
        value = float(text)
        unit = ""
    else:
        m = _BYTES.match(text)
        if not m or m.group(2).lower() not in _UNITS:
            raise RequestError(f"{field_name}: {text!r} is not a size such as 20GiB, 512MiB or 1073741824")
        value, unit = float(m.group(1)), m.group(2).lower()
    if value < 0:
        raise RequestError(f"{field_name}: {text!r} is negative")
    out = int(value * _UNITS[unit])
    if out > MAX_MEMORY_BYTES:
        raise RequestError(f"{field_name}: {text!r} is over the 1 TiB bound")
    return out


@dataclass(frozen=True)
class GpuRequest:
    """One task to queue: a local command (argv) or a Prefect deployment (``flow/deployment`` and its
    parameters), its GPU shape, priority, whether it may be preempted, how long it may wait, whose."""

    kind: Literal["command", "deployment"]
    gpus: int
    command: tuple[str, ...] = ()
    deployment: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    fraction: float = 1.0
    memory_bytes: int = 0
    priority: int = 0
    preemptible: bool = False
    max_wait_s: float | None = None
    owner: str = "default"

    def __post_init__(self) -> None:
        if self.kind == "command":
            if not self.command or not self.command[0].strip():
                raise RequestError("command: empty (give the program and its arguments)")
            if sum(len(a) for a in self.command) > MAX_COMMAND_CHARS:
                raise RequestError(f"command: over {MAX_COMMAND_CHARS} characters")
        elif self.kind == "deployment":
            if not self.deployment or not _DEPLOYMENT.match(self.deployment):
                raise RequestError(f"deployment: {self.deployment!r} is not FLOW/DEPLOYMENT")
        else:
            raise RequestError(f"kind: {self.kind!r} is not command or deployment")
        if not 1 <= self.gpus <= MAX_GPUS:
            raise RequestError(f"gpus: {self.gpus} is not between 1 and {MAX_GPUS}")
        if not 0 < self.fraction <= 1:
            raise RequestError(f"gpu-fraction: {self.fraction:g} is not in (0, 1]")
        if self.fraction < 1 and self.gpus > 1:
            raise RequestError(f"gpu-fraction: {self.fraction:g} with gpus={self.gpus} (a fraction needs gpus=1)")
        if not 0 <= self.memory_bytes <= MAX_MEMORY_BYTES:
            raise RequestError(f"memory: {self.memory_bytes} bytes is negative or over 1 TiB")
        if not -MAX_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise RequestError(f"priority: {self.priority} is not between -{MAX_PRIORITY} and {MAX_PRIORITY}")
        if self.max_wait_s is not None and not 0 < self.max_wait_s <= 365 * 86400:
            raise RequestError(f"max-wait: {self.max_wait_s:g}s is not between 0 and a year")
        if not _OWNER.match(self.owner):
            raise RequestError(f"owner: {self.owner!r} is not 1-64 letters, digits or _.@-")

    @property
    def shape(self) -> TaskShape:
        return TaskShape.from_request(self.gpus, self.fraction, self.memory_bytes)

    def check_fits(self, max_gpus: int | None, max_memory_bytes: int | None = None) -> None:
        """Refuse a request no node of the fleet could ever take (``None``: not known, not checked)."""
        if max_gpus is not None and self.gpus > max_gpus:
            raise RequestError(f"gpus: {self.gpus} is more than any node has (the largest has {max_gpus})")
        if max_memory_bytes is not None and self.memory_bytes > max_memory_bytes:
            raise RequestError(
                f"memory: {self.memory_bytes} bytes per GPU is more than any GPU has ({max_memory_bytes} bytes)"
            )

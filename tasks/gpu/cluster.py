"""The placement model: nodes, each with GPUs that have a free share and free memory, and task shapes.

Why a model of its own (and not the inventory's device objects): placement needs only what is free
where, as numpy arrays it can scan in microseconds, and the same model is filled from NVML/DCGM
devices (:func:`cluster_from_devices`), from a trace (``tasks.gpu.trace``) or by hand in tests.

Units. GPU compute is counted in *milli-GPUs* (1000 = one whole GPU), the unit of the Alibaba trace
and of Kubernetes GPU-sharing schedulers, so a fractional request (``0 < fraction < 1``) and whole
GPUs add up exactly, without float drift. GPU memory is in bytes; host CPU in milli-CPUs and host
memory in MiB (only the trace has them; a device fleet leaves them unlimited).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "UNLIMITED",
    "Cluster",
    "DeviceRecord",
    "NodeSpec",
    "PlaceableDevice",
    "Placement",
    "TaskShape",
    "cluster_from_devices",
]

#: Free memory/CPU of a resource nobody measures (a trace without GPU memory, a fleet without host
#: CPU figures): large enough never to bind, small enough to add up in int64.
UNLIMITED = 1 << 60
WHOLE = 1000  # milli-GPUs in one GPU


@dataclass(frozen=True)
class TaskShape:
    """What one task asks for. ``gpus`` whole GPUs, or (``gpus == 1``) ``milli`` < 1000 of one GPU
    (a shared GPU); ``gpus == 0`` is a CPU-only task (the trace has them: they still take CPU)."""

    gpus: int
    milli: int = WHOLE
    memory_bytes: int = 0  # GPU memory per GPU
    cpu_milli: int = 0
    host_memory_mib: int = 0

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError(f"gpus: {self.gpus} is negative")
        if self.gpus == 0 and self.milli not in (0, WHOLE):
            raise ValueError("gpu fraction: a task with 0 GPUs has no fraction")
        if self.gpus > 0 and not 0 < self.milli <= WHOLE:
            raise ValueError(f"gpu fraction: {self.milli / WHOLE:g} is not in (0, 1]")
        if self.gpus > 1 and self.milli != WHOLE:
            raise ValueError(f"gpu fraction: {self.milli / WHOLE:g} with gpus={self.gpus} (a fraction needs gpus=1)")
        for name in ("memory_bytes", "cpu_milli", "host_memory_mib"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} is negative")

    @property
    def gpu_milli(self) -> int:
        """All the GPU compute it takes, in milli-GPUs."""
        return 0 if self.gpus == 0 else self.gpus * self.milli

    @property
    def whole(self) -> bool:
        return self.gpus >= 1 and self.milli == WHOLE

    @classmethod
    def from_request(
        cls, gpus: int, fraction: float = 1.0, memory_bytes: int = 0, *, cpu_milli: int = 0, host_memory_mib: int = 0
    ) -> TaskShape:
        """From a user's request: ``fraction`` a share of one GPU (rounded to a milli-GPU)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"gpu fraction: {fraction:g} is not in (0, 1]")
        milli = max(1, round(fraction * WHOLE))
        return cls(gpus, WHOLE if gpus == 0 else milli, memory_bytes, cpu_milli, host_memory_mib)


@dataclass(frozen=True)
class NodeSpec:
    """One node as the model is built from it: its GPUs (free milli and free memory each, plus the id
    a launched process is given: an index or a UUID) and its host resources."""

    name: str
    gpu_free_milli: Sequence[int]
    gpu_free_memory: Sequence[int] | None = None  # bytes; None: not known (never binds)
    gpu_ids: Sequence[str] | None = None  # default: "0", "1", …
    cpu_free_milli: int = UNLIMITED
    host_free_mib: int = UNLIMITED


@dataclass(frozen=True)
class Placement:
    """Where one task goes: node (index and name), its GPUs (slot indices and device ids), and the
    milli-GPUs it takes on each of them."""

    node: int
    node_name: str
    gpus: tuple[int, ...]
    device_ids: tuple[str, ...]
    milli: int

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node_name, "gpus": list(self.gpus), "devices": list(self.device_ids), "milli": self.milli}


@dataclass
class Cluster:
    """Free resources per node as arrays. GPU slots a node lacks (nodes have up to ``width`` GPUs)
    hold -1 free milli, so no comparison ever finds them fitting."""

    names: list[str]
    gpu_free: npt.NDArray[np.int64]  # [N, W] milli; -1 = no such GPU
    gpu_mem: npt.NDArray[np.int64]  # [N, W] bytes
    cpu_free: npt.NDArray[np.int64]  # [N]
    host_free: npt.NDArray[np.int64]  # [N]
    gpu_ids: list[list[str]] = field(default_factory=list)
    #: bumped on every change of node n (strategies cache per-node figures and check it)
    version: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.version = np.zeros(len(self.names), dtype=np.int64)
        self.gpu_count = (self.gpu_free >= 0).sum(axis=1)
        self.capacity_milli = int(self.gpu_count.sum()) * WHOLE

    @classmethod
    def from_nodes(cls, nodes: Iterable[NodeSpec]) -> Cluster:
        nodes = list(nodes)
        width = max([len(n.gpu_free_milli) for n in nodes] + [1])
        n = len(nodes)
        free = np.full((n, width), -1, dtype=np.int64)
        mem = np.full((n, width), -1, dtype=np.int64)
        ids: list[list[str]] = []
        for i, spec in enumerate(nodes):
            k = len(spec.gpu_free_milli)
            if any(not 0 <= m <= WHOLE for m in spec.gpu_free_milli):
                raise ValueError(f"node {spec.name}: a GPU's free share is outside 0..1000 milli")
            free[i, :k] = spec.gpu_free_milli
            mem[i, :k] = spec.gpu_free_memory if spec.gpu_free_memory is not None else [UNLIMITED] * k
            ids.append(list(spec.gpu_ids) if spec.gpu_ids is not None else [str(j) for j in range(k)])
            if len(ids[-1]) != k:
                raise ValueError(f"node {spec.name}: {k} GPUs but {len(ids[-1])} device ids")
        return cls(
            [s.name for s in nodes],
            free,
            mem,
            np.array([s.cpu_free_milli for s in nodes], dtype=np.int64),
            np.array([s.host_free_mib for s in nodes], dtype=np.int64),
            ids,
        )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def width(self) -> int:
        return int(self.gpu_free.shape[1])

    @property
    def max_gpus(self) -> int:
        """The most GPUs any one node has: a task asking for more can never be placed."""
        return int(self.gpu_count.max()) if len(self) else 0

    def free_milli(self) -> int:
        """Free GPU compute over the cluster, in milli-GPUs."""
        return int(np.clip(self.gpu_free, 0, None).sum())

    def unallocated_gpus(self) -> float:
        """GPUs' worth of compute nobody holds (the packing benchmark's figure)."""
        return self.free_milli() / WHOLE

    def fits(self, task: TaskShape) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """``(node_ok[N], gpu_ok[N, W])``: the nodes that can take ``task`` and, on them, the GPUs it
        may use (a whole-GPU task only fully free ones)."""
        node_ok = (self.cpu_free >= task.cpu_milli) & (self.host_free >= task.host_memory_mib)
        if task.gpus == 0:
            return node_ok, np.zeros_like(self.gpu_free, dtype=bool)
        gpu_ok = (self.gpu_free >= task.milli) & (self.gpu_mem >= task.memory_bytes)
        node_ok &= gpu_ok.sum(axis=1) >= task.gpus
        return node_ok, gpu_ok

    def placement(self, node: int, gpus: Sequence[int], task: TaskShape) -> Placement:
        gs = tuple(int(g) for g in gpus)
        return Placement(node, self.names[node], gs, tuple(self.gpu_ids[node][g] for g in gs), task.milli)

    def allocate(self, p: Placement, task: TaskShape) -> None:
        """Take ``task``'s resources at ``p`` (the caller chose a placement that fits)."""
        for g in p.gpus:
            if self.gpu_free[p.node, g] < task.milli or self.gpu_mem[p.node, g] < task.memory_bytes:
                raise ValueError(f"node {p.node_name} GPU {g}: not enough free for this task")
        for g in p.gpus:
            self.gpu_free[p.node, g] -= task.milli
            self.gpu_mem[p.node, g] -= task.memory_bytes
        self.cpu_free[p.node] -= task.cpu_milli
        self.host_free[p.node] -= task.host_memory_mib
        self.version[p.node] += 1

    def release(self, p: Placement, task: TaskShape) -> None:
        """Give back what :meth:`allocate` took (a task that ended)."""
        for g in p.gpus:
            self.gpu_free[p.node, g] += task.milli
            self.gpu_mem[p.node, g] += task.memory_bytes
        self.cpu_free[p.node] += task.cpu_milli
        self.host_free[p.node] += task.host_memory_mib
        self.version[p.node] += 1


class PlaceableDevice(Protocol):
    """What placement needs of an inventory device (``tasks.gpu.model`` fills it): where it is, how it
    is named to a launched process, and its memory."""

    @property
    def host(self) -> str | None: ...  # None: the local machine (NVML) — name it first (tasks.gpu.service.placeable)
    @property
    def index(self) -> int: ...
    @property
    def uuid(self) -> str | None: ...
    @property
    def memory_total_bytes(self) -> int | None: ...
    @property
    def memory_used_bytes(self) -> int | None: ...


def cluster_from_devices(
    devices: Iterable[PlaceableDevice], reserved: Iterable[tuple[str, str, int, int]] = ()
) -> Cluster:
    """The placement model of a device fleet: one node per host, one slot per device, free memory as
    the device reports it. ``reserved`` = ``(host, device id, milli, memory bytes)`` held by the
    queue's running tasks: a reservation stands until its task ends, whatever the device says, so a
    task still starting up (no memory used yet) is not double-booked.

    The seam for the inventory's device model: any object with the :class:`PlaceableDevice`
    attributes will do. Device ids are UUIDs where known (stable across reboots and
    ``CUDA_DEVICE_ORDER``), else indices."""
    hosts: dict[str, list[PlaceableDevice]] = {}
    for d in devices:
        hosts.setdefault(d.host or "", []).append(d)
    held: dict[tuple[str, str], tuple[int, int]] = {}
    for host, dev, milli, mem in reserved:
        m0, b0 = held.get((host, dev), (0, 0))
        held[(host, dev)] = (m0 + milli, b0 + mem)
    nodes = []
    for host, devs in hosts.items():
        devs.sort(key=lambda d: d.index)
        ids = [d.uuid or str(d.index) for d in devs]
        free_milli, free_mem = [], []
        for d, dev_id in zip(devs, ids, strict=True):
            milli, mem = held.get((host, dev_id), (0, 0))
            free_milli.append(max(0, WHOLE - milli))
            total, used = d.memory_total_bytes, d.memory_used_bytes
            if total is None:
                free_mem.append(UNLIMITED)
            else:
                # the larger of what is in use and what is reserved: a reserved task's own use is in both
                free_mem.append(max(0, total - max(used or 0, mem)))
        nodes.append(NodeSpec(host, free_milli, free_mem, ids))
    return Cluster.from_nodes(nodes)


@dataclass(frozen=True)
class DeviceRecord:
    """A device as a JSON fleet file gives it (``gpu place --devices FILE``): for fleets declared by
    hand, and for tests, until the inventory's model fills :class:`PlaceableDevice` itself."""

    host: str
    index: int
    uuid: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeviceRecord:
        try:
            return cls(
                str(d["host"]),
                int(d["index"]),
                None if d.get("uuid") is None else str(d["uuid"]),
                None if d.get("memory_total_bytes") is None else int(d["memory_total_bytes"]),
                None if d.get("memory_used_bytes") is None else int(d["memory_used_bytes"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"devices: an entry lacks host/index or has a bad value ({e})") from None

"""Placement strategies behind one interface: ``Strategy.place(cluster, task) -> Placement | None``.

* ``best_fit`` (bin-pack): the node whose free GPU compute after placement is smallest; for a
  shared (fractional) task the fullest GPU it fits on.
* ``first_fit``: the first node (and GPUs) in order that fit.
* ``spread`` (least loaded, worst-fit): the node with the most free GPU compute after placement;
  for a shared task the emptiest GPU.
* ``random``: a random node and GPUs that fit (a baseline for the benchmark, not a default).
* ``fragmentation_aware`` (FGD, Weng et al., USENIX ATC '23): the node and GPUs whose expected
  fragmentation against the recent workload (the last :data:`DEFAULT_WINDOW` tasks,
  ``tasks.gpu.fragmentation``) grows least.

Every strategy places only where the task fits (GPUs, GPU memory, host CPU and memory) and returns
``None`` when it fits nowhere; it does not change the cluster (the caller allocates). Ties go to
the lower node and GPU index, so decisions are reproducible.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from tasks.gpu.cluster import WHOLE, Cluster, Placement, TaskShape
from tasks.gpu.fragmentation import usable_by_class
from tasks.gpu.workload import Workload

__all__ = [
    "DEFAULT_WINDOW",
    "STRATEGIES",
    "BestFit",
    "FirstFit",
    "FragmentationAware",
    "RandomFit",
    "Spread",
    "Strategy",
    "make_strategy",
]

#: How many recent tasks the fragmentation-aware strategy's target workload counts when it is not
#: given one. Measured (BENCHMARKS.md, "GPU placement"): on the Alibaba fill experiment the last
#: 500 beat counting every task so far by 6 / 12 / 17 unallocated GPUs on seeds 1-3 / 4-6 / 7-9 and
#: by 11 GPUs over 15 seeds; 250 and 2,000 were about as good as 500 on seeds 1-3, 1,000 was not.
#: The stream there is drawn from a fixed mix, so the window does not win by tracking drift; for a
#: fleet whose mix does drift it is also the "recent mix of task shapes" FGD is measured against.
DEFAULT_WINDOW = 500
_SCALE = 100_000.0  # primary × this + secondary: both are at most 8,000 milli-GPUs per node


class Strategy(ABC):
    """Chooses where one task goes."""

    name: ClassVar[str]

    @abstractmethod
    def place(self, cluster: Cluster, task: TaskShape) -> Placement | None:
        """Where ``task`` should go now, or ``None`` if it fits nowhere."""


def _node_free(cluster: Cluster) -> npt.NDArray[np.int64]:
    return np.clip(cluster.gpu_free, 0, None).sum(axis=1)


def _first_gpus(gpu_ok_row: npt.NDArray[np.bool_], k: int) -> list[int]:
    return [int(g) for g in np.flatnonzero(gpu_ok_row)[:k]]


class _Scored(Strategy):
    """Strategies that rank candidates by a score (lowest wins, ties to the lower index)."""

    def place(self, cluster: Cluster, task: TaskShape) -> Placement | None:
        node_ok, gpu_ok = cluster.fits(task)
        if not node_ok.any():
            return None
        free = _node_free(cluster)
        if task.whole or task.gpus == 0:
            score = self.node_score(free - task.gpu_milli).astype(np.float64)
            score[~node_ok] = np.inf
            n = int(np.argmin(score))
            return cluster.placement(n, _first_gpus(gpu_ok[n], task.gpus), task)
        # a shared task: pick a GPU, each a candidate of its own
        cand = gpu_ok & node_ok[:, None]
        score = self.gpu_score(cluster.gpu_free - task.milli, free[:, None] - task.milli).astype(np.float64)
        score[~cand] = np.inf
        flat = int(np.argmin(score))
        n, g = divmod(flat, score.shape[1])
        return cluster.placement(n, [g], task)

    @abstractmethod
    def node_score(self, free_after: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...

    @abstractmethod
    def gpu_score(
        self, gpu_after: npt.NDArray[np.int64], node_after: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]: ...


class BestFit(_Scored):
    """Bin-packing: fill the fullest node (the fullest GPU for a shared task)."""

    name = "best_fit"

    def node_score(self, free_after: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return free_after

    def gpu_score(self, gpu_after: npt.NDArray[np.int64], node_after: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return (gpu_after * _SCALE + node_after).astype(np.float64)


class Spread(_Scored):
    """Least loaded first (worst-fit): the emptiest node (the emptiest GPU for a shared task)."""

    name = "spread"

    def node_score(self, free_after: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return -free_after

    def gpu_score(self, gpu_after: npt.NDArray[np.int64], node_after: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return -(gpu_after * _SCALE + node_after).astype(np.float64)


class FirstFit(Strategy):
    """The first node in order that fits, and its first GPUs that fit."""

    name = "first_fit"

    def place(self, cluster: Cluster, task: TaskShape) -> Placement | None:
        node_ok, gpu_ok = cluster.fits(task)
        ok = np.flatnonzero(node_ok)
        if not len(ok):
            return None
        n = int(ok[0])
        return cluster.placement(n, _first_gpus(gpu_ok[n], task.gpus), task)


class RandomFit(Strategy):
    """A random node and GPUs among those that fit (seeded): the benchmark's floor."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def place(self, cluster: Cluster, task: TaskShape) -> Placement | None:
        node_ok, gpu_ok = cluster.fits(task)
        ok = np.flatnonzero(node_ok)
        if not len(ok):
            return None
        n = int(self.rng.choice(ok))
        gpus = sorted(int(g) for g in self.rng.choice(np.flatnonzero(gpu_ok[n]), task.gpus, replace=False))
        return cluster.placement(n, gpus, task)


class FragmentationAware(Strategy):
    """FGD: place where the cluster's expected fragmentation grows least.

    ``ΔF`` of a candidate = ``F_n(after) − F_n(before)`` on its node (other nodes do not change),
    with ``F_n = free_n − Σ_m p_m usable_n(m)`` (``tasks.gpu.fragmentation``). Since ``free_n`` falls
    by the task's own demand wherever it goes, ranking by ``ΔF`` is ranking by how much *usable*
    compute (weighted by the mix) the placement destroys. Ties go to the fuller node (best-fit),
    then the lower index.

    Fast enough for every decision at the trace's size: per-node ``usable`` by GPU-demand class is
    cached and recomputed only for nodes whose version changed; only feasible candidates are
    scored; a shared task's candidate GPUs on one node with the same free share are scored once.

    The workload: each task placed is first added to the mix (the last :data:`DEFAULT_WINDOW`
    tasks unless a ``workload`` with another window is given), unless a fixed ``workload`` is
    given with ``learn=False``.
    """

    name = "fragmentation_aware"

    def __init__(self, workload: Workload | None = None, *, learn: bool = True) -> None:
        self.workload = workload if workload is not None else Workload(window=DEFAULT_WINDOW)
        self.learn = learn
        self._cluster_id: int | None = None
        self._generation = -1
        self._usable: npt.NDArray[np.float64] = np.zeros((0, 0))
        self._versions: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    def _refresh(self, cluster: Cluster) -> None:
        wl = self.workload
        if self._cluster_id != id(cluster) or self._generation != wl.generation or len(self._versions) != len(cluster):
            self._usable = usable_by_class(cluster.gpu_free, wl.class_gpus, wl.class_milli)
            self._versions = cluster.version.copy()
            self._cluster_id, self._generation = id(cluster), wl.generation
            return
        stale = np.flatnonzero(self._versions != cluster.version)
        if len(stale):
            self._usable[stale] = usable_by_class(cluster.gpu_free[stale], wl.class_gpus, wl.class_milli)
            self._versions[stale] = cluster.version[stale]

    def place(self, cluster: Cluster, task: TaskShape) -> Placement | None:
        if self.learn:
            self.workload.observe(task)
        node_ok, gpu_ok = cluster.fits(task)
        nodes = np.flatnonzero(node_ok)
        if not len(nodes):
            return None
        wl = self.workload
        if not len(wl.class_gpus):  # only CPU-only shapes so far: nothing to fragment, pack
            return BestFit().place(cluster, task)
        self._refresh(cluster)
        weights = wl.class_weights()  # [M, D]
        cpu, host = cluster.cpu_free[nodes], cluster.host_free[nodes]
        # class weights of the shapes that fit each node's host, before and after this task
        w_before = ((cpu[:, None] >= wl.cpu) & (host[:, None] >= wl.host)).astype(np.float64) @ weights
        cpu_a, host_a = cpu - task.cpu_milli, host - task.host_memory_mib
        w_after = ((cpu_a[:, None] >= wl.cpu) & (host_a[:, None] >= wl.host)).astype(np.float64) @ weights
        s_before = (w_before * self._usable[nodes]).sum(axis=1)  # [Nf]
        rows = cluster.gpu_free[nodes]
        if task.whole or task.gpus == 0:
            ok = gpu_ok[nodes]
            take = ok & (np.cumsum(ok, axis=1) <= task.gpus) if task.gpus else np.zeros_like(ok)
            after = rows - take * task.milli
            cand_node = np.arange(len(nodes))
            cand_gpu = np.full(len(nodes), -1)
        else:
            ok = gpu_ok[nodes]
            # one candidate per distinct free share on a node: equal GPUs give equal outcomes
            dup = np.zeros_like(ok)
            for j in range(1, rows.shape[1]):
                dup[:, j] = (rows[:, :j] == rows[:, j : j + 1]).any(axis=1)
            cand_node, cand_gpu = np.nonzero(ok & ~dup)
            after = rows[cand_node].copy()
            after[np.arange(len(cand_node)), cand_gpu] -= task.milli
        s_after = (w_after[cand_node] * usable_by_class(after, wl.class_gpus, wl.class_milli)).sum(axis=1)
        # ΔF = Δfree − ΔS, and Δfree is the task's own demand everywhere: rank by −ΔS
        delta = s_before[cand_node] - s_after
        free_after = np.clip(after, 0, None).sum(axis=1)
        order = np.lexsort((np.arange(len(delta)), free_after, np.round(delta, 6)))
        best = int(order[0])
        n = int(nodes[cand_node[best]])
        if task.gpus == 0:
            gpus: list[int] = []
        elif task.whole:
            gpus = _first_gpus(gpu_ok[n], task.gpus)
        else:
            gpus = [int(cand_gpu[best])]
        return cluster.placement(n, gpus, task)


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (BestFit, FirstFit, Spread, RandomFit, FragmentationAware)}


def make_strategy(name: str, *, seed: int | None = None, workload: Workload | None = None) -> Strategy:
    """A strategy by name; an unknown name is a one-line error listing the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy: unknown {name!r} (one of {', '.join(sorted(STRATEGIES))})")
    if name == "random":
        return RandomFit(seed)
    if name == "fragmentation_aware":
        return FragmentationAware(workload)
    return STRATEGIES[name]()


def whole_gpus(milli: int) -> float:
    """Milli-GPUs as GPUs."""
    return milli / WHOLE

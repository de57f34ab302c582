"""GPU fragmentation against a target workload, as FGD defines it (Weng et al., "Beware of
Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC '23).

For a node ``n`` and a task shape ``m`` of the target workload (popularity ``p_m``):

* ``F_n(m)`` = the free GPU compute on ``n`` that ``m`` cannot use. If ``m`` does not fit on ``n``
  at all (too little CPU or host memory, too few GPUs with enough free), *all* of ``n``'s free GPU
  compute is fragmented for it. Otherwise the fragments are the GPUs whose free share is below
  ``m``'s per-GPU request (a whole-GPU task can use only fully free GPUs). A CPU-only task uses no
  GPU, so for it every free GPU unit is fragmented: it adds the same to every node's measure per
  unit free and never changes which placement is best, but it is part of the mix, so it counts.
* ``F_n = Σ_m p_m F_n(m)``: the expected fragmented GPU compute for a task drawn from the workload.

Written with ``usable``: ``F_n(m) = free_n − usable_n(m)``, where ``usable_n(m)`` = the free
compute on the GPUs ``m`` could use, or 0 when ``m`` does not fit; hence
``F_n = free_n − Σ_m p_m usable_n(m)``. The scheduler uses the vectorised form
(``tasks.gpu.placement.FragmentationAware``); the plain functions here are the reference the tests
check it against, one node at a time.

GPU memory is not part of the measure (the trace has none, and FGD measures compute): it is a
feasibility constraint of placement only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tasks.gpu.cluster import Cluster
from tasks.gpu.workload import Workload

__all__ = ["cluster_fragmentation", "node_fragmentation", "usable_by_class"]


def node_fragmentation(
    gpu_free: Sequence[int], workload: Workload, *, cpu_free: int | None = None, host_free: int | None = None
) -> float:
    """``F_n`` of one node (milli-GPUs), straight from the definition: the reference implementation.
    ``gpu_free`` = each GPU's free milli-GPUs; ``None`` CPU/host memory: never binds."""
    free = [max(0, g) for g in gpu_free]
    total = sum(free)
    out = 0.0
    for shape, p in workload.mix():
        fits_host = (cpu_free is None or cpu_free >= shape.cpu_milli) and (
            host_free is None or host_free >= shape.host_memory_mib
        )
        if shape.gpus == 0:
            frag = total  # uses no GPU: every free unit is a fragment for it
        else:
            ok = [g for g in free if g >= shape.milli]
            frag = total if not fits_host or len(ok) < shape.gpus else total - sum(ok)
        out += p * frag
    return out


def cluster_fragmentation(cluster: Cluster, workload: Workload) -> float:
    """``Σ_n F_n`` over the cluster (milli-GPUs)."""
    return sum(
        node_fragmentation(
            cluster.gpu_free[i].tolist(),
            workload,
            cpu_free=int(cluster.cpu_free[i]),
            host_free=int(cluster.host_free[i]),
        )
        for i in range(len(cluster))
    )


def usable_by_class(
    gpu_free: npt.NDArray[np.int64], class_gpus: npt.NDArray[np.int64], class_milli: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """``usable[r, d]`` for GPU rows ``gpu_free[R, W]`` (-1 = no such GPU) and GPU-demand classes
    ``d`` = (``class_gpus[d]`` GPUs of ``class_milli[d]`` each): the free compute on the GPUs with at
    least ``class_milli[d]`` free, if there are at least ``class_gpus[d]`` of them, else 0.
    (A whole-GPU class has milli 1000, so only fully free GPUs count, as the definition says.)"""
    ge = gpu_free[:, :, None] >= class_milli[None, None, :]  # [R, W, D]
    count = ge.sum(axis=1)
    summed = np.einsum("rw,rwd->rd", np.clip(gpu_free, 0, None).astype(np.float64), ge.astype(np.float64))
    return np.where(count >= class_gpus[None, :], summed, 0.0)

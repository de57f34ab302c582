"""The fragmentation measure on worked examples from its definition, and the vectorised scheduler
against the reference on random clusters."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.gpu.cluster import Cluster, NodeSpec, TaskShape
from tasks.gpu.fragmentation import cluster_fragmentation, node_fragmentation
from tasks.gpu.placement import FragmentationAware
from tasks.gpu.workload import Workload


def test_worked_example_mixed_node() -> None:
    # node GPUs free: 1.0, 0.5, 0.2 (total 1700 milli). Mix: ½ whole 1-GPU, ¼ 0.4-GPU, ¼ 2-GPU.
    #  whole 1-GPU: fits (GPU 0); fragments = GPUs below 1000 free: 500 + 200 = 700
    #  0.4-GPU:     fits; fragments = GPUs below 400: 200
    #  2 whole GPUs: does not fit (one full GPU): everything, 1700
    # F = ½·700 + ¼·200 + ¼·1700 = 350 + 50 + 425 = 825
    wl = Workload([TaskShape(1), TaskShape(1), TaskShape(1, 400), TaskShape(2)])
    assert node_fragmentation([1000, 500, 200], wl) == pytest.approx(825)


def test_worked_example_host_cpu_and_cpu_only_tasks() -> None:
    # one GPU 0.6 free; mix: ½ 0.5-GPU tasks needing 8 CPUs, ½ CPU-only tasks.
    # with 16 CPUs free: the 0.5 task fits, 0.6 usable → fragment 0; CPU-only: all 600 → F = 300
    # with 4 CPUs free: the 0.5 task does not fit → 600; CPU-only → 600; F = 600
    wl = Workload([TaskShape(1, 500, cpu_milli=8000), TaskShape(0, cpu_milli=1000)])
    assert node_fragmentation([600], wl, cpu_free=16000) == pytest.approx(300)
    assert node_fragmentation([600], wl, cpu_free=4000) == pytest.approx(600)


def test_empty_and_full_nodes_have_none() -> None:
    wl = Workload([TaskShape(1)])
    assert node_fragmentation([1000, 1000], wl) == 0
    assert node_fragmentation([0, 0], wl) == 0
    c = Cluster.from_nodes([NodeSpec("a", [300, 1000]), NodeSpec("b", [1000])])
    assert cluster_fragmentation(c, wl) == pytest.approx(300)


def test_scheduler_minimises_the_reference_measure() -> None:
    """On random clusters and mixes, FGD's choice has the least ΔF of every feasible placement,
    computed with the plain reference function."""
    rng = np.random.default_rng(0)
    shapes = [
        TaskShape(1, 1000, 0, 8000),
        TaskShape(1, 470, 0, 4000),
        TaskShape(1, 810, 0, 6000),
        TaskShape(2, 1000, 0, 16000),
        TaskShape(0, 1000, 0, 30000),
        TaskShape(8, 1000, 0, 64000),
        TaskShape(1, 230, 0, 2000),
    ]
    for _ in range(150):
        nodes = [
            NodeSpec(
                f"n{i}",
                [int(g) for g in rng.choice([0, 100, 300, 530, 700, 1000], size=int(rng.choice([1, 2, 4, 8])))],
                cpu_free_milli=int(rng.integers(0, 96000)),
            )
            for i in range(6)
        ]
        c = Cluster.from_nodes(nodes)
        wl = Workload([shapes[i] for i in rng.integers(0, len(shapes), 20)])
        task = shapes[int(rng.integers(len(shapes)))]
        wl.observe(task)
        p = FragmentationAware(wl, learn=False).place(c, task)
        node_ok, gpu_ok = c.fits(task)
        deltas = []
        for n in np.flatnonzero(node_ok):
            free, cpu = c.gpu_free[n].tolist(), int(c.cpu_free[n])
            before = node_fragmentation(free, wl, cpu_free=cpu)
            options = (
                [[int(g) for g in np.flatnonzero(gpu_ok[n])[: task.gpus]]]
                if task.whole or task.gpus == 0
                else [[int(g)] for g in np.flatnonzero(gpu_ok[n])]
            )
            for gs in options:
                after = list(free)
                for g in gs:
                    after[g] -= task.milli
                deltas.append(node_fragmentation(after, wl, cpu_free=cpu - task.cpu_milli) - before)
        if not deltas:
            assert p is None
            continue
        assert p is not None
        free, cpu = c.gpu_free[p.node].tolist(), int(c.cpu_free[p.node])
        after = list(free)
        for g in p.gpus:
            after[g] -= task.milli
        chosen = node_fragmentation(after, wl, cpu_free=cpu - task.cpu_milli) - node_fragmentation(
            free, wl, cpu_free=cpu
        )
        assert chosen == pytest.approx(min(deltas), abs=1e-6)

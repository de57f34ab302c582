"""Each strategy on small clusters whose right answer was worked out by hand, and bad input."""

from __future__ import annotations

import pytest

from tasks.gpu.cluster import Cluster, NodeSpec, TaskShape
from tasks.gpu.placement import DEFAULT_WINDOW, FragmentationAware, make_strategy
from tasks.gpu.workload import Workload


def small() -> Cluster:
    # a: 2 GPUs, one half used; b: 4 GPUs all free; c: 1 GPU 0.8 used
    return Cluster.from_nodes(
        [NodeSpec("a", [500, 1000]), NodeSpec("b", [1000, 1000, 1000, 1000]), NodeSpec("c", [200])]
    )


WHOLE1 = TaskShape(1)
HALF = TaskShape(1, 500)
QUARTER = TaskShape(1, 150)


@pytest.mark.parametrize(
    ("strategy", "task", "node", "gpus"),
    [
        # best-fit: a whole GPU where least is free afterwards: a (1500 → 500) beats b (4000 → 3000)
        ("best_fit", WHOLE1, "a", (1,)),
        # best-fit, shared: the fullest GPU it fits: c's 200 free is too small for 0.5; a's GPU 0 (500 free)
        ("best_fit", HALF, "a", (0,)),
        ("best_fit", QUARTER, "c", (0,)),
        # first-fit: the first node and GPU that fit
        ("first_fit", WHOLE1, "a", (1,)),
        ("first_fit", QUARTER, "a", (0,)),
        # spread: the emptiest node; shared: the emptiest GPU (b's, index 0 first)
        ("spread", WHOLE1, "b", (0,)),
        ("spread", QUARTER, "b", (0,)),
    ],
)
def test_strategies_on_a_hand_checked_cluster(strategy: str, task: TaskShape, node: str, gpus: tuple[int, ...]) -> None:
    p = make_strategy(strategy).place(small(), task)
    assert p is not None
    assert (p.node_name, p.gpus) == (node, gpus)


def test_multi_gpu_and_no_fit() -> None:
    c = small()
    p = make_strategy("best_fit").place(c, TaskShape(4))
    assert p is not None and p.node_name == "b" and p.gpus == (0, 1, 2, 3)
    for name in ("best_fit", "first_fit", "spread", "random", "fragmentation_aware"):
        assert make_strategy(name, seed=1).place(c, TaskShape(5)) is None


def test_gpu_memory_and_host_cpu_bind() -> None:
    c = Cluster.from_nodes(
        [
            NodeSpec("small-mem", [1000], gpu_free_memory=[8 << 30]),
            NodeSpec("no-cpu", [1000], cpu_free_milli=1000),
            NodeSpec("ok", [1000, 1000], gpu_free_memory=[40 << 30, 40 << 30]),
        ]
    )
    task = TaskShape(1, 1000, 16 << 30, cpu_milli=4000)
    for name in ("best_fit", "first_fit", "spread"):
        p = make_strategy(name).place(c, task)
        assert p is not None and p.node_name == "ok"
    c.allocate(make_strategy("first_fit").place(c, task), task)  # type: ignore[arg-type]
    assert int(c.gpu_mem[2, 0]) == 24 << 30 and int(c.gpu_free[2, 0]) == 0


def test_random_is_seeded_and_feasible() -> None:
    picks = {make_strategy("random", seed=s).place(small(), HALF) for s in range(20)}
    assert {(p.node_name, p.gpus) for p in picks if p} <= {
        ("a", (0,)),
        ("a", (1,)),
        ("b", (0,)),
        ("b", (1,)),
        ("b", (2,)),
        ("b", (3,)),
    }
    a = make_strategy("random", seed=7).place(small(), HALF)
    b = make_strategy("random", seed=7).place(small(), HALF)
    assert a == b


def test_fragmentation_aware_keeps_whole_gpus_for_whole_tasks() -> None:
    # mix: whole-GPU tasks and half-GPU tasks. A half task on the empty 1-GPU node "d" would leave a
    # half GPU no whole task can use; on "e"'s half-used GPU it fills it exactly: FGD picks e.
    c = Cluster.from_nodes([NodeSpec("d", [1000]), NodeSpec("e", [500, 1000])])
    wl = Workload([WHOLE1, HALF])
    p = FragmentationAware(wl, learn=False).place(c, HALF)
    assert p is not None and (p.node_name, p.gpus) == ("e", (0,))
    # spread takes the emptiest GPU on the emptiest node instead, leaving two half-used GPUs
    s = make_strategy("spread").place(c, HALF)
    assert s is not None and (s.node_name, s.gpus) == ("e", (1,))


def test_fragmentation_aware_beats_best_fit_where_best_fit_strands_a_gpu() -> None:
    # mix: only 0.6-GPU tasks. GPUs: x has 0.7 free, y 1.0 free. Best-fit puts a 0.3 task on x (fullest
    # that fits), leaving 0.4 (no 0.6 task fits there) and y whole: one 0.6 task more fits (y).
    # FGD sees that x's 0.7 already cannot be used by 0.6 twice... worked out:
    #   on x: x 0.7→0.4 (0.6 cannot use it: fragment 0.4); y 1.0 usable → F = 0.4 (+0 on y)
    #   on y: y 1.0→0.7 (0.6 fits: usable); x 0.7 usable → F = 0
    # so FGD places on y and both GPUs keep room for a 0.6 task.
    c = Cluster.from_nodes([NodeSpec("x", [700]), NodeSpec("y", [1000])])
    wl = Workload([TaskShape(1, 600)])
    p = FragmentationAware(wl, learn=False).place(c, TaskShape(1, 300))
    assert p is not None and p.node_name == "y"
    assert make_strategy("best_fit").place(c, TaskShape(1, 300)).node_name == "x"  # type: ignore[union-attr]


def test_fragmentation_aware_learns_the_stream() -> None:
    s = FragmentationAware()
    c = small()
    s.place(c, WHOLE1)
    s.place(c, HALF)
    assert s.workload.total == 2 and s.workload.counts[TaskShape(1, 500)] == 1


def test_fragmentation_aware_counts_only_the_recent_window() -> None:
    # the default target workload is the last DEFAULT_WINDOW tasks: older shapes drop out of the mix
    s = make_strategy("fragmentation_aware")
    assert isinstance(s, FragmentationAware) and s.workload.window == DEFAULT_WINDOW
    c = small()
    s.place(c, HALF)  # the only half-GPU task, then a window's worth of whole-GPU ones
    for _ in range(DEFAULT_WINDOW):
        s.place(c, WHOLE1)
    assert s.workload.total == DEFAULT_WINDOW
    assert s.workload.counts[TaskShape(1, 500)] == 0
    assert dict(s.workload.mix()) == {TaskShape(1): 1.0}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gpus": -1}, "gpus"),
        ({"gpus": 2, "milli": 500}, "gpu fraction"),
        ({"gpus": 1, "milli": 1500}, "gpu fraction"),
        ({"gpus": 1, "memory_bytes": -5}, "memory_bytes"),
    ],
)
def test_bad_shapes_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TaskShape(**kwargs)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match=r"strategy: unknown 'tightest' \(one of best_fit, "):
        make_strategy("tightest")

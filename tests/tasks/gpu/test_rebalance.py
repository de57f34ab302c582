"""Rebalancing plans on hand-checked clusters, and applying them for real (processes, queue, lake)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.actuators import ActionLedger
from tasks.config import Settings
from tasks.gpu.cluster import Cluster, NodeSpec
from tasks.gpu.placement import BestFit, make_strategy
from tasks.gpu.queue import GpuQueue, TaskRow
from tasks.gpu.rebalance import optimize, plan_rebalance
from tasks.gpu.rebalance_actuator import run_rebalance
from tasks.gpu.request import GpuRequest
from tasks.gpu.scheduler import apply_reservations, place_queued
from tasks.lake import Lake
from tasks.state import State

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def row(
    task_id: str,
    gpus: int = 1,
    *,
    milli: int = 1000,
    preemptible: bool = False,
    node: str | None = None,
    devices: list[str] | None = None,
    seq: int = 0,
    kind: str = "command",
) -> TaskRow:
    status = "running" if node else "queued"
    return TaskRow(task_id, seq, "ann", kind, {"command": ["true"]}, gpus, milli, 0, 0, preemptible, 3600.0, status,
                   T0, T0 if node else None, None, node, devices, None, None, None, None, None)  # fmt: skip


def model(nodes: dict[str, int], running: list[TaskRow]) -> Cluster:
    c = Cluster.from_nodes([NodeSpec(n, [1000] * k) for n, k in nodes.items()])
    apply_reservations(c, running)
    return c


def test_one_preemptible_move_frees_a_whole_node_for_an_8gpu_task() -> None:
    # a: 8 GPUs, one preemptible 1-GPU task on GPU 0; b: 8 GPUs, a non-preemptible 4-GPU task.
    # 11 GPUs free in total, but no node has 8: moving p to b frees all of a.
    p = row("p", 1, preemptible=True, node="a", devices=["0"])
    big_b = row("fixed", 4, node="b", devices=["0", "1", "2", "3"])
    big = row("big", 8, seq=5)
    c = model({"a": 8, "b": 8}, [p, big_b])
    plan = plan_rebalance(c, [p, big_b], [big], strategy=BestFit())
    assert [(m.task_id, m.state, m.from_node, m.from_devices, m.to_node, m.why, m.for_task) for m in plan.moves] == [
        ("p", "running", "a", ("0",), "b", "frees-gpus", "big")
    ]
    assert plan.moves[0].to_devices == ("4",)
    assert [(f.node, f.devices, f.for_task) for f in plan.freed] == [("a", tuple(str(i) for i in range(8)), "big")]
    # fragmentation against the mix {1 GPU, 4 GPUs, 8 GPUs} (1/3 each), worked by hand:
    # before a(7 free): 7 - (7 + 7)/3 = 7/3; b(4 free): 4 - (4 + 4)/3 = 4/3  → 11/3 GPUs
    # after  a(8 free): 8 - (8 + 8 + 8)/3 = 0; b(3 free): 3 - 3/3 = 2        → 2 GPUs
    assert plan.fragmentation_before == pytest.approx(11 / 3)
    assert plan.fragmentation_after == pytest.approx(2.0)
    assert (plan.free_gpus_before, plan.free_gpus_after) == (11, 11)
    assert (plan.largest_block_before, plan.largest_block_after) == (7, 8)
    assert c.gpu_free[0, 0] == 0  # the given model is not changed


def test_a_non_preemptible_running_task_is_never_moved() -> None:
    # the same cluster, but the 1-GPU task on a is not preemptible: the only way is off limits
    p = row("stay", 1, node="a", devices=["0"])
    fixed = row("fixed", 4, node="b", devices=["0", "1", "2", "3"])
    plan = plan_rebalance(model({"a": 8, "b": 8}, [p, fixed]), [p, fixed], [row("big", 8)], strategy=BestFit())
    assert plan.empty and plan.moves == []
    (note,) = plan.notes
    assert note.startswith("task big (8 GPUs) cannot get whole GPUs freed:")
    assert "a:0 holds running task stay (not preemptible)" in note and "b:0 holds running task fixed" in note
    assert plan.fragmentation_before == plan.fragmentation_after


def test_a_preemptible_deployment_run_moves_and_a_fixed_one_does_not() -> None:
    dep = row("dep", 1, preemptible=True, node="a", devices=["0"], kind="deployment")
    plan = plan_rebalance(model({"a": 2, "b": 1}, [dep]), [dep], [row("big", 2)], strategy=BestFit())
    assert [(m.task_id, m.from_node, m.to_node) for m in plan.moves] == [("dep", "a", "b")]
    fixed = row("dep", 1, preemptible=False, node="a", devices=["0"], kind="deployment")
    plan = plan_rebalance(model({"a": 2, "b": 1}, [fixed]), [fixed], [row("big", 2)], strategy=BestFit())
    assert plan.empty and "holds running task dep (not preemptible)" in plan.notes[0]


def test_moved_tasks_must_fit_elsewhere() -> None:
    # a: 2 GPUs, a preemptible 1-GPU task; b: 2 GPUs, each half taken by a fixed share. 2 GPUs free in total,
    # but freeing a needs p (a whole GPU) moved, and b has no whole GPU: no plan.
    p = row("p", 1, preemptible=True, node="a", devices=["0"])
    fixed = [row(f"f{i}", 1, milli=500, node="b", devices=[str(i)]) for i in range(2)]
    plan = plan_rebalance(model({"a": 2, "b": 2}, [p, *fixed]), [p, *fixed], [row("big", 2)], strategy=BestFit())
    assert plan.empty and "needs task p moved, and it fits nowhere else" in plan.notes[0]


def test_too_little_free_in_total_is_a_wait_not_a_plan() -> None:
    p = row("p", 1, preemptible=True, node="a", devices=["0"])
    plan = plan_rebalance(model({"a": 2}, [p]), [p], [row("big", 2)], strategy=BestFit())
    assert plan.empty and plan.notes == ["task big (2 GPUs) waits: only 1 GPUs free in total"]


def test_the_cheapest_node_is_freed() -> None:
    # a needs two preemptible tasks moved, b one: b is freed; c absorbs the moved task.
    run = [
        row("a1", 1, preemptible=True, node="a", devices=["0"], seq=1),
        row("a2", 1, preemptible=True, node="a", devices=["1"], seq=2),
        row("b1", 1, preemptible=True, node="b", devices=["0"], seq=3),
    ]
    plan = plan_rebalance(model({"a": 4, "b": 4, "c": 2}, run), run, [row("big", 4)], strategy=BestFit())
    assert [(m.task_id, m.to_node) for m in plan.moves] == [("b1", "a")]
    assert [(f.node, f.for_task) for f in plan.freed] == [("b", "big")]


def test_queued_placements_ahead_in_line_are_moved_too() -> None:
    # a (2 GPUs) is empty, b (2 GPUs) holds a preemptible task; the queue: a 1-GPU task, then a 2-GPU one.
    # Best-fit puts the 1-GPU task on b; then the 2-GPU task fits on a: no plan needed.
    b1 = row("b1", 1, preemptible=True, node="b", devices=["0"])
    plan = plan_rebalance(model({"a": 2, "b": 2}, [b1]), [b1], [row("q1", 1, seq=1), row("q2", 2, seq=2)],
                          strategy=BestFit())  # fmt: skip
    assert plan.empty
    # spread puts the 1-GPU task on a (emptiest): the 2-GPU task then needs it moved (a queued move, free)
    plan = plan_rebalance(model({"a": 2, "b": 2}, [b1]), [b1], [row("q1", 1, seq=1), row("q2", 2, seq=2)],
                          strategy=make_strategy("spread"))  # fmt: skip
    assert [(m.task_id, m.state, m.from_node, m.to_node, m.to_devices) for m in plan.moves] == [
        ("q1", "queued", "a", "b", ("1",))
    ]
    assert [(f.node, f.devices, f.for_task) for f in plan.freed] == [("a", ("0", "1"), "q2")]


def test_a_hot_devices_preemptible_tasks_move_off_it() -> None:
    hot_task = row("h", 1, preemptible=True, node="a", devices=["GPU-a0"])
    fixed = row("f", 1, node="a", devices=["GPU-a1"])
    c = Cluster.from_nodes([NodeSpec("a", [1000, 1000], gpu_ids=["GPU-a0", "GPU-a1"]),
                            NodeSpec("b", [1000, 1000], gpu_ids=["GPU-b0", "GPU-b1"])])  # fmt: skip
    apply_reservations(c, [hot_task, fixed])
    plan = plan_rebalance(c, [hot_task, fixed], [], strategy=BestFit(), hot={"GPU-a0", "a:GPU-a1"})
    assert [(m.task_id, m.from_devices, m.to_node, m.why) for m in plan.moves] == [("h", ("GPU-a0",), "b", "hot")]
    assert plan.notes == ["task f on hot a:GPU-a1 is not preemptible: not moved"]


def test_optimize_consolidates_shares_to_free_whole_gpus() -> None:
    # two GPUs each 30 % used by preemptible shares, one 50 % used by a fixed share: both 0.3 shares fit on the
    # fixed one's GPU (0.5 + 0.3 ≤ 1 for one, then the other goes to the emptied pair) — best-fit packs them.
    run = [
        row("s1", 1, milli=300, preemptible=True, node="a", devices=["0"], seq=1),
        row("s2", 1, milli=300, preemptible=True, node="a", devices=["1"], seq=2),
        row("f", 1, milli=500, node="a", devices=["2"], seq=3),
    ]
    c = model({"a": 3}, run)
    plan = optimize(c, run, strategy=BestFit())
    assert [(m.task_id, m.from_devices, m.to_devices, m.why) for m in plan.moves] == [
        ("s1", ("0",), ("2",), "consolidate")
    ]
    assert [(f.node, f.devices, f.for_task) for f in plan.freed] == [("a", ("0",), None)]
    assert (plan.free_gpus_before, plan.free_gpus_after) == (0, 1)
    # nothing to consolidate: one share per GPU that cannot fit elsewhere
    fixed = [row("x", 1, milli=600, node="a", devices=["0"]), row("y", 1, milli=600, preemptible=True, node="a",
                                                                    devices=["1"])]  # fmt: skip
    plan = optimize(model({"a": 2}, fixed), fixed, strategy=BestFit())
    assert plan.empty and "nothing to consolidate" in plan.notes[0]


def test_plan_id_is_stable_within_a_minute() -> None:
    p = row("p", 1, preemptible=True, node="a", devices=["0"])
    fixed = row("fixed", 4, node="b", devices=["0", "1", "2", "3"])
    mk = lambda: plan_rebalance(model({"a": 8, "b": 8}, [p, fixed]), [p, fixed], [row("big", 8)], strategy=BestFit())  # noqa: E731
    a, b = mk(), mk()
    t = datetime(2025, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert a.id(t) == b.id(t.replace(second=55)) != a.id(t.replace(minute=1))


# -- applying a plan for real -------------------------------------------------------------------


@pytest.mark.slow
def test_apply_stops_the_process_requeues_and_records_once(tmp_path: Path) -> None:
    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    q = GpuQueue(st)
    lake = Lake(str(tmp_path / "lake"))
    ledger = ActionLedger(s.state.path)
    # one real preemptible task on a; a fixed one takes half of b
    sleeper = q.submit(GpuRequest("command", 1, command=(sys.executable, "-c", "import time; time.sleep(60)"),
                                  preemptible=True, priority=3))  # fmt: skip
    fleet = [NodeSpec("a", [1000] * 4), NodeSpec("b", [1000] * 4)]
    res = place_queued(s, st, Cluster.from_nodes(fleet), strategy="first_fit")
    (d,) = res.decisions
    assert d.placed and d.pid and d.placement is not None and d.placement.node_name == "a"
    fixed = q.submit(GpuRequest("command", 2, command=(sys.executable, "-c", "import time; time.sleep(60)")))
    res = place_queued(s, st, Cluster.from_nodes(fleet[1:]), strategy="best_fit")  # b only
    assert [x.placement.node_name for x in res.decisions if x.placement] == ["b"]
    big = q.submit(GpuRequest("command", 4, command=("true",)))
    running = q.reservations()
    c = Cluster.from_nodes(fleet)
    apply_reservations(c, running)
    plan = plan_rebalance(c, running, q.ordered(), strategy=BestFit())
    assert [(m.task_id, m.from_node, m.to_node) for m in plan.moves] == [(sleeper.id, "a", "b")]
    assert plan.freed[0].for_task == big.id

    now = datetime.now(UTC)
    dry = run_rebalance(plan, queue=q, ledger=ledger, lake=lake, dry_run=True, now=now)
    assert dry.status == "dry-run" and q.get(sleeper.id).status == "running"  # type: ignore[union-attr]
    done = run_rebalance(plan, queue=q, ledger=ledger, lake=lake, dry_run=False, grace_s=10, now=now)
    assert done.status == "applied", done.error
    assert done.observed == {"requeued": [sleeper.id]} and done.detail["stopped"][0]["how"] == "SIGTERM"
    moved = q.get(sleeper.id)
    assert moved is not None and moved.status == "queued" and moved.priority == 3 and moved.pid is None
    assert moved.spec["moves"] == 1 and moved.spec["pin"] == {"node": "b", "devices": ["2"]}
    assert q.get(big.id).spec["pin"] == {"node": "a", "devices": ["0", "1", "2", "3"]}  # type: ignore[union-attr]
    assert sleeper.id not in {r.id for r in q.reservations()}
    # the process is really gone
    assert d.pid is not None
    with pytest.raises(ProcessLookupError):
        _gone(d.pid)
    # once per action id: the same plan in the same minute is skipped
    again = run_rebalance(plan, queue=q, ledger=ledger, lake=lake, dry_run=False, now=now)
    assert again.status == "skipped" and again.detail["reason"] == "already applied"
    events = lake.events()
    assert events["name"].to_list().count("gpu.rebalanced") == 1
    ev = events.filter(events["name"] == "gpu.rebalanced").row(0, named=True)
    payload = json.loads(ev["payload"])
    assert ev["resource"] == "cortex.gpu.fleet" and payload["action"] == done.decision_id
    assert payload["largest_block_before"] == 3 and payload["largest_block_after"] == 4
    assert "action.applied" in events["name"].to_list()
    # the next placement pass honours the pins: the big task on a, the moved one on b:2
    res = place_queued(s, st, Cluster.from_nodes(fleet), strategy="spread", dry_run=True)
    placed = {x.task_id: (x.placement.node_name, x.placement.device_ids) for x in res.decisions if x.placement}
    assert placed == {sleeper.id: ("b", ("2",)), big.id: ("a", ("0", "1", "2", "3"))}
    q.cancel(fixed.id)
    fx = q.get(fixed.id)
    assert fx is not None and fx.pid is not None
    _kill_group(fx.pid)


def _gone(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap the zombie: the test process is the wrapper's parent
    os.kill(pid, 0)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def test_requeue_and_pins(tmp_path: Path) -> None:
    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    q = GpuQueue(st)
    t = q.submit(GpuRequest("command", 1, command=("true",), priority=2))
    assert q.requeue(t.id, pin=("h", ["1"]), reason="moved")
    row_ = q.get(t.id)
    assert row_ is not None and row_.spec["pin"] == {"node": "h", "devices": ["1"]} and row_.spec["moves"] == 1
    # the pin is tried first (first-fit alone would take GPU 0)...
    c = Cluster.from_nodes([NodeSpec("h", [1000, 1000])])
    res = place_queued(s, st, c, strategy="first_fit", dry_run=True)
    assert res.decisions[0].placement is not None and res.decisions[0].placement.device_ids == ("1",)
    # ...and a stale pin (its device taken) falls back to the strategy
    c = Cluster.from_nodes([NodeSpec("h", [1000, 0])])
    res = place_queued(s, st, c, strategy="first_fit", dry_run=True)
    assert res.decisions[0].placement is not None and res.decisions[0].placement.device_ids == ("0",)
    # a cancelled task is not requeued
    q.cancel(t.id)
    assert not q.requeue(t.id, reason="moved") and q.get(t.id).status == "cancelled"  # type: ignore[union-attr]


def test_apply_cancels_a_deployment_run_through_prefect_and_requeues_it(tmp_path: Path, prefect_server: str) -> None:
    """A preemptible deployment run is moved like a process: its flow run is cancelled through a
    real Prefect server (forced after the grace time when no worker ends it) and the task requeued,
    pinned; when Prefect cannot be reached the move fails and nothing is requeued."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Running

    s = Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}})
    st = State(s.state.path)
    q = GpuQueue(st)
    ledger = ActionLedger(s.state.path)
    fleet = [NodeSpec("a", [1000] * 2), NodeSpec("b", [1000] * 2)]
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        with get_client(sync_client=True) as c:
            c.create_deployment(flow_id=c.create_flow_from_name("gpu-infer"), name="serve")
        dep = q.submit(GpuRequest("deployment", 1, deployment="gpu-infer/serve", preemptible=True))
        res = place_queued(s, st, Cluster.from_nodes(fleet[:1]), strategy="first_fit")  # on a
        (d,) = res.decisions
        assert d.placed and d.flow_run_id
        with get_client(sync_client=True) as c:
            c.set_flow_run_state(d.flow_run_id, Running(), force=True)
        blocker = q.submit(GpuRequest("command", 1, command=(sys.executable, "-c", "import time; time.sleep(60)")))
        place_queued(s, st, Cluster.from_nodes(fleet[1:]), strategy="first_fit")  # b holds a fixed task
        big = q.submit(GpuRequest("command", 2, command=("true",)))  # fits nowhere whole: a and b half used
        running = q.reservations()
        c2 = Cluster.from_nodes(fleet)
        apply_reservations(c2, running)
        plan = plan_rebalance(c2, running, q.ordered(), strategy=BestFit())
        assert [(m.task_id, m.from_node, m.to_node) for m in plan.moves] == [(dep.id, "a", "b")]

        def unreachable() -> object:
            raise OSError("connection refused")

        from tasks.gpu.rebalance_actuator import GpuRebalanceActuator, GpuRebalanceConfig, rebalance_action

        action = rebalance_action(plan, dry_run=False, now=datetime.now(UTC))
        act = GpuRebalanceActuator(GpuRebalanceConfig(name="gpu_rebalance", grace_s=0.5), ledger=ledger, queue=q,
                                   prefect_client=unreachable)  # fmt: skip
        act.stage(action, plan)
        failed = act.apply(action, dry_run=False)
        assert failed.status == "failed" and "flow run could not be cancelled" in str(failed.detail.get("problems"))
        assert q.get(dep.id).status == "running"  # type: ignore[union-attr]

        done = run_rebalance(plan, queue=q, ledger=ledger, dry_run=False, grace_s=0.5, now=datetime.now(UTC))
        assert done.status == "applied", done.error
        assert done.detail["stopped"][0]["how"] == "cancelled (forced: no worker ended it)"
        with get_client(sync_client=True) as c:
            assert c.read_flow_run(d.flow_run_id).state.type.value == "CANCELLED"
        moved = q.get(dep.id)
        assert moved is not None and moved.status == "queued" and moved.spec["pin"]["node"] == "b"
        assert q.get(big.id).spec["pin"] == {"node": "a", "devices": ["0", "1"]}  # type: ignore[union-attr]
    q.cancel(blocker.id)
    bl = q.get(blocker.id)
    assert bl is not None and bl.pid is not None
    _kill_group(bl.pid)

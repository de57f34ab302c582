"""Rebalancing plans as recorded actions: the ``gpu_rebalance`` actuator.

Why an actuator (the shared home, ``tasks.actuators``): a plan must be applied at most once (the
CLI, a retried flow run and the schedule may hold the same decision; its id hashes the plan and
the minute), a dry run must touch nothing, and the outcome is read back and recorded
(``action.applied``/``action.failed``), exactly as for every other action.

Applying a move:

- a **running** (preemptible, local) task: its launcher wrapper gets SIGTERM (it passes it on to
  the command and marks the task ended, which releases its reservation); after ``grace_s`` the
  wrapper's whole process group gets SIGKILL, and ``GpuQueue.reconcile`` releases the reservation
  of a wrapper that died without a word. Then the task is requeued (same id, request and priority,
  ``spec.moves`` counted) and **pinned** to its planned devices (``spec.pin``): the next placement
  pass puts it there if they are still free, else wherever the strategy says;
- a **queued** task (a queued placement): re-pinned to its planned devices;
- the queued task whole GPUs were freed for is pinned to them.

- a running (preemptible) **Prefect deployment run**: its flow run is set to ``Cancelling`` through
  Prefect's API (the worker that runs it stops its infrastructure and marks it ``Cancelled``);
  after ``grace_s`` without a final state it is forced to ``Cancelled`` (no worker is watching it),
  then the task is requeued and pinned like a local one.

What is read back: which of the moved tasks are queued (requeued) now; a task that ended by itself
or was cancelled meanwhile is not, and the action is recorded failed with that said. A process on
another host cannot be stopped from here: that move fails the same way (nothing is requeued for it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from tasks.actuators import Action, ActionLedger, ActionResult, Actuator, ActuatorConfig, ActuatorError, record_result
from tasks.events import emit
from tasks.gpu.queue import GpuQueue
from tasks.gpu.rebalance import RebalancePlan
from tasks.gpu.scheduler import sync_prefect_client
from tasks.lake import Lake
from tasks.state import ClaimOwner

__all__ = ["GpuRebalanceActuator", "GpuRebalanceConfig", "rebalance_action", "run_rebalance"]

TARGET = "fleet"

log = logging.getLogger("cortex_perf.gpu")


class GpuRebalanceConfig(ActuatorConfig):
    """The ``gpu_rebalance`` actuator: how long a stopped task may take to end before SIGKILL."""

    kind: Literal["gpu_rebalance"] = "gpu_rebalance"
    grace_s: float = Field(10.0, ge=0, le=600)


class GpuRebalanceActuator(Actuator[Action, dict[str, Any]]):
    """Applies staged rebalancing plans (see the module docstring)."""

    kind: ClassVar[str] = "gpu_rebalance"
    config_model: ClassVar[type[ActuatorConfig]] = GpuRebalanceConfig

    def __init__(
        self,
        config: ActuatorConfig,
        *,
        ledger: ActionLedger,
        queue: GpuQueue,
        sleep: Callable[[float], None] = time.sleep,
        prefect_client: Callable[[], Any] | None = None,
    ) -> None:
        """``prefect_client`` makes a synchronous Prefect client (for moving deployment runs;
        default: Prefect's own ``get_client``, which reads ``PREFECT_API_URL``)."""
        super().__init__(config, ledger=ledger)
        self.queue = queue
        self.sleep = sleep
        self.prefect_client = prefect_client
        self._plans: dict[str, RebalancePlan] = {}

    def stage(self, action: Action, plan: RebalancePlan) -> None:
        """Hand over the plan behind ``action`` (a plan is valid for the state it was made on, so the
        process that planned it applies it)."""
        self._plans[action.id] = plan

    def _read(self, target: str) -> dict[str, Any]:
        running = self.queue.reservations()
        return {"running": {r.id: {"node": r.node, "devices": r.devices} for r in running}}

    def _set(self, action: Action, detail: dict[str, Any]) -> dict[str, Any]:
        plan = self._plans.get(action.id)
        if plan is None:
            raise ActuatorError(f"{self.name}: no plan staged for action {action.id}: plan it again in this process")
        grace = float(getattr(self.config, "grace_s", 10.0))
        stopped: list[dict[str, Any]] = []
        problems: list[str] = []
        # the last move of each task is where it goes (a task may be moved twice: off a hot GPU, then on)
        final = {m.task_id: m for m in plan.moves}
        for m in final.values():
            row = self.queue.get(m.task_id)
            if row is None:
                problems.append(f"task {m.task_id}: gone")
                continue
            if m.state == "running":
                if row.status != "running":
                    problems.append(f"task {m.task_id}: {row.status}, no longer running")
                    continue
                if row.flow_run_id:
                    how = self._cancel_run(row.flow_run_id, grace)
                else:
                    how = self._stop(row.id, row.holder, row.pid, grace)
                if how is None:
                    where = "its flow run could not be cancelled" if row.flow_run_id else "its process is not here"
                    problems.append(f"task {m.task_id}: {where}: not stopped")
                    continue
                stopped.append({"task": m.task_id, "pid": row.pid, "how": how})
            ok = self.queue.requeue(
                m.task_id,
                pin=(m.to_node, m.to_devices),
                reason=f"moved by rebalancing ({m.why}): {m.from_node}:{','.join(m.from_devices)} → "
                f"{m.to_node}:{','.join(m.to_devices)}",
            )
            if not ok:
                problems.append(f"task {m.task_id}: could not be requeued (it ended meanwhile)")
        for f in plan.freed:
            if f.for_task is not None:
                self.queue.requeue(
                    f.for_task, pin=(f.node, f.devices), reason="whole GPUs freed for it", only_from=("queued",)
                )
        detail["stopped"] = stopped
        if problems:
            detail["problems"] = problems
        return {"requeued": sorted(t for t in final if self._queued(t))}

    def _queued(self, task_id: str) -> bool:
        row = self.queue.get(task_id)
        return row is not None and row.status == "queued"

    def _cancel_run(self, flow_run_id: str, grace_s: float) -> str | None:
        """Cancel a deployment run through Prefect and wait up to ``grace_s`` for its final state;
        ``None`` when Prefect cannot be reached (the move fails, nothing is requeued)."""
        from uuid import UUID

        from prefect.states import Cancelled, Cancelling  # lazy: Prefect's client costs ~1 s to import

        make = self.prefect_client or sync_prefect_client
        try:
            with make() as client:
                run_id = UUID(flow_run_id)
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    return "already over"
                client.set_flow_run_state(run_id, Cancelling(), force=True)
                deadline = time.monotonic() + grace_s
                while time.monotonic() < deadline:
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_final():
                        return f"cancelled ({state.type.value.lower()})"
                    self.sleep(0.2)
                client.set_flow_run_state(run_id, Cancelled(message="moved by GPU rebalancing"), force=True)
                return "cancelled (forced: no worker ended it)"
        except Exception as e:  # the API is down: this move fails, its GPUs stay reserved
            log.warning("gpu rebalance: flow run %s not cancelled: %s", flow_run_id, e)
            return None

    def _stop(self, task_id: str, holder: str | None, pid: int | None, grace_s: float) -> str | None:
        """SIGTERM the task's wrapper, SIGKILL its group after ``grace_s``; wait until the queue no
        longer holds a reservation for it. ``None`` when its process is not on this host."""
        owner = ClaimOwner.from_json(holder)
        if owner is None or pid is None or owner.alive() is None:
            return None
        how = "already gone"
        if owner.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)  # the wrapper passes it on and records the end
            how = "SIGTERM"
            deadline = time.monotonic() + grace_s
            while owner.alive() and time.monotonic() < deadline:
                self.sleep(0.05)
            if owner.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # the wrapper leads its own session: command included
                how = "SIGKILL"
                while owner.alive():
                    self.sleep(0.05)
        self.queue.reconcile()  # a wrapper killed without a word: release its reservation
        return how


def rebalance_action(plan: RebalancePlan, *, dry_run: bool, now: datetime | None = None) -> Action:
    """The :class:`Action` recording ``plan``: ``to`` = the moved tasks, requeued."""
    return Action(
        id=plan.id(now),
        target=TARGET,
        to={"requeued": sorted({m.task_id for m in plan.moves})},
        kind="rebalance",
        area="gpu",
        reason=plan.summary(),
        policy=f"rebalance ({plan.strategy})",
        mode="dry-run" if dry_run else "apply",
        params={"plan": plan.to_json()},
    )


def run_rebalance(
    plan: RebalancePlan,
    *,
    queue: GpuQueue,
    ledger: ActionLedger,
    lake: Lake | None = None,
    dry_run: bool = True,
    grace_s: float = 10.0,
    now: datetime | None = None,
) -> ActionResult:
    """Apply ``plan`` once through the ``gpu_rebalance`` actuator; record ``action.*`` and, when
    applied, ``gpu.rebalanced`` with the plan's numbers in ``lake``. ``dry_run`` (the default)
    changes and records nothing. An empty plan is not an action: a dry-run result, nothing done."""
    action = rebalance_action(plan, dry_run=dry_run, now=now)
    actuator = GpuRebalanceActuator(GpuRebalanceConfig(name="gpu_rebalance", grace_s=grace_s), ledger=ledger,
                                    queue=queue)  # fmt: skip
    if plan.empty:
        return ActionResult(action.id, actuator.name, TARGET, action.to, "dry-run", detail={"reason": "empty plan"},
                            area="gpu")  # fmt: skip
    actuator.stage(action, plan)
    result = actuator.apply(action, dry_run=dry_run)
    if lake is not None:
        record_result(lake, result)
        if result.status == "applied":
            emit(lake, "gpu.rebalanced", f"gpu.{TARGET}", {"action": action.id, **plan.to_json(),
                                                          "stopped": result.detail.get("stopped", [])})  # fmt: skip
    return result

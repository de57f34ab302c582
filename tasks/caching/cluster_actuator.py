"""Cluster operations as recorded actions: the ``redis_cluster`` actuator.

Why an actuator (and not the ledger + events by hand): a cluster operation needs exactly what
``tasks.actuators.Actuator.apply`` already guarantees for every action — a dry run that touches
nothing, a claim in the ledger so one plan is applied at most once (the id hashes the plan and the
slot map it was made on, so the same decision on the same cluster is not run twice, and a new
decision after a change is a new id), a heartbeat while a long rebalance runs, the outcome read
back from the cluster (``ClusterManager.observe`` against the plan's ``expect``), and the
``action.applied`` / ``action.failed`` lake event on ``cortex.cache.<cluster name>``.

A plan is only valid for the topology it was made on, so the process that planned it applies it:
:func:`run_cluster_op` hands the :class:`ClusterOp` to the actuator with the action. The action's
``params`` carry the plan's summary (op, moves per pair, steps) for the ledger and the lake.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from tasks.actuators import Action, ActionLedger, ActionResult, Actuator, ActuatorConfig, ActuatorError, record_result
from tasks.caching.cluster_ops import ClusterManager, ClusterOp

__all__ = ["RedisClusterActuator", "RedisClusterConfig", "cluster_action", "run_cluster_op"]


class RedisClusterConfig(ActuatorConfig):
    """The ``redis_cluster`` actuator's config: nothing beyond a name (the client comes from ``cache``)."""

    kind: Literal["redis_cluster"] = "redis_cluster"


class RedisClusterActuator(Actuator[Action, dict[str, Any]]):
    """Applies planned cluster operations (see the module docstring); reads back the slot map."""

    kind: ClassVar[str] = "redis_cluster"
    config_model: ClassVar[type[ActuatorConfig]] = RedisClusterConfig

    def __init__(self, config: ActuatorConfig, *, ledger: ActionLedger, manager: ClusterManager | None = None) -> None:
        super().__init__(config, ledger=ledger)
        self.manager = manager
        self._ops: dict[str, ClusterOp] = {}

    @property
    def lease_s(self) -> float:
        return 120.0  # renewed every 40 s while a rebalance runs; a dead holder is taken over soon

    def stage(self, action: Action, op: ClusterOp) -> None:
        """Hand over the plan behind ``action`` (applied by this process only)."""
        self._ops[action.id] = op

    def _need_manager(self) -> ClusterManager:
        if self.manager is None:
            raise ActuatorError(f"{self.name}: no cluster client (build it with manager=ClusterManager(...))")
        return self.manager

    def _read(self, target: str) -> dict[str, Any]:
        topo = self._need_manager().topology()
        return {"slots": {m.addr: len(m.slots) for m in topo.masters}}

    def _set(self, action: Action, detail: dict[str, Any]) -> dict[str, Any]:
        op = self._ops.get(action.id)
        if op is None:
            raise ActuatorError(f"{self.name}: no plan staged for action {action.id}: plan it again in this process")
        manager = self._need_manager()
        detail.update(manager.execute(op))
        return manager.observe(op)


def cluster_action(op: ClusterOp, target: str, *, dry_run: bool) -> Action:
    """The :class:`Action` recording ``op`` on the cluster named ``target`` (``cache.name``)."""
    return Action(
        id=op.id(),
        target=target,
        to=op.expect,
        kind=op.kind,
        area="cache",
        reason=op.summary,
        policy=f"cluster {op.name}",
        mode="dry-run" if dry_run else "apply",
        params={
            "op": op.name,
            "moves": op.move_rows(),
            "steps": list(op.steps),
            "fix": [s.to_dict() for s in op.fix_steps],
        },
    )


def run_cluster_op(
    manager: ClusterManager,
    op: ClusterOp,
    *,
    ledger: ActionLedger,
    lake: Any | None = None,
    dry_run: bool = True,
    name: str | None = None,
) -> ActionResult:
    """Apply ``op`` once through the ``redis_cluster`` actuator and record the outcome in ``lake``.

    ``dry_run`` (the default) changes nothing and records nothing; the plan is ``op`` itself."""
    target = name or manager.client.name
    action = cluster_action(op, target, dry_run=dry_run)
    actuator = RedisClusterActuator(RedisClusterConfig(name="redis_cluster"), ledger=ledger, manager=manager)
    actuator.stage(action, op)
    result = actuator.apply(action, dry_run=dry_run)
    if lake is not None:
        record_result(lake, result)
    return result

"""Cluster operations as plans: decide (``plan_*``: read-only, what a dry run prints), then run.

Each ``plan_*`` reads the cluster, checks the input against it (an unknown node, a node that is
not empty or not in cluster mode, weights naming no member, a standalone Redis: one-line
``CacheError``, nothing changed) and returns a :class:`ClusterOp`: the slot moves with their key
counts, the node steps, and what the cluster must look like afterwards (``expect``, read back by
:meth:`ClusterManager.observe`). :meth:`ClusterManager.execute` runs it. The actuator
(``cluster_actuator``) wraps plan + run into a recorded action; this module knows nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.caching.client import CacheClient, CacheError, node_address
from tasks.caching.cluster_check import check_cluster, require_cluster
from tasks.caching.cluster_fix import FixStep, fix_cluster, plan_fix
from tasks.caching.cluster_migrate import Progress, StepHook, count_keys, move_slots
from tasks.caching.cluster_nodes import (
    add_node,
    failover,
    forget_node,
    pick_master_for_replica,
    replicas_of,
    validate_new_node,
)
from tasks.caching.cluster_plan import SlotMove, describe_slots, group_moves, plan_drain, plan_rebalance, plan_reshard
from tasks.caching.topology import ClusterNode, Topology, read_topology
from tasks.config.caching import CacheClusterOpsSettings

__all__ = ["ClusterManager", "ClusterOp", "OpName"]

OpName = Literal["add-node", "remove-node", "rebalance", "reshard", "fix", "failover"]


@dataclass
class ClusterOp:
    """One planned operation: its moves (with key counts), node steps, and expected outcome."""

    name: OpName
    summary: str
    before: str
    moves: list[SlotMove] = field(default_factory=list)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    fix_steps: list[FixStep] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The action kind: ``slots`` when slots move or close, ``node`` for membership and roles."""
        return "slots" if self.name in ("rebalance", "reshard", "fix") or self.moves else "node"

    @property
    def empty(self) -> bool:
        return not (self.moves or self.steps or self.fix_steps)

    def id(self) -> str:
        """Stable for the same plan on the same cluster state: the action's idempotency key."""
        body = json.dumps([self.name, self.before, [(m.slot, m.target) for m in self.moves], self.steps,
                           [s.to_dict() for s in self.fix_steps]], sort_keys=True)  # fmt: skip
        return f"cluster-{self.name}-{hashlib.sha256(body.encode()).hexdigest()[:16]}"

    def move_rows(self) -> list[dict[str, Any]]:
        """One row per (source, target): slot count, ranges, keys — the dry-run table."""
        return [
            {
                "from": self.addresses.get(src, src),
                "to": self.addresses.get(dst, dst),
                "slots": len(slots),
                "ranges": describe_slots(slots),
                "keys": self.keys.get((src, dst), 0),
            }
            for src, dst, slots in group_moves(self.moves)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.name,
            "summary": self.summary,
            "moves": self.move_rows(),
            "slots_moving": len(self.moves),
            "keys_moving": sum(self.keys.values()),
            "steps": list(self.steps),
            "fix": [s.to_dict() for s in self.fix_steps],
            "expect": self.expect,
        }


def _slot_counts(topo: Topology) -> dict[str, int]:
    return {m.addr: len(m.slots) for m in topo.masters}


def _after(topo: Topology, moves: Sequence[SlotMove]) -> dict[str, int]:
    counts = {m.id: len(m.slots) for m in topo.masters}
    for mv in moves:
        counts[mv.source] -= 1
        counts[mv.target] = counts.get(mv.target, 0) + 1
    return {n.addr: counts[n.id] for n in topo.masters}


class ClusterManager:
    """Plans and runs cluster operations on the cluster ``client`` points at (any one node)."""

    def __init__(
        self,
        client: CacheClient,
        limits: CacheClusterOpsSettings | None = None,
        *,
        on_step: StepHook | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.limits = limits or CacheClusterOpsSettings()
        self.on_step = on_step
        self.progress = progress

    def topology(self) -> Topology:
        return require_cluster(self.client)

    def _node(self, topo: Topology, text: str, what: str = "node") -> ClusterNode:
        try:
            node = topo.find(text)
        except ValueError as exc:
            raise CacheError(f"{what} {text!r}: {exc}") from None
        if node is None:
            raise CacheError(f"{what} {text!r} is not a member of the cluster (see `cortex-perf cache cluster check`)")
        return node

    def _slots_op(self, name: OpName, topo: Topology, moves: list[SlotMove], summary: str) -> ClusterOp:
        return ClusterOp(
            name,
            summary,
            topo.fingerprint(),
            moves=moves,
            keys=count_keys(self.client, topo, moves),
            expect={"slots": _after(topo, moves)},
            addresses={n.id: n.addr for n in topo.nodes},
        )

    # -- plans ----------------------------------------------------------------------------------

    def plan_rebalance(
        self, weights: Mapping[str, float] | None = None, *, threshold_pct: float | None = None,
        use_empty_masters: bool = False,
    ) -> ClusterOp:  # fmt: skip
        """Moves that bring every master to its weighted share (``cluster_plan.plan_rebalance``)."""
        topo = self.topology()
        by_id: dict[str, float] = {}
        for name, w in (weights or {}).items():
            node = self._node(topo, name, "--weight node")
            if not node.is_master:
                raise CacheError(f"--weight: {node.addr} is a replica, not a master")
            by_id[node.id] = w
        threshold = self.limits.threshold_pct if threshold_pct is None else threshold_pct
        try:
            moves = plan_rebalance({m.id: sorted(m.slots) for m in topo.masters}, weights=by_id,
                                   threshold_pct=threshold, use_empty_masters=use_empty_masters)  # fmt: skip
        except ValueError as exc:
            raise CacheError(str(exc)) from None
        summary = f"rebalance: {len(moves)} slot(s) move" if moves else f"rebalance: all within {threshold:g} %"
        return self._slots_op("rebalance", topo, moves, summary)

    def plan_reshard(self, count: int, target: str, sources: Sequence[str] = ()) -> ClusterOp:
        """``count`` slots to ``target`` from ``sources`` (default: every other master)."""
        topo = self.topology()
        dst = self._node(topo, target, "--to")
        src_ids = [self._node(topo, s, "--from").id for s in sources]
        for n in (dst, *(topo.by_id(i) for i in src_ids)):
            if n is None or not n.is_master:
                raise CacheError(f"reshard: {n.addr if n else '?'} is a replica; slots live on masters")
        try:
            moves = plan_reshard({m.id: sorted(m.slots) for m in topo.masters}, count, dst.id, src_ids or None)
        except ValueError as exc:
            raise CacheError(str(exc)) from None
        return self._slots_op("reshard", topo, moves, f"reshard: {count} slot(s) to {dst.addr}")

    def plan_add_node(self, address: str, *, replica: bool = False, master: str | None = None) -> ClusterOp:
        """Join ``address`` as a master (empty: rebalance afterwards) or as a replica."""
        topo = self.topology()
        try:
            addr = node_address(address)
        except ValueError as exc:
            raise CacheError(f"new node: {exc}") from None
        validate_new_node(self.client, topo, addr)
        role = "replica" if replica or master else "master"
        op = ClusterOp("add-node", f"add {addr} as a {role}", topo.fingerprint())
        op.params = {"node": str(addr)}
        op.steps.append(f"CLUSTER MEET {topo.myself.addr} from {addr}")
        if replica or master:
            of = self._node(topo, master, "--master") if master else pick_master_for_replica(topo)
            if not of.is_master:
                raise CacheError(f"--master {master!r} is a replica, not a master")
            op.params["master"] = of.addr
            op.steps.append(f"CLUSTER REPLICATE {of.id[:8]} ({of.addr}) on {addr}")
            op.expect = {"node": str(addr), "member": True, "role": "replica", "master": of.addr}
        else:
            op.steps.append(f"wait for {addr}'s own cluster_state:ok (≤ {self.limits.node_ready_timeout_s:g} s)")
            op.expect = {"node": str(addr), "member": True, "role": "master"}
        return op

    def plan_remove_node(self, node: str) -> ClusterOp:
        """Drain ``node``'s slots evenly to the other masters, re-point its replicas, forget it."""
        topo = self.topology()
        leaving = self._node(topo, node)
        moves: list[SlotMove] = []
        if leaving.is_master and leaving.slots:
            try:
                moves = plan_drain({m.id: sorted(m.slots) for m in topo.masters}, leaving.id)
            except ValueError as exc:
                raise CacheError(str(exc)) from None
        op = self._slots_op("remove-node", topo, moves, f"remove {leaving.addr}")
        op.params = {"node": leaving.addr, "id": leaving.id}
        for rep in replicas_of(self.client, topo, leaving.id):
            op.steps.append(f"re-point replica {rep.addr} to another master")
        op.steps.append(f"CLUSTER FORGET {leaving.id[:8]} on {len(topo.nodes) - 1} other node(s)")
        op.steps.append(f"CLUSTER RESET SOFT on {leaving.addr}")
        expect_slots = {a: c for a, c in op.expect["slots"].items() if a != leaving.addr}
        op.expect = {"node": leaving.addr, "member": False, "slots": expect_slots}
        return op

    def plan_failover(self, node: str, *, force: bool = False) -> ClusterOp:
        topo = self.topology()
        rep = self._node(topo, node)
        if not rep.is_replica:
            raise CacheError(f"{rep.addr} is not a replica: failover promotes a replica to master")
        op = ClusterOp("failover", f"promote {rep.addr}", topo.fingerprint())
        op.params = {"node": rep.addr, "force": force}
        op.steps.append(f"CLUSTER FAILOVER{' FORCE' if force else ''} on {rep.addr}")
        op.expect = {"node": rep.addr, "member": True, "role": "master"}
        return op

    def plan_fix(self) -> ClusterOp:
        report = check_cluster(self.client, count_keys=False)
        steps = plan_fix(self.client, report)
        op = ClusterOp("fix", f"fix: {len(steps)} slot(s) to close or assign", report.topology.fingerprint())
        op.fix_steps = steps
        op.params = {"report": report}
        op.expect = {"open_slots": 0, "uncovered_slots": 0}
        return op

    # -- running --------------------------------------------------------------------------------

    def execute(self, op: ClusterOp) -> dict[str, Any]:
        """Run ``op``; statistics of what was done (slots, keys, seconds). Errors: ``CacheError``."""
        t0 = time.monotonic()
        lim = self.limits
        stats: dict[str, Any] = {"slots_moved": 0, "keys_moved": 0}
        topo = self.topology()
        if op.moves:
            if topo.fingerprint() != op.before:
                raise CacheError(f"{op.name}: the cluster changed since the plan was made; plan again")
            done = move_slots(self.client, topo, op.moves, pipeline=lim.pipeline, timeout_ms=lim.migrate_timeout_ms,
                              slots_per_round=lim.slots_per_round, on_step=self.on_step,
                              progress=self.progress)  # fmt: skip
            stats.update(slots_moved=done.slots, keys_moved=done.keys, rounds=done.rounds)
        if op.name == "add-node":
            master = self._node(topo, op.params["master"]) if "master" in op.params else None
            stats["id"] = add_node(self.client, topo, node_address(op.params["node"]), replica_of=master,
                                   ready_timeout_s=lim.node_ready_timeout_s)  # fmt: skip
        elif op.name == "remove-node":
            self._settle(lim.node_ready_timeout_s)
            topo = self.topology()
            forget_node(self.client, topo, self._node(topo, op.params["node"]), timeout_s=lim.node_ready_timeout_s)
        elif op.name == "failover":
            failover(self.client, self._node(topo, op.params["node"]), force=bool(op.params.get("force")),
                     timeout_s=lim.node_ready_timeout_s)  # fmt: skip
        elif op.name == "fix":
            stats["keys_moved"] = fix_cluster(self.client, op.params["report"], op.fix_steps, pipeline=lim.pipeline,
                                              timeout_ms=lim.migrate_timeout_ms)  # fmt: skip
            stats["slots_fixed"] = len(op.fix_steps)
        self._settle(lim.node_ready_timeout_s)
        stats["seconds"] = round(time.monotonic() - t0, 3)
        return stats

    def _settle(self, timeout_s: float) -> None:
        """Wait (bounded) until every node agrees on the slot map: gossip after SETSLOT/FORGET."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            report = check_cluster(self.client, count_keys=False)
            if not any(p.kind in ("disagree", "open") for p in report.problems):
                return
            time.sleep(0.05)

    def observe(self, op: ClusterOp) -> dict[str, Any]:
        """What the cluster shows now, in the shape of ``op.expect`` (the actuator's read-back)."""
        topo = self.topology()
        out: dict[str, Any] = {}
        if "slots" in op.expect:
            counts = _slot_counts(topo)
            out["slots"] = {a: counts.get(a, 0) for a in op.expect["slots"]}
        if "node" in op.expect:
            node = topo.by_address(node_address(op.expect["node"]))
            out["node"] = op.expect["node"]
            out["member"] = node is not None
            if node is not None and "role" in op.expect:
                mine = require_cluster_view(self.client, node)
                out["role"] = "master" if mine.is_master else "replica"
                if "master" in op.expect:
                    master = topo.by_id(mine.master_id or "")
                    out["master"] = master.addr if master else None
        if "open_slots" in op.expect:
            report = check_cluster(self.client, count_keys=False)
            out["open_slots"] = len(report.open_slots())
            out["uncovered_slots"] = len(report.uncovered_slots())
        return out


def require_cluster_view(client: CacheClient, node: ClusterNode) -> ClusterNode:
    """``node`` as it sees itself (its role is authoritative there, gossip may lag elsewhere)."""
    return read_topology(client, node.address).myself

"""Is the cluster whole? ``redis-cli --cluster check`` done with redis-py: coverage, open slots,
agreement, failing nodes.

Why every node is asked, not only the seed: open slots (MIGRATING / IMPORTING) appear only on a
node's own ``CLUSTER NODES`` line, and "every node agrees on the slot map" can only be known by
comparing each node's view. The report is data (:class:`CheckReport`): the CLI prints it, ``fix``
reads its open and uncovered slots, and tests assert on its problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.caching.client import CacheClient, CacheError
from tasks.caching.topology import SLOTS, ClusterNode, Topology, read_topology, slot_ranges

__all__ = ["CheckReport", "Problem", "ProblemKind", "check_cluster", "require_cluster"]

ProblemKind = Literal["uncovered", "open", "disagree", "failing", "unreachable"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong: its kind, a one-line message, the slots and the node concerned."""

    kind: ProblemKind
    message: str
    slots: tuple[int, ...] = ()
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "slots": slot_ranges(self.slots), "node": self.node}


@dataclass
class CheckReport:
    """The cluster as the seed sees it, each reachable node's own view, and what is wrong."""

    topology: Topology
    views: dict[str, Topology] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def open_slots(self) -> list[int]:
        """Slots open (MIGRATING or IMPORTING) on some node, ascending."""
        out: set[int] = set()
        for view in self.views.values():
            me = view.myself
            out |= set(me.migrating) | set(me.importing)
        return sorted(out)

    def uncovered_slots(self) -> list[int]:
        return sorted(set(range(SLOTS)) - set(self.topology.owners()))

    def nodes(self) -> list[dict[str, Any]]:
        """One row per node: address, id, role, its master, slot count and ranges, keys (masters)."""
        rows = []
        for n in sorted(self.topology.nodes, key=lambda n: (not n.is_master, n.address)):
            rows.append(
                {
                    "address": n.addr,
                    "id": n.id,
                    "role": "master" if n.is_master else "replica",
                    "master": n.master_id,
                    "slots": len(n.slots),
                    "ranges": slot_ranges(n.slots),
                    "keys": self.keys.get(n.addr),
                    "flags": sorted(n.flags - {"myself"}),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "nodes": self.nodes(), "problems": [p.to_dict() for p in self.problems]}


def require_cluster(client: CacheClient) -> Topology:
    """The seed's topology; a one-line ``CacheError`` when the server is not a cluster node."""
    seed = client.seed()
    try:
        enabled = int(client.node(seed).info("cluster").get("cluster_enabled", 0))
    except Exception as exc:
        raise client.error(f"INFO cluster on {seed}", exc) from None
    if not enabled:
        raise CacheError(f"{seed} is a standalone Redis (cluster_enabled:0): cluster operations need a Redis Cluster")
    return read_topology(client, seed)


def _open_problems(node: ClusterNode) -> list[Problem]:
    out = []
    for state, slots in (("migrating", node.migrating), ("importing", node.importing)):
        if slots:
            out.append(
                Problem(
                    "open",
                    f"{node.addr} has {len(slots)} slot(s) {state}: {','.join(slot_ranges(slots)[:8])}",
                    tuple(sorted(slots)),
                    node.addr,
                )
            )
    return out


def check_cluster(client: CacheClient, *, count_keys: bool = True) -> CheckReport:
    """Ask every node (see the module docstring); a ``CacheError`` only when the seed cannot answer."""
    topo = require_cluster(client)
    report = CheckReport(topo)
    owners = topo.owners()
    for n in topo.nodes:
        if n.failing:
            report.problems.append(Problem("failing", f"{n.addr} ({n.id[:8]}) is flagged {','.join(sorted(n.flags))}",
                                           node=n.addr))  # fmt: skip
            if "fail" in n.flags:
                continue
        try:
            view = read_topology(client, n.address)
            report.views[n.addr] = view
            if count_keys and n.is_master:
                report.keys[n.addr] = int(client.node(n.address).dbsize())
        except CacheError as exc:
            report.problems.append(Problem("unreachable", str(exc), node=n.addr))
            continue
        report.problems += _open_problems(view.myself)
        theirs = view.owners()
        differ = sorted(s for s in set(owners) | set(theirs) if owners.get(s) != theirs.get(s))
        if differ:
            report.problems.append(
                Problem(
                    "disagree",
                    f"{n.addr} disagrees with {topo.seen_from} on the owner of {len(differ)} slot(s): "
                    f"{','.join(slot_ranges(differ)[:8])}",
                    tuple(differ),
                    n.addr,
                )
            )
    uncovered = report.uncovered_slots()
    if uncovered:
        report.problems.append(
            Problem(
                "uncovered",
                f"{len(uncovered)} slot(s) have no owner: {','.join(slot_ranges(uncovered)[:8])}",
                tuple(uncovered),
            )
        )
    return report

"""Close what an interrupted operation left open: ``redis-cli --cluster fix``'s common cases.

Per open slot (from :func:`check_cluster`), with each node's own view and its key count there:

- **migrating on one node, importing on the node it names** (a move killed between ``MIGRATING``
  and ``SETSLOT NODE``): finish the move — the rest of the keys go to the target (``REPLACE``: the
  source's copy is the one clients read while the slot was open), then ``SETSLOT NODE`` on the
  target, the source and every master;
- **anything else** (importing with no migrating, migrating with nothing importing, two claims):
  the owner is the claiming node with the most keys in the slot (ties: the highest config epoch,
  i.e. the newest claim); keys found elsewhere move to it, every open state is closed
  (``SETSLOT STABLE``) and every master is told the owner (``SETSLOT NODE``).

Uncovered slots go to the node holding their keys, else to the master with the fewest slots
(``CLUSTER ADDSLOTS``). No key is dropped: keys only ever move, never get deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.caching.client import CacheClient
from tasks.caching.cluster_check import CheckReport
from tasks.caching.cluster_migrate import migrate_keys, set_slots_node
from tasks.caching.topology import ClusterNode

__all__ = ["FixStep", "fix_cluster", "plan_fix"]


@dataclass
class FixStep:
    """What ``fix`` does (or did) for one slot: ``finish`` a move, ``close`` it, or ``assign`` it."""

    slot: int
    action: str
    owner: str
    keys_elsewhere: dict[str, int] = field(default_factory=dict)
    finish_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "action": self.action, "owner": self.owner, "keys_elsewhere": self.keys_elsewhere,
                "finish_from": self.finish_from}  # fmt: skip


def _keys_in(client: CacheClient, node: ClusterNode, slot: int) -> int:
    return int(client.node(node.address).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))


def plan_fix(client: CacheClient, report: CheckReport) -> list[FixStep]:
    """The steps for every open and uncovered slot of ``report`` (reads key counts; changes nothing)."""
    views = {addr: v.myself for addr, v in report.views.items()}
    masters = [views[m.addr] for m in report.topology.masters if m.addr in views]
    steps: list[FixStep] = []
    for slot in report.open_slots():
        mig = [n for n in masters if slot in n.migrating]
        imp = [n for n in masters if slot in n.importing]
        keys = {n.addr: _keys_in(client, n, slot) for n in masters}
        if len(mig) == 1 and len(imp) == 1 and mig[0].migrating[slot] == imp[0].id:
            steps.append(FixStep(slot, "finish", imp[0].addr, {mig[0].addr: keys[mig[0].addr]}, mig[0].addr))
            continue
        claimers = [n for n in masters if slot in n.slots] or [n for n in masters if keys[n.addr]] or mig or imp
        owner = max(claimers, key=lambda n: (keys[n.addr], n.config_epoch, n.addr))
        elsewhere = {a: k for a, k in keys.items() if k and a != owner.addr}
        steps.append(FixStep(slot, "close", owner.addr, elsewhere))
    load = {m.addr: len(m.slots) for m in masters}
    for slot in report.uncovered_slots():
        if slot in report.open_slots():
            continue
        keys = {n.addr: _keys_in(client, n, slot) for n in masters}
        holder = max(keys, key=lambda a: (keys[a], a)) if any(keys.values()) else min(load, key=lambda a: (load[a], a))
        load[holder] = load.get(holder, 0) + 1
        steps.append(FixStep(slot, "assign", holder, {a: k for a, k in keys.items() if k and a != holder}))
    return steps


def _move_stray(client: CacheClient, node: ClusterNode, owner: ClusterNode, slot: int, *, pipeline: int,
                timeout_ms: int) -> None:  # fmt: skip
    """Keys of ``slot`` on a node that does not own it go to ``owner``.

    A node serves ``MIGRATE`` only for a slot it owns or imports (after ``ASKING``): one that does
    neither is set importing first, then closed again by the caller."""
    asking = slot not in node.slots
    if asking and slot not in node.importing:
        client.node(node.address).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.id)
    migrate_keys(client, node, owner, [slot], pipeline=pipeline, timeout_ms=timeout_ms, replace=True, asking=asking)


def fix_cluster(
    client: CacheClient, report: CheckReport, steps: Sequence[FixStep], *, pipeline: int = 10, timeout_ms: int = 60_000
) -> int:
    """Apply ``steps`` (from :func:`plan_fix` on the same ``report``); the keys moved."""
    views = {addr: v.myself for addr, v in report.views.items()}
    masters = [views[m.addr] for m in report.topology.masters if m.addr in views]
    moved = 0
    for step in steps:
        owner = views[step.owner]
        if step.action == "finish" and step.finish_from:
            src = views[step.finish_from]
            done, _ = migrate_keys(client, src, owner, [step.slot], pipeline=pipeline, timeout_ms=timeout_ms,
                                replace=True)  # fmt: skip
            moved += done
        else:
            for addr, count in step.keys_elsewhere.items():
                if count:
                    _move_stray(client, views[addr], owner, step.slot, pipeline=pipeline, timeout_ms=timeout_ms)
                    moved += count
            for n in masters:
                # SETSLOT NODE <itself> does not clear MIGRATING on the owner: STABLE does.
                stray = n.id != owner.id and (step.slot in n.importing or n.addr in step.keys_elsewhere)
                if step.slot in n.migrating or stray:
                    client.node(n.address).execute_command("CLUSTER", "SETSLOT", step.slot, "STABLE")
            if step.action == "assign":
                client.node(owner.address).execute_command("CLUSTER", "ADDSLOTS", step.slot)
        errors = set_slots_node(client, owner, [step.slot], owner.id)
        if isinstance(errors[0], Exception):
            raise client.error(f"SETSLOT {step.slot} NODE on the owner {owner.addr}", errors[0])
        for n in masters:
            if n.id != owner.id:
                res = set_slots_node(client, n, [step.slot], owner.id)
                if isinstance(res[0], Exception) and step.action == "finish" and n.addr == step.finish_from:
                    raise client.error(f"SETSLOT {step.slot} NODE on the source {n.addr}", res[0])
    return moved

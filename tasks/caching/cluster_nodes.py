"""Membership: add a node (master or replica), forget a drained one, promote a replica.

Why the waits: Redis Cluster learns by gossip, so each step is "send, then poll until it shows".
The one that matters most (CONVENTIONS.md item 11): a new master reports ``cluster_state:fail``
for up to ``cluster-node-timeout`` after it joins, and a ``MIGRATE`` to it in that time fails with
CLUSTERDOWN and leaves an open slot — so :func:`add_node` returns only once the new node's *own*
``CLUSTER INFO`` says ``ok``. Every check that can refuse happens before the first command that
changes anything (:func:`validate_new_node`), so bad input changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks.caching.client import CacheClient, CacheError, NodeAddress
from tasks.caching.topology import ClusterNode, Topology, read_topology

__all__ = [
    "add_node",
    "cluster_state_ok",
    "failover",
    "forget_node",
    "pick_master_for_replica",
    "replicas_of",
    "validate_new_node",
    "wait_until",
]


def wait_until(what: str, probe: Callable[[], bool], timeout_s: float, *, every_s: float = 0.05) -> None:
    """Poll ``probe`` until it is true; a ``CacheError`` naming ``what`` after ``timeout_s``.

    A probe that raises counts as "not yet" (a node mid-restart, gossip not there yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if probe():
                return
        except Exception:  # not ready yet (gossip, a restart): the timeout reports it
            pass
        if time.monotonic() > deadline:
            raise CacheError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def cluster_state_ok(client: CacheClient, address: NodeAddress) -> bool:
    """Whether ``address`` itself says ``cluster_state:ok`` (its own view, not the seed's)."""
    raw = client.node(address).execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return "cluster_state:ok" in text.split()


def validate_new_node(client: CacheClient, topo: Topology, address: NodeAddress) -> str:
    """The new node's id, after checking it can join: reachable, in cluster mode, empty, alone.

    Raises a one-line ``CacheError`` (nothing changed) otherwise."""
    if topo.by_address(address) is not None:
        raise CacheError(f"{address} is already a member of this cluster")
    conn = client.node(address)
    try:
        enabled = int(conn.info("cluster").get("cluster_enabled", 0))
    except Exception as exc:
        raise client.error(f"new node {address}", exc) from None
    if not enabled:
        raise CacheError(f"new node {address} is not in cluster mode (cluster-enabled no)")
    try:
        keys = int(conn.dbsize())
        mine = read_topology(client, address)
    except Exception as exc:
        raise client.error(f"new node {address}", exc) from None
    if keys:
        raise CacheError(f"new node {address} is not empty ({keys} keys): flush it or pick an empty node")
    if len(mine.nodes) > 1 or mine.myself.slots:
        raise CacheError(f"new node {address} already knows other nodes or owns slots: it belongs to a cluster")
    if topo.by_id(mine.myself.id) is not None:
        raise CacheError(f"new node {address} has the id of an existing member ({mine.myself.id[:8]})")
    return mine.myself.id


def pick_master_for_replica(topo: Topology) -> ClusterNode:
    """The master with the fewest replicas (then the most slots, then by address): redis-cli's choice."""
    masters = [m for m in topo.masters if m.slots]
    if not masters:
        raise CacheError("no master with slots to replicate")
    return min(masters, key=lambda m: (len(topo.replicas_of(m.id)), -len(m.slots), m.address))


def add_node(
    client: CacheClient,
    topo: Topology,
    address: NodeAddress,
    *,
    replica_of: ClusterNode | None = None,
    ready_timeout_s: float = 30.0,
) -> str:
    """``CLUSTER MEET`` from the new node, then wait (see the module docstring); the new node's id.

    ``replica_of``: join as its replica (``CLUSTER REPLICATE`` once the new node knows it)."""
    new_id = validate_new_node(client, topo, address)
    seed = topo.myself
    conn = client.node(address)
    try:
        conn.execute_command("CLUSTER", "MEET", seed.address.host, seed.address.port)
    except Exception as exc:
        raise client.error(f"CLUSTER MEET from {address}", exc) from None
    members = {n.id for n in topo.nodes if "fail" not in n.flags}
    wait_until(
        f"{address} to learn every member",
        lambda: members <= {n.id for n in read_topology(client, address).nodes},
        ready_timeout_s,
    )
    if replica_of is not None:
        master_id = replica_of.id

        def replicate() -> bool:
            conn.execute_command("CLUSTER", "REPLICATE", master_id)
            return True

        wait_until(f"{address} to replicate {replica_of.addr}", replicate, ready_timeout_s)
        wait_until(
            f"{address} to show as a replica of {replica_of.addr}",
            lambda: read_topology(client, address).myself.master_id == master_id,
            ready_timeout_s,
        )
    else:
        wait_until(
            f"{address}'s own cluster_state:ok",
            lambda: cluster_state_ok(client, address),
            ready_timeout_s,
        )

    def seen() -> bool:
        node = read_topology(client, seed.address).by_id(new_id)
        return node is not None and (replica_of is None or node.master_id == replica_of.id)

    wait_until(f"{seed.addr} to see {address}", seen, ready_timeout_s)
    return new_id


def replicas_of(client: CacheClient, topo: Topology, master_id: str) -> list[ClusterNode]:
    """Nodes replicating ``master_id`` by their *own* account (the seed's view may lag gossip)."""
    out = []
    for n in topo.nodes:
        if n.id == master_id or "fail" in n.flags:
            continue
        try:
            me = read_topology(client, n.address).myself
        except CacheError:
            me = n
        if me.master_id == master_id:
            out.append(me)
    return sorted(out, key=lambda n: n.address)


def forget_node(client: CacheClient, topo: Topology, node: ClusterNode, *, timeout_s: float = 30.0) -> None:
    """Re-point ``node``'s replicas, ``CLUSTER FORGET`` it on every other node, ``RESET SOFT`` it.

    The caller has drained its slots. The replicas go to the master with the fewest replicas
    (a node refuses to forget its own master). ``FORGET`` bans the id for 60 s on each node, long
    enough for the forget to reach every node before gossip could bring it back."""
    if node.slots:
        raise CacheError(f"{node.addr} still owns {len(node.slots)} slots: drain it first")
    others = [m for m in topo.masters if m.id != node.id and m.slots]
    for rep in replicas_of(client, topo, node.id):
        if not others:
            raise CacheError(f"{node.addr} has replicas but no other master with slots to re-point them to")
        dest = min(others, key=lambda m: (len(topo.replicas_of(m.id)), m.address))
        try:
            client.node(rep.address).execute_command("CLUSTER", "REPLICATE", dest.id)
        except Exception as exc:
            raise client.error(f"CLUSTER REPLICATE on {rep.addr}", exc) from None
        for where in (rep.address, topo.seen_from):  # the replica itself, then the seed by gossip

            def repointed(where: NodeAddress = where, rep: ClusterNode = rep, dest: ClusterNode = dest) -> bool:
                seen = read_topology(client, where).by_id(rep.id)
                return seen is not None and seen.master_id == dest.id

            wait_until(f"{where} to see {rep.addr} replicating {dest.addr}", repointed, timeout_s)
    for other in topo.nodes:
        if other.id == node.id or "fail" in other.flags or "noaddr" in other.flags:
            continue
        try:
            client.node(other.address).execute_command("CLUSTER", "FORGET", node.id)
        except Exception as exc:
            if "Unknown node" not in str(exc):
                raise client.error(f"CLUSTER FORGET on {other.addr}", exc) from None
    try:
        client.node(node.address).execute_command("CLUSTER", "RESET", "SOFT")
    except Exception as exc:
        raise client.error(f"CLUSTER RESET SOFT on {node.addr}", exc) from None


def failover(client: CacheClient, node: ClusterNode, *, force: bool = False, timeout_s: float = 30.0) -> None:
    """``CLUSTER FAILOVER [FORCE]`` on replica ``node``; returns once it reports itself master."""
    if not node.is_replica:
        raise CacheError(f"{node.addr} is not a replica: failover promotes a replica to master")
    conn = client.node(node.address)
    try:
        conn.execute_command("CLUSTER", "FAILOVER", *(["FORCE"] if force else []))
    except Exception as exc:
        raise client.error(f"CLUSTER FAILOVER on {node.addr}", exc) from None
    wait_until(
        f"{node.addr} to become master",
        lambda: read_topology(client, node.address).myself.is_master,
        timeout_s,
    )

"""What a Redis Cluster looks like, as one node sees it: ``CLUSTER NODES`` parsed into typed records.

Why parse the text ourselves rather than take redis-py's parsed ``cluster("NODES")`` dict: that
dict is keyed by address (two nodes announcing one address collapse into one), keeps every field
as a string and drops nothing we could check against. The cluster operations need exact facts —
who owns which slot, which slots are open (MIGRATING / IMPORTING, shown only on the node's own
``myself`` line), flags such as ``fail`` and ``noaddr`` — and the check compares several nodes'
views, so one typed model serves both. The format is Redis's documented one:
``<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tasks.caching.client import CacheClient, NodeAddress, node_address

__all__ = [
    "SLOTS",
    "ClusterNode",
    "Topology",
    "parse_cluster_nodes",
    "read_topology",
    "slot_ranges",
]

SLOTS = 16384


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: a node as the answering node knows it.

    ``migrating`` / ``importing`` (slot → the other node's id) are only filled on the answering
    node's own line (``myself``): Redis does not gossip open slots."""

    id: str
    address: NodeAddress
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    connected: bool
    slots: frozenset[int] = frozenset()
    migrating: dict[int, str] = field(default_factory=dict)
    importing: dict[int, str] = field(default_factory=dict)

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def is_myself(self) -> bool:
        return "myself" in self.flags

    @property
    def failing(self) -> bool:
        """Flagged ``fail`` (agreed down) or ``pfail`` (this node cannot reach it)."""
        return bool(self.flags & {"fail", "fail?"})

    @property
    def addr(self) -> str:
        return str(self.address)


def _parse_address(text: str) -> NodeAddress:
    """``ip:port@cport[,hostname]`` → the client address (``:0`` for a node without an address)."""
    hostport = text.split(",", 1)[0].split("@", 1)[0]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    return NodeAddress(host or "", int(port) if port.isdigit() else 0)


def _parse_slots(fields: Iterable[str]) -> tuple[set[int], dict[int, str], dict[int, str]]:
    slots: set[int] = set()
    migrating: dict[int, str] = {}
    importing: dict[int, str] = {}
    for f in fields:
        if f.startswith("["):
            body = f.strip("[]")
            if "->-" in body:
                slot, other = body.split("->-", 1)
                migrating[int(slot)] = other
            elif "-<-" in body:
                slot, other = body.split("-<-", 1)
                importing[int(slot)] = other
            continue
        lo, _, hi = f.partition("-")
        slots.update(range(int(lo), int(hi or lo) + 1))
    return slots, migrating, importing


def parse_cluster_nodes(text: str | bytes) -> list[ClusterNode]:
    """Every node in a ``CLUSTER NODES`` reply; a ``ValueError`` naming the line that does not parse."""
    raw = text.decode() if isinstance(text, bytes) else text
    nodes: list[ClusterNode] = []
    for line in raw.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 8:
            raise ValueError(f"CLUSTER NODES line does not parse: {line[:120]!r}")
        try:
            slots, migrating, importing = _parse_slots(parts[8:])
            nodes.append(
                ClusterNode(
                    id=parts[0],
                    address=_parse_address(parts[1]),
                    flags=frozenset(parts[2].split(",")),
                    master_id=None if parts[3] == "-" else parts[3],
                    config_epoch=int(parts[6]),
                    connected=parts[7] == "connected",
                    slots=frozenset(slots),
                    migrating=migrating,
                    importing=importing,
                )
            )
        except ValueError:
            raise ValueError(f"CLUSTER NODES line does not parse: {line[:120]!r}") from None
    return nodes


@dataclass(frozen=True)
class Topology:
    """The cluster as one node (``seen_from``) sees it."""

    seen_from: NodeAddress
    nodes: tuple[ClusterNode, ...]

    def __iter__(self) -> Iterator[ClusterNode]:
        return iter(self.nodes)

    @property
    def myself(self) -> ClusterNode:
        for n in self.nodes:
            if n.is_myself:
                return n
        raise ValueError(f"{self.seen_from}: CLUSTER NODES has no 'myself' line")

    @property
    def masters(self) -> list[ClusterNode]:
        """Masters that are not failing, sorted by address (empty ones included)."""
        return sorted((n for n in self.nodes if n.is_master and "fail" not in n.flags), key=lambda n: n.address)

    def by_id(self, node_id: str) -> ClusterNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def by_address(self, address: NodeAddress) -> ClusterNode | None:
        return next((n for n in self.nodes if n.address == address), None)

    def find(self, text: str) -> ClusterNode | None:
        """A node by ``host:port`` or by id (a unique prefix of at least 8 characters)."""
        if ":" in text:
            return self.by_address(node_address(text))
        matches = [n for n in self.nodes if len(text) >= 8 and n.id.startswith(text)]
        return matches[0] if len(matches) == 1 else None

    def replicas_of(self, master_id: str) -> list[ClusterNode]:
        return sorted((n for n in self.nodes if n.master_id == master_id), key=lambda n: n.address)

    def owners(self) -> dict[int, str]:
        """Slot → owning node id, for every slot some node claims (per this node's view)."""
        out: dict[int, str] = {}
        for n in self.nodes:
            if n.is_master:
                for s in n.slots:
                    out[s] = n.id
        return out

    def fingerprint(self) -> str:
        """The slot map and membership in a stable text: two topologies with the same map agree."""
        parts = [f"{n.id}:{','.join(slot_ranges(n.slots))}" for n in sorted(self.nodes, key=lambda n: n.id)]
        return "|".join(parts)


def slot_ranges(slots: Iterable[int]) -> list[str]:
    """Slots as ``lo-hi`` ranges (``5`` for one slot), ascending: how Redis and people write them."""
    out: list[str] = []
    ordered = sorted(slots)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return out


def read_topology(client: CacheClient, address: NodeAddress | None = None) -> Topology:
    """``CLUSTER NODES`` of ``address`` (default: the URL's node), parsed; a ``CacheError`` on failure."""
    addr = address or client.seed()
    try:
        raw = client.node(addr).execute_command("CLUSTER", "NODES")
    except Exception as exc:
        raise client.error(f"CLUSTER NODES on {addr}", exc) from None
    return Topology(addr, tuple(parse_cluster_nodes(raw)))

"""What every node of the cache looks like right now: hits, misses, evictions, memory, ops/s, keys,
slots and replication, read live from each node (``cortex-perf cache stats``, the cache flow).

Why read every node directly: in a cluster, redis-py's ``info()`` answers for one node, and the
cluster client only knows the primaries it routes to; replicas (their lag, their link) and the
slot ownership come from ``CLUSTER NODES`` on the seed and ``INFO`` on each node by address. One
node that does not answer is reported as down (``up=False`` with the error), never dropped, so a
dashboard shows the hole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.caching.client import CacheClient, node_address

__all__ = ["SLOTS", "CacheStats", "NodeStats", "collect_stats", "slot_ranges_text"]

SLOTS = 16384


@dataclass
class NodeStats:
    """One node's numbers (``None``: the node did not say). Counters are since the node started."""

    node: str
    role: str  # master | replica
    up: bool = True
    error: str | None = None
    node_id: str | None = None
    master: str | None = None  # a replica's master (host:port)
    hits: int | None = None
    misses: int | None = None
    evicted_keys: int | None = None
    expired_keys: int | None = None
    used_memory: int | None = None
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    ops_per_s: float | None = None
    keys: int | None = None
    uptime_s: int | None = None
    run_id: str | None = None
    slots: int = 0
    slot_ranges: list[tuple[int, int]] = field(default_factory=list)
    replication_lag_s: float | None = None  # a replica: seconds since its master last talked to it
    replication_lag_bytes: int | None = None  # a replica: bytes behind its master's offset
    link_up: bool | None = None  # a replica: its link to the master

    @property
    def hit_ratio(self) -> float | None:
        if self.hits is None or self.misses is None or self.hits + self.misses == 0:
            return None
        return self.hits / (self.hits + self.misses)

    @property
    def memory_ratio(self) -> float | None:
        """Used memory over ``maxmemory`` (``None`` when no limit is set: Redis grows until the OS stops it)."""
        if not self.used_memory or not self.maxmemory:
            return None
        return self.used_memory / self.maxmemory

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["slot_ranges"] = [list(r) for r in self.slot_ranges]
        out["hit_ratio"] = self.hit_ratio
        out["memory_ratio"] = self.memory_ratio
        return out


@dataclass
class CacheStats:
    """Every node of one Redis (one entry when standalone), masters first, by address."""

    name: str
    cluster: bool
    nodes: list[NodeStats]

    @property
    def masters(self) -> list[NodeStats]:
        return [n for n in self.nodes if n.role == "master"]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cluster": self.cluster, "nodes": [n.to_json() for n in self.nodes]}


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _keys(info: Mapping[str, Any]) -> int:
    return sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, Mapping))


def fill_from_info(stats: NodeStats, info: Mapping[str, Any]) -> None:
    """Copy what ``INFO`` (all sections, parsed by redis-py) says into ``stats``."""
    stats.hits = _int(info.get("keyspace_hits"))
    stats.misses = _int(info.get("keyspace_misses"))
    stats.evicted_keys = _int(info.get("evicted_keys"))
    stats.expired_keys = _int(info.get("expired_keys"))
    stats.used_memory = _int(info.get("used_memory"))
    stats.maxmemory = _int(info.get("maxmemory"))
    policy = info.get("maxmemory_policy")
    stats.maxmemory_policy = None if policy is None else str(policy)
    ops = info.get("instantaneous_ops_per_sec")
    stats.ops_per_s = None if ops is None else float(ops)
    stats.keys = _keys(info)
    stats.uptime_s = _int(info.get("uptime_in_seconds"))
    stats.run_id = None if info.get("run_id") is None else str(info.get("run_id"))
    if info.get("role") == "slave":
        stats.role = "replica"
        host, port = info.get("master_host"), info.get("master_port")
        if host is not None and port is not None and stats.master is None:
            stats.master = f"{host}:{port}"
        stats.link_up = info.get("master_link_status") == "up"
        last_io = _int(info.get("master_last_io_seconds_ago"))
        stats.replication_lag_s = float(last_io) if last_io is not None and last_io >= 0 else None


def slot_ranges_text(ranges: list[tuple[int, int]]) -> str:
    """``0-5460,10923`` (what ``CLUSTER NODES`` prints), ``—`` for none."""
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges) or "—"


def _cluster_view(client: CacheClient) -> dict[str, Mapping[str, Any]]:
    seed = client.seed()
    try:
        view = client.node(seed).cluster("NODES")
    except Exception as exc:
        raise client.error(f"CLUSTER NODES on {seed}", exc) from None
    return dict(view)


def collect_stats(client: CacheClient) -> CacheStats:
    """Read every node (every master and replica of a cluster; the server when standalone)."""
    if not client.cluster:
        addr = client.seed()
        node = NodeStats(str(addr), "master")
        try:
            fill_from_info(node, client.info_one(addr))
        except Exception as exc:
            node.up, node.error = False, str(exc)
        return CacheStats(client.name, False, [node])

    view = _cluster_view(client)
    by_id = {v["node_id"]: addr for addr, v in view.items()}
    nodes: list[NodeStats] = []
    for addr_text, v in view.items():
        flags = str(v.get("flags", ""))
        if "noaddr" in flags or "handshake" in flags:
            continue
        addr = node_address(addr_text.split("@")[0])
        role = "replica" if "slave" in flags else "master"
        ranges = [(int(r[0]), int(r[1])) for r in v.get("slots", [])]
        node = NodeStats(
            str(addr),
            role,
            node_id=str(v["node_id"]),
            master=by_id.get(str(v.get("master_id"))) if role == "replica" else None,
            slot_ranges=ranges,
            slots=sum(b - a + 1 for a, b in ranges),
        )
        if "fail" in flags.replace("fail?", ""):
            node.up, node.error = False, f"cluster marks it {flags}"
        try:
            fill_from_info(node, client.info_one(addr))
        except Exception as exc:
            node.up, node.error = False, str(exc)
        nodes.append(node)
    _replication_bytes(nodes, client)
    nodes.sort(key=lambda n: (n.role != "master", node_address(n.node)))
    return CacheStats(client.name, True, nodes)


def _replication_bytes(nodes: list[NodeStats], client: CacheClient) -> None:
    """Bytes each replica is behind: its master's ``master_repl_offset`` minus the replica's ``offset``
    (both from the master's INFO, read at one instant, so they compare)."""
    by_addr = {n.node: n for n in nodes}
    for master in (n for n in nodes if n.role == "master" and n.up):
        try:
            info = client.info_one(node_address(master.node), "replication")
        except Exception:
            continue
        offset = _int(info.get("master_repl_offset"))
        for key, rep in info.items():
            if not (key.startswith("slave") and isinstance(rep, Mapping)) or offset is None:
                continue
            replica = by_addr.get(f"{rep.get('ip')}:{rep.get('port')}")
            rep_offset = _int(rep.get("offset"))
            if replica is not None and rep_offset is not None:
                replica.replication_lag_bytes = max(0, offset - rep_offset)

"""Redis metrics from ``INFO``: throughput, hit ratio, memory, clients, evictions, keys per db.

In cluster mode INFO is read from every node (``redis.cluster.RedisCluster``), each node's series
labelled ``node="host:port"``; every series also carries ``redis`` (the configured name). Names
follow redis_exporter's where it has one, so existing dashboards and habits carry over.

Why so much care with the URL: it may hold a password. It never goes into a label, a log line or
an error; errors from the client are passed through ``redact`` before they leave this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from tasks.config.settings import RedisSourceSettings
from tasks.lake.schema import Sample, now_utc
from tasks.redact import redact_text, redact_url
from tasks.sources.base import Source, SourceError, sanitize_metric_name, source_logger

__all__ = ["RedisSource", "info_to_samples", "safe_redis_url"]

#: INFO field -> metric name. Gauges first, then cumulative counters (``_total``).
GAUGES: dict[str, str] = {
    "instantaneous_ops_per_sec": "redis_instantaneous_ops_per_sec",
    "used_memory": "redis_memory_used_bytes",
    "used_memory_rss": "redis_memory_used_rss_bytes",
    "maxmemory": "redis_memory_max_bytes",
    "mem_fragmentation_ratio": "redis_memory_fragmentation_ratio",
    "connected_clients": "redis_connected_clients",
    "blocked_clients": "redis_blocked_clients",
    "connected_slaves": "redis_connected_replicas",
    "uptime_in_seconds": "redis_uptime_seconds",
}
COUNTERS: dict[str, str] = {
    "keyspace_hits": "redis_keyspace_hits_total",
    "keyspace_misses": "redis_keyspace_misses_total",
    "evicted_keys": "redis_evicted_keys_total",
    "expired_keys": "redis_expired_keys_total",
    "total_commands_processed": "redis_commands_processed_total",
    "total_connections_received": "redis_connections_received_total",
    "rejected_connections": "redis_rejected_connections_total",
    "total_net_input_bytes": "redis_net_input_bytes_total",
    "total_net_output_bytes": "redis_net_output_bytes_total",
}


def _secrets_of(url: str) -> list[str]:
    parts = urlsplit(url)
    out = [url]
    if parts.password:
        out += [parts.password, unquote(parts.password)]
    return out


def safe_redis_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user name is kept: it helps debugging)."""
    return redact_url(url)


def _num(v: object) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def info_to_samples(
    info: Mapping[str, Any],
    labels: Mapping[str, str],
    now: datetime,
    extra_fields: Sequence[str] = (),
) -> list[Sample]:
    """Map one node's parsed INFO (``redis.Redis.info()``) to samples carrying ``labels``.

    A pure function so the mapping is testable on its own and shared by single and cluster mode.
    """
    out: list[Sample] = []
    base = dict(labels)

    def add(metric: str, value: float, **extra: str) -> None:
        out.append(Sample(metric, value, now, {**base, **extra}))

    out.append(Sample("redis_up", 1.0, now, base))
    for field_name, metric in (*GAUGES.items(), *COUNTERS.items()):
        v = _num(info.get(field_name))
        if v is not None:
            add(metric, v)
    hits, misses = _num(info.get("keyspace_hits")), _num(info.get("keyspace_misses"))
    if hits is not None and misses is not None and hits + misses > 0:
        # Since start of the server; the lake derives windowed ratios from the two counters.
        add("redis_keyspace_hit_ratio", hits / (hits + misses))
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit() and isinstance(value, Mapping):
            keys, expires = _num(value.get("keys")), _num(value.get("expires"))
            if keys is not None:
                add("redis_db_keys", keys, db=key)
            if expires is not None:
                add("redis_db_keys_expiring", expires, db=key)
    role = info.get("role")
    if role is not None:
        add(
            "redis_instance_info",
            1.0,
            role=str(role),
            redis_version=str(info.get("redis_version", "")),
            redis_mode=str(info.get("redis_mode", "")),
        )
        add("redis_master", 1.0 if role == "master" else 0.0)
    out += _replication_samples(info, base, now)
    for field_name in extra_fields:
        v = _num(info.get(field_name))
        if v is not None:
            add(f"redis_{sanitize_metric_name(field_name)}", v)
    return out


def _replication_samples(info: Mapping[str, Any], base: Mapping[str, str], now: datetime) -> list[Sample]:
    """Replication as redis_exporter names it: on a master, each replica's lag (seconds since its
    last ACK) and offset, plus how many bytes it is behind; on a replica, its link and last I/O."""
    out: list[Sample] = []
    master_offset = _num(info.get("master_repl_offset"))
    if info.get("role") == "master":
        for key, rep in info.items():
            if not (key.startswith("slave") and key[5:].isdigit() and isinstance(rep, Mapping)):
                continue
            labels = {**base, "slave_ip": str(rep.get("ip", "")), "slave_port": str(rep.get("port", "")),
                      "slave_state": str(rep.get("state", ""))}  # fmt: skip
            lag, offset = _num(rep.get("lag")), _num(rep.get("offset"))
            if lag is not None:
                out.append(Sample("redis_connected_slave_lag_seconds", lag, now, labels))
            if offset is not None:
                out.append(Sample("redis_connected_slave_offset_bytes", offset, now, labels))
                if master_offset is not None:
                    lag_bytes = max(0.0, master_offset - offset)
                    out.append(Sample("redis_connected_slave_lag_bytes", lag_bytes, now, labels))
    elif info.get("role") == "slave":
        out.append(Sample("redis_master_link_up", 1.0 if info.get("master_link_status") == "up" else 0.0, now,
                          dict(base)))  # fmt: skip
        last_io = _num(info.get("master_last_io_seconds_ago"))
        if last_io is not None and last_io >= 0:
            out.append(Sample("redis_master_last_io_seconds_ago", last_io, now, dict(base)))
        offset = _num(info.get("slave_repl_offset"))
        if offset is not None:
            out.append(Sample("redis_slave_repl_offset", offset, now, dict(base)))
    if master_offset is not None:
        out.append(Sample("redis_master_repl_offset", master_offset, now, dict(base)))
    return out


def cluster_slot_samples(
    client: Any, view: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], now: datetime
) -> list[Sample]:
    """Slots each master owns and the keys in each of its slot ranges (``CLUSTER NODES`` on one node,
    ``CLUSTER COUNTKEYSINSLOT`` pipelined on each owner: ~0.03 s per 5,461 slots here).

    Why per range and not per slot: 16,384 series per cluster would swamp the catalogue, and a
    range (what ``CLUSTER NODES`` shows) is the unit an operator moves; a hot range shows here."""
    out: list[Sample] = []
    for addr, node in view.items():
        if "master" not in str(node.get("flags", "")):
            continue
        host_port = addr.split("@")[0]
        ranges = [(int(a), int(b)) for a, b in node.get("slots", [])]
        node_labels = {**labels, "node": host_port}
        out.append(Sample("redis_cluster_node_slots", float(sum(b - a + 1 for a, b in ranges)), now, node_labels))
        if not ranges:
            continue
        with _node_connection(client, host_port) as conn:
            pipe = conn.pipeline(transaction=False)
            for a, b in ranges:
                for slot in range(a, b + 1):
                    pipe.execute_command("CLUSTER COUNTKEYSINSLOT", slot)
            counts = iter(pipe.execute())
        for a, b in ranges:
            keys = sum(int(next(counts)) for _ in range(a, b + 1))
            out.append(Sample("redis_cluster_slot_range_keys", float(keys), now,
                              {**node_labels, "slots": f"{a}-{b}" if a != b else str(a)}))  # fmt: skip
    return out


class RedisSource(Source):
    """INFO of one Redis server, or of every node of a Redis Cluster.

    ``client_factory`` (no arguments, returns a ``redis.Redis`` or ``RedisCluster``) replaces the
    client built from ``url``; the source closes each client it obtained after the collection.
    """

    def __init__(
        self,
        url: str | SecretStr = "redis://127.0.0.1:6379/0",
        *,
        redis_name: str = "default",
        name: str | None = None,
        cluster: bool = False,
        timeout_s: float = 5.0,
        extra_info_fields: Sequence[str] = (),
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._url = url.get_secret_value() if isinstance(url, SecretStr) else url
        self.redis_name = redis_name
        self.name = name or ("redis" if redis_name == "default" else f"redis:{redis_name}")
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.extra_info_fields = list(extra_info_fields)
        self._factory = client_factory or self._default_client
        self._secrets = _secrets_of(self._url)
        self._log = source_logger(self.name)

    @classmethod
    def from_settings(cls, cfg: RedisSourceSettings) -> RedisSource:
        return cls(
            cfg.url,
            redis_name=cfg.name,
            cluster=cfg.cluster,
            timeout_s=cfg.timeout_s,
            extra_info_fields=cfg.extra_info_fields,
        )

    @property
    def safe_url(self) -> str:
        return safe_redis_url(self._url)

    def __repr__(self) -> str:
        return f"RedisSource(name={self.name!r}, url={self.safe_url!r}, cluster={self.cluster})"

    def _default_client(self) -> Any:
        kw: dict[str, Any] = {"socket_timeout": self.timeout_s, "socket_connect_timeout": self.timeout_s}
        if self.cluster:
            # lazy: redis-py costs +0.41 s on top of tasks.sources.runner (measured 2026-12-07), paid only by a
            # Redis source that builds its own client (tests and health inject theirs).
            from redis.cluster import RedisCluster

            return RedisCluster.from_url(self._url, **kw)
        import redis

        return redis.Redis.from_url(self._url, **kw)

    def _error(self, where: str, exc: BaseException, samples: Sequence[Sample] = ()) -> SourceError:
        text = redact_text(f"{type(exc).__name__}: {exc}", self._secrets)
        return SourceError(f"redis {self.redis_name} ({where}): {text}", samples)

    def collect(self, now: datetime | None = None) -> list[Sample]:
        now = now or now_utc()
        try:
            client = self._factory()
        except Exception as exc:
            raise self._error(self.safe_url, exc) from None
        try:
            if self.cluster:
                return self._collect_cluster(client, now)
            node = _node_name(client)
            labels = {"redis": self.redis_name, "node": node}
            try:
                info = client.info()
            except Exception as exc:
                down = [Sample("redis_up", 0.0, now, labels)]
                raise self._error(node, exc, down) from None
            return info_to_samples(info, labels, now, self.extra_info_fields)
        finally:
            _close(client)

    def _collect_cluster(self, client: Any, now: datetime) -> list[Sample]:
        """INFO of every node ``CLUSTER NODES`` lists — replicas too: the cluster client only caches
        the nodes ``CLUSTER SLOTS`` named when it started, so a replica that joined later (or any
        replica, before it synced) would be missing — then the slot ownership and keys per range."""
        out: list[Sample] = []
        errors: list[str] = []
        try:
            view = client.cluster_nodes()
        except Exception as exc:  # no view: fall back to the nodes the client knows
            errors.append(str(self._error("CLUSTER NODES", exc)))
            view = {f"{n.host}:{n.port}": {"flags": n.server_type or ""} for n in client.get_nodes()}
        # A node that never met another one lists itself without a host (":7000"): it is the one we asked.
        seed_host = getattr(client.get_default_node(), "host", "127.0.0.1")
        view = {(seed_host + addr if addr.startswith(":") else addr): node for addr, node in view.items()}
        for addr, node in sorted(view.items()):
            flags = str(node.get("flags", ""))
            if "noaddr" in flags or "handshake" in flags:
                continue
            host_port = addr.split("@")[0]
            labels = {"redis": self.redis_name, "node": host_port}
            try:
                with _node_connection(client, host_port) as conn:
                    info = conn.info()
            except Exception as exc:  # one node down: report it, keep the others
                out.append(Sample("redis_up", 0.0, now, labels))
                errors.append(str(self._error(labels["node"], exc)))
                continue
            out.extend(info_to_samples(info, labels, now, self.extra_info_fields))
        try:
            out.extend(cluster_slot_samples(client, view, {"redis": self.redis_name}, now))
        except Exception as exc:  # slot stats are extra: the per-node INFO above still counts
            errors.append(str(self._error("cluster slots", exc)))
        if errors:
            raise SourceError("; ".join(errors), out)
        return out


@contextlib.contextmanager
def _node_connection(client: Any, host_port: str) -> Iterator[Any]:
    """A connection to one cluster node: the client's own when it knows the node, else a new one
    with the client's connection settings (password, TLS, timeouts), closed afterwards."""
    host, _, port = host_port.rpartition(":")
    known = client.get_node(host=host, port=int(port))
    if known is not None and known.redis_connection is not None:
        yield known.redis_connection
        return
    import redis  # lazy: see _default_client (a cluster client already loaded it when we get here)

    kwargs = dict(getattr(getattr(client, "nodes_manager", None), "connection_kwargs", {}) or {})
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    conn = redis.Redis(host=host, port=int(port), **kwargs)
    try:
        yield conn
    finally:
        conn.close()


def _node_name(client: Any) -> str:
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', 6379)}"


def _close(client: Any) -> None:
    """Close a client and its sockets; errors while closing change nothing we return.

    ``RedisCluster.close()`` leaves each node's connection pool open (the node clients do not own
    their pools), which in a long-running collector leaks a socket per node per tick.
    """
    with contextlib.suppress(Exception):
        client.close()
    get_nodes = getattr(client, "get_nodes", None)
    if get_nodes is None:
        return
    with contextlib.suppress(Exception):
        for node in get_nodes():
            conn = getattr(node, "redis_connection", None)
            if conn is not None:
                conn.connection_pool.disconnect()

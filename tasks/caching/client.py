"""One client for standalone Redis and Redis Cluster, built from the ``cache`` settings.

Why a wrapper at all: redis-py has two client classes whose cluster-wide commands differ in a way
that silently lies — ``RedisCluster.dbsize()``, ``keys()`` and ``info()`` ask *one* node unless given
``target_nodes`` — and the cache manager needs, for both kinds, the same three things: data
commands (``.redis``), a direct connection to any one node with the same credentials and TLS
(cluster operations talk to each node by address), and per-node INFO / key counts / key scans
over every primary. Everything else is plain redis-py.

Secrets: the password (from ``cache.password`` or the URL's userinfo) never reaches a log line, an
error or ``repr``: errors leave this module through :func:`redact`, URLs through ``safe_url``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.cluster import RedisCluster

from tasks.config import Settings
from tasks.config.caching import CacheSettings
from tasks.redact import redact_text, redact_url

__all__ = ["CacheClient", "CacheError", "NodeAddress", "node_address"]


class CacheError(OSError):
    """A cache operation failed; the message is one line, names what failed, and holds no secret.

    An ``OSError``: it is the outside world (a node down, a refused command), which the CLI prints
    as one line without a type name."""


@dataclass(frozen=True, order=True)
class NodeAddress:
    """A Redis node by address (``host:port``), as ``CLUSTER NODES`` and the CLI name it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def node_address(text: str) -> NodeAddress:
    """Parse ``host:port`` (IPv6 as ``[::1]:7000``); a ``ValueError`` naming the bad text otherwise."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
    else:
        host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not a node address like 127.0.0.1:7000")
    return NodeAddress(host, int(port))


@dataclass(frozen=True)
class _Conn:
    """How to reach any node: the credentials, TLS and timeouts every connection shares."""

    username: str | None
    password: str | None
    tls: bool
    tls_ca_file: str | None
    tls_verify: bool
    connect_timeout_s: float
    timeout_s: float

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout_s,
            "socket_timeout": self.timeout_s,
        }
        if self.username:
            kw["username"] = self.username
        if self.password is not None:
            kw["password"] = self.password
        if self.tls:
            kw["ssl"] = True
            kw["ssl_cert_reqs"] = "required" if self.tls_verify else "none"
            if self.tls_ca_file:
                kw["ssl_ca_certs"] = self.tls_ca_file
        return kw


class CacheClient:
    """Standalone Redis or a Redis Cluster, one interface (see the module docstring).

    ``url`` is the server's URL, or any one cluster node's (the client discovers the rest). The
    connection opens on first use; ``close()`` (or ``with``) closes every socket it opened."""

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        name: str = "default",
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        tls_ca_file: str | None = None,
        tls_verify: bool = True,
        connect_timeout_s: float = 2.0,
        timeout_s: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise CacheError(f"cache.url: must start with redis://, rediss:// or unix:// (got {redact_url(url)!r})")
        self._url = url
        self.cluster = cluster
        self.name = name
        self._secrets = [s for s in (password, parts.password, unquote(parts.password or "")) if s]
        self._conn = _Conn(
            username=username or (unquote(parts.username) if parts.username else None),
            password=password if password is not None else (unquote(parts.password) if parts.password else None),
            tls=tls or parts.scheme == "rediss",
            tls_ca_file=tls_ca_file,
            tls_verify=tls_verify,
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
        )
        self._client: Redis | RedisCluster | None = None
        self._nodes: dict[NodeAddress, Redis] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheClient:
        """The client ``settings.cache`` names; unset URL and cluster flag come from ``sources.redis``."""
        cfg: CacheSettings = settings.cache
        src = settings.sources.redis
        url = (cfg.url or src.url).get_secret_value()
        return cls(
            url,
            cluster=src.cluster if cfg.cluster is None else cfg.cluster,
            name=cfg.name,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            tls=cfg.tls,
            tls_ca_file=cfg.tls_ca_file,
            tls_verify=cfg.tls_verify,
            connect_timeout_s=cfg.connect_timeout_s,
            timeout_s=cfg.timeout_s,
        )

    # -- what it is ---------------------------------------------------------------------------

    @property
    def safe_url(self) -> str:
        """The URL with its password replaced by ``***``: what may be printed or logged."""
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"CacheClient(name={self.name!r}, url={self.safe_url!r}, cluster={self.cluster})"

    def redact(self, text: str) -> str:
        """``text`` with every secret this client knows (and any URL's credentials) replaced by ``***``."""
        return redact_text(text, self._secrets)

    def error(self, where: str, exc: BaseException) -> CacheError:
        """A one-line :class:`CacheError` for ``exc`` raised while doing ``where``, secrets removed."""
        return CacheError(self.redact(f"{where}: {type(exc).__name__}: {exc}".replace("\n", " ")))

    # -- connections ---------------------------------------------------------------------------

    @property
    def redis(self) -> Redis | RedisCluster:
        """The data client: ``Redis`` or ``RedisCluster`` (follows MOVED/ASK by itself)."""
        if self._client is None:
            try:
                if self.cluster:
                    self._client = RedisCluster.from_url(self._url, **self._conn.kwargs())
                else:
                    self._client = Redis.from_url(self._url, **self._conn.kwargs())
            except Exception as exc:
                raise self.error(f"connect to {self.safe_url}", exc) from None
        return self._client

    def node(self, address: NodeAddress | str) -> Redis:
        """A direct connection to one node (same credentials, TLS, timeouts), kept until ``close``.

        Cluster operations need it: ``CLUSTER SETSLOT``, ``MIGRATE`` or ``CLUSTER MEET`` go to one
        named node, never through the cluster client's routing."""
        addr = node_address(address) if isinstance(address, str) else address
        conn = self._nodes.get(addr)
        if conn is None:
            conn = Redis(host=addr.host, port=addr.port, **self._conn.kwargs())
            self._nodes[addr] = conn
        return conn

    def seed(self) -> NodeAddress:
        """The node the URL names (for a unix socket URL: ``unix:0``)."""
        parts = urlsplit(self._url)
        if parts.scheme == "unix":
            return NodeAddress("unix", 0)
        return NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)

    def primaries(self) -> list[NodeAddress]:
        """Every primary (master) that serves data: the server itself when standalone, sorted."""
        if not self.cluster:
            return [self.seed()]
        client = self.redis
        assert isinstance(client, RedisCluster)
        try:
            return sorted(NodeAddress(n.host, int(n.port)) for n in client.get_primaries())
        except Exception as exc:
            raise self.error("list primaries", exc) from None

    def _primary_client(self, addr: NodeAddress) -> Redis:
        """The connection that reads ``addr``: the data client when standalone, else a node client."""
        if self.cluster:
            return self.node(addr)
        client = self.redis
        assert isinstance(client, Redis)
        return client

    # -- cluster-wide reads, always over every primary ----------------------------------------

    def info_one(self, addr: NodeAddress, section: str | None = None) -> dict[str, Any]:
        """INFO of one node by address (a replica too); ``section=None`` reads every section."""
        conn = self._primary_client(addr) if not self.cluster else self.node(addr)
        try:
            return dict(conn.info(section) if section else conn.info("all"))
        except Exception as exc:
            raise self.error(f"INFO on {addr}", exc) from None

    def info(self, section: str | None = None) -> dict[str, dict[str, Any]]:
        """INFO of every primary, by ``host:port`` (one entry when standalone)."""
        out: dict[str, dict[str, Any]] = {}
        for addr in self.primaries():
            try:
                raw = self._primary_client(addr).info(section) if section else self._primary_client(addr).info()
            except Exception as exc:
                raise self.error(f"INFO on {addr}", exc) from None
            out[str(addr)] = dict(raw)
        return out

    def dbsize(self) -> int:
        """Keys in the whole dataset: the sum of ``DBSIZE`` over every primary."""
        total = 0
        for addr in self.primaries():
            try:
                total += int(self._primary_client(addr).dbsize())
            except Exception as exc:
                raise self.error(f"DBSIZE on {addr}", exc) from None
        return total

    def scan_keys(self, match: str | None = None, *, count: int = 1000) -> Iterator[bytes]:
        """Every key (``match``: a Redis glob) on every primary, each once, as bytes (keys are binary)."""
        for addr in self.primaries():
            client = self._primary_client(addr)
            try:
                yield from client.scan_iter(match=match, count=count)
            except Exception as exc:
                raise self.error(f"SCAN on {addr}", exc) from None

    def ping(self) -> bool:
        """Whether every primary answers ``PING`` (raises :class:`CacheError` naming the first that fails)."""
        for addr in self.primaries():
            try:
                self._primary_client(addr).ping()
            except Exception as exc:
                raise self.error(f"PING {addr}", exc) from None
        return True

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection this client opened (node clients too: ``RedisCluster.close`` leaves
        its nodes' pools open)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            if isinstance(self._client, RedisCluster):
                with contextlib.suppress(Exception):
                    for n in self._client.get_nodes():
                        if n.redis_connection is not None:
                            n.redis_connection.connection_pool.disconnect()
            self._client = None
        for conn in self._nodes.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._nodes.clear()

    def __enter__(self) -> CacheClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

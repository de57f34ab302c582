"""A real Redis Cluster on loopback for the tests and benchmarks: ``redis-server`` processes in
cluster mode, assembled with ``CLUSTER MEET`` and ``CLUSTER ADDSLOTSRANGE`` (no ``redis-cli``).

Why assembled by hand rather than with ``redis-cli --cluster create``: the fixture must not depend
on the code under test (our cluster operations) nor on redis-cli's interactive prompt, and it is
a few commands. ``cluster-node-timeout 1000`` (CONVENTIONS.md): a new node reaches
``cluster_state:ok`` about a second after it joins instead of five.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

SLOTS = 16384


#: A cluster node also listens on its port + 10000 (the bus): redis-server refuses ports above this.
MAX_CLUSTER_PORT = 55535


def _free_port(highest: int = 65535) -> int:
    """A port that was free a moment ago, at most ``highest`` (the kernel's ephemeral range reaches
    60999, so about one pick in six is too high for a cluster node and is drawn again)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= highest:
            return port


@dataclass
class RedisNode:
    """One ``redis-server`` process (cluster mode unless ``cluster=False``)."""

    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def node_id(self) -> str:
        with self.client() as c:
            raw = c.execute_command("CLUSTER MYID")
            return raw.decode() if isinstance(raw, bytes) else str(raw)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_node(root: Path, *, cluster: bool = True, extra: list[str] | None = None, attempts: int = 3) -> RedisNode:
    """Start one ``redis-server`` on a free port under ``root``; wait until it answers PING."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    error: Exception | None = None
    for _ in range(attempts):
        port = _free_port(MAX_CLUSTER_PORT if cluster else 65535)
        workdir = root / str(port)
        workdir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(workdir)]  # fmt: skip
        if cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
            ]
        args += extra or []
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        node = RedisNode(port, proc, workdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                error = RuntimeError(f"redis-server on {port} exited with {proc.returncode}")
                break
            try:
                with node.client() as c:
                    c.ping()
                return node
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            error = RuntimeError(f"redis-server on {port} did not answer within 10 s")
        node.stop(signal.SIGKILL)
    raise RuntimeError(f"could not start redis-server: {error}")


def wait_cluster_ok(nodes: list[RedisNode], timeout_s: float = 30.0) -> None:
    """Until every node says ``cluster_state:ok`` and knows every other node."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ok = True
        for n in nodes:
            with n.client() as c:
                info = c.cluster("INFO")  # redis-py parses it into a dict
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(nodes):
                    ok = False
                    break
        if ok:
            return
        time.sleep(0.05)
    raise RuntimeError(f"cluster did not reach cluster_state:ok within {timeout_s} s")


def wait_replicas_synced(nodes: list[RedisNode], replicas: int, timeout_s: float = 30.0) -> None:
    """Until every node's view shows ``replicas`` replicas and each replica's link to its master is up
    (gossip spreads a ``CLUSTER REPLICATE`` over a few node timeouts; the first sync takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ok = True
        for n in nodes:
            with n.client() as c:
                view = c.cluster("NODES")
                if sum("slave" in v["flags"] for v in view.values()) < replicas:
                    ok = False
                    break
                info = c.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    ok = False
                    break
        if ok:
            return
        time.sleep(0.05)
    raise RuntimeError(f"replicas did not sync within {timeout_s} s")


@dataclass
class LocalRedisCluster:
    """A Redis Cluster of ``masters`` masters (slots split evenly) and ``replicas`` per master."""

    masters: int = 3
    replicas: int = 0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-cluster-")))
    nodes: list[RedisNode] = field(default_factory=list)
    spares: list[RedisNode] = field(default_factory=list)

    def start(self) -> LocalRedisCluster:
        try:
            masters = [start_node(self.root) for _ in range(self.masters)]
            self.nodes = list(masters)
            first = masters[0]
            per = SLOTS // self.masters
            for i, m in enumerate(masters):
                lo = i * per
                hi = SLOTS - 1 if i == self.masters - 1 else (i + 1) * per - 1
                with m.client() as c:
                    c.execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)
            with first.client() as c:
                for m in masters[1:]:
                    c.execute_command("CLUSTER MEET", "127.0.0.1", m.port)
            wait_cluster_ok(masters)
            for m in masters:
                mid = m.node_id()
                for _ in range(self.replicas):
                    r = start_node(self.root)
                    self.nodes.append(r)
                    with r.client() as c:
                        c.execute_command("CLUSTER MEET", "127.0.0.1", first.port)
                    self._replicate(r, mid)
            wait_cluster_ok(self.nodes)
            if self.replicas:
                wait_replicas_synced(self.nodes, self.masters * self.replicas)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _replicate(replica: RedisNode, master_id: str, timeout_s: float = 20.0) -> None:
        """``CLUSTER REPLICATE`` once the replica has learned of its master (gossip takes a moment)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with replica.client() as c:
                    c.execute_command("CLUSTER REPLICATE", master_id)
                return
            except redis.ResponseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def spare(self) -> RedisNode:
        """A new, empty cluster-mode node that is not (yet) part of the cluster."""
        node = start_node(self.root)
        self.spares.append(node)
        return node

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for n in [*self.nodes, *self.spares]:
            n.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

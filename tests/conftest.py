"""Shared fixtures: real local services for tests that need them.

Why real services rather than mocks: the sources' job is to speak the real protocols (RESP,
HTTP exposition); a fake server would only test our idea of them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from localhttp import JsonHandler, LocalServer
from localsmtp import Mailbox
from prefectserver import running_server
from rediscluster import LocalRedisCluster

REDIS_SERVER = "/usr/bin/redis-server"

# pytest-xdist hands its workers the controller's terminal width as COLUMNS; Rich fixes a console's
# width from COLUMNS when the console is built (flows.cli.common, at import), after which a test's
# monkeypatched COLUMNS (wide tables) no longer applies. Without it, every process sizes alike.
os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True, scope="session")
def _no_project_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests never read the checkout's own ``cortex-perf.yaml``.

    Why: README's first command (``run --demo``) leaves one in the checkout (demo rules, a demo
    scaling target), and the settings find it from any folder of the project; tests expecting the
    defaults would then see the demo's. Every test starts from an empty config file in a folder of
    its own (so relative paths in the settings land there, never in the checkout); a test that
    wants another config names it (``--config``, ``CORTEX_PERF_CONFIG``) or removes the variable.
    """
    if os.environ.get("CORTEX_PERF_CONFIG"):
        yield  # the caller chose a config for the whole run
        return
    empty = tmp_path_factory.mktemp("no-project-config") / "cortex-perf.yaml"
    empty.write_text("# the tests' default: every setting at its default\n")
    os.environ["CORTEX_PERF_CONFIG"] = str(empty)
    try:
        yield
    finally:
        os.environ.pop("CORTEX_PERF_CONFIG", None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout_s}s")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server: ``$CORTEX_TEST_REDIS_URL`` (CI) or a private ``redis-server``."""
    env = os.environ.get("CORTEX_TEST_REDIS_URL")
    if env:
        yield _worker_db(env)
        return
    binary = REDIS_SERVER if os.path.exists(REDIS_SERVER) else shutil.which("redis-server")
    if not binary:
        pytest.fail(
            "no Redis for the tests: set CORTEX_TEST_REDIS_URL=redis://host:port/0 "
            "or install redis-server (apt-get install redis-server)"
        )
    proc, port = _start_redis(binary)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _worker_db(url: str) -> str:
    """``url`` with a database of this pytest-xdist worker's own (gw0 → 1, gw1 → 2, …; none: as given).

    Why: CI runs one Redis for the whole suite and tests flush their database; two workers on one
    database would flush each other's keys mid-test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    db = int(worker[2:]) % 15 + 1
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def _start_redis(binary: str, attempts: int = 3) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server on a free port; retry on a new port if another process took it first."""
    error: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, proc)
            return proc, port
        except RuntimeError as exc:
            error = exc
            proc.kill()
            proc.wait()
    pytest.fail(f"could not start {binary}: {error}")


# ---- a real Prefect server (deploy/worker and work-pool actuator tests) --------------------------------


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """API URL of one ``prefect server start`` shared by the session (starting one costs 15–25 s).

    Tests sharing it must not collide: each uses its own work-pool and deployment names."""
    with running_server(tmp_path_factory.mktemp("prefect-server"), free_port()) as api:
        yield api


# ---- a webhook endpoint for Apprise's json:// plugin (alerting delivery tests) ----------------------


class Hook:
    """A webhook endpoint: records each POST (path, JSON) and answers with scripted status codes."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.codes: dict[str, list[int]] = {}
        #: when a test sets it, the first POST is held (its sender waits for the answer) until set
        self.hold_first: threading.Event | None = None
        outer = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer._lock:
                    outer.posts.append((self.path, json.loads(body)))
                    first = len(outer.posts) == 1
                if first and outer.hold_first is not None:
                    outer.hold_first.wait(120)
                script = outer.codes.get(self.path, [])
                code = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
                self.send_response(code)
                self.end_headers()

        self._lock = threading.Lock()
        self.http = LocalServer(Handler)
        self.server, self.port = self.http.server, self.http.port

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict]:
        return [p for q, p in self.posts if q == path]


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    if h.hold_first is not None:
        h.hold_first.set()  # never leave a sender (or the server's shutdown) waiting
    h.http.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server) on 127.0.0.1 with an empty bucket ``metrics``; any keys work."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    ep = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=ep, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    ).create_bucket(Bucket="metrics")
    yield ep
    srv.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server (aiosmtpd) on a free 127.0.0.1 port: ``(mailbox, port)``."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield box, ctl.port
    ctl.stop()


# ---- a real Redis Cluster on loopback (cache manager tests) -------------------------------------------


@pytest.fixture
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A fresh 3-master Redis Cluster (no replicas) per test: cluster operations change it.

    ``.spare()`` starts an empty cluster-mode node to add; everything stops after the test."""
    with LocalRedisCluster(masters=3) as cluster:
        yield cluster

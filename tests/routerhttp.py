"""Real HTTP backends and a real router service on 127.0.0.1 for the router's tests.

``Backend``: a threaded HTTP/1.1 server (keep-alive, chunked answers) whose paths say what to do:
``/echo`` (the request as JSON), ``/slow?ms=N``, ``/stream?n=K&gap_ms=G`` (K chunks, G ms apart),
``/cut`` (promises 1000 bytes, sends 10 and closes), ``/status/N``; ``backend.fail_status`` makes
every answer that status. ``Service``: an ASGI app served by uvicorn from a thread, with its
lifespan (the recorder and the reloader run as they do under ``cortex-perf router serve``).
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from localhttp import JsonHandler


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (nothing listens there: refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler(JsonHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        srv = self.server
        with srv.lock:
            srv.hits.append(parts.path)
        if srv.delay_ms:
            time.sleep(srv.delay_ms / 1000)
        if srv.fail_status:
            self._send(srv.fail_status, {"backend": srv.name, "error": "told to fail"})
            return
        path = parts.path
        if path.startswith("/slow"):
            time.sleep(float(q.get("ms", "100")) / 1000)
            self._send(200, {"backend": srv.name})
        elif path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(q.get("n", "3"))):
                chunk = f"chunk {i} from {srv.name}\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                time.sleep(float(q.get("gap_ms", "200")) / 1000)
            self.wfile.write(b"0\r\n\r\n")
            with srv.lock:
                srv.streams_done += 1
        elif path.startswith("/cut"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), {"backend": srv.name})
        else:
            self._send(
                200,
                {
                    "backend": srv.name,
                    "method": self.command,
                    "path": parts.path,
                    "query": parts.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                },
            )

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.hits: list[str] = []
        self.lock = threading.Lock()
        self.fail_status = 0
        self.delay_ms = 0.0
        self.streams_done = 0


class Backend:
    """A named backend on a free port; ``close()`` stops it."""

    def __init__(self, name: str) -> None:
        self.server = _Server(name)
        self.name = name
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def hits(self) -> list[str]:
        with self.server.lock:
            return list(self.server.hits)

    @property
    def fail_status(self) -> int:
        return self.server.fail_status

    @fail_status.setter
    def fail_status(self, v: int) -> None:
        self.server.fail_status = v

    @property
    def delay_ms(self) -> float:
        return self.server.delay_ms

    @delay_ms.setter
    def delay_ms(self, v: float) -> None:
        self.server.delay_ms = v

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Service:
    """``app`` served by uvicorn (lifespan on) from a thread on a free port; ``stop()`` shuts it down
    the way SIGTERM would (in-flight requests finish, then the lifespan's shutdown runs)."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", access_log=False, loop="asyncio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the router service did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

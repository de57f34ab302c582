"""Shared fixtures for the alerting tests: a real webhook endpoint on 127.0.0.1 that Apprise's
``json://`` plugin posts to."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Hook:
    """A webhook endpoint: records each POST (path, JSON) and answers with scripted status codes."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.codes: dict[str, list[int]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((self.path, json.loads(body)))
                script = outer.codes.get(self.path, [])
                code = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict]:
        return [p for q, p in self.posts if q == path]


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()

"""PrometheusSource against real HTTP servers: prometheus_client's own, and tiny ones we control."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, start_http_server
from pydantic import SecretStr

from tasks.config.settings import PrometheusTarget
from tasks.sources import PrometheusSource, SourceError, collect_all
from tasks.sources.prometheus import instance_of

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def app_metrics() -> Iterator[str]:
    """A real prometheus_client exporter on 127.0.0.1 with one metric of each kind."""
    reg = CollectorRegistry()
    c = Counter("app_requests", "Requests.", ["method", "instance"], registry=reg)
    c.labels(method="get", instance="pod-1").inc(5)
    c.labels(method="post", instance="pod-2").inc(2)
    Gauge("app_queue_depth", "Queue depth.", registry=reg).set(7.5)
    h = Histogram("app_latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=reg)
    for v in (0.05, 0.5, 3.0):
        h.observe(v)
    s = Summary("app_payload_bytes", "Payload.", registry=reg)
    s.observe(100)
    s.observe(300)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    # Set per server through the ``server`` attribute (see ``tiny_server``).
    def do_GET(self) -> None:
        cfg = self.server.cfg  # type: ignore[attr-defined]
        self.server.requests.append(dict(self.headers))  # type: ignore[attr-defined]
        time.sleep(cfg.get("delay", 0.0))
        body = cfg.get("body", "").encode()
        try:
            self.send_response(cfg.get("status", 200))
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeouts under test)
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tiny_server() -> Iterator[Callable[..., tuple[str, list[dict[str, str]]]]]:
    """Start HTTP servers that answer with a fixed body after a delay: ``make(body=, delay=, status=)``."""
    servers: list[ThreadingHTTPServer] = []

    def make(**cfg: object) -> tuple[str, list[dict[str, str]]]:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.daemon_threads = True
        srv.cfg = cfg  # type: ignore[attr-defined]
        srv.requests = []  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}/metrics", srv.requests  # type: ignore[attr-defined]

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_port
    srv.server_close()
    return f"http://127.0.0.1:{port}/metrics"


def one(samples, metric: str, **labels: str):
    got = [s for s in samples if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (metric, labels, got)
    return got[0]


def test_scrape_real_exporter(app_metrics: str, check_samples) -> None:
    target = PrometheusTarget(name="app", url=app_metrics, labels={"env": "test", "method": "forced"})
    samples = check_samples(PrometheusSource(target).collect(NOW))
    inst = instance_of(app_metrics)
    base = {"job": "app", "instance": inst, "env": "test"}

    # Counter keeps _total; target labels win and the scraped ones survive as exported_<name>.
    get = one(samples, "app_requests_total", exported_method="get")
    assert get.value == 5.0
    assert dict(get.labels) == {**base, "method": "forced", "exported_method": "get", "exported_instance": "pod-1"}
    assert one(samples, "app_queue_depth").value == 7.5
    assert one(samples, "app_latency_seconds_bucket", le="0.1").value == 1
    assert one(samples, "app_latency_seconds_bucket", le="1.0").value == 2
    assert one(samples, "app_latency_seconds_bucket", le="+Inf").value == 3
    assert one(samples, "app_latency_seconds_count").value == 3
    assert one(samples, "app_latency_seconds_sum").value == pytest.approx(3.55)
    assert one(samples, "app_payload_bytes_count").value == 2
    assert one(samples, "app_payload_bytes_sum").value == 400

    assert one(samples, "up").value == 1.0
    assert dict(one(samples, "up").labels) == {**base, "method": "forced"}
    scraped = one(samples, "scrape_samples_scraped").value
    assert scraped == len(samples) - 4  # everything but the four synthetic series
    assert 0 < one(samples, "scrape_duration_seconds").value < 5
    assert all(s.ts == NOW for s in samples)


def test_quantiles_timestamps_and_nonfinite(tiny_server, check_samples) -> None:
    body = (
        "# TYPE rpc_seconds summary\n"
        'rpc_seconds{quantile="0.5"} 0.2\n'
        'rpc_seconds{quantile="0.99"} NaN\n'
        "rpc_seconds_sum 4\n"
        "rpc_seconds_count 10\n"
        "# TYPE temp gauge\n"
        'temp{job="inner"} +Inf\n'
        "temp_stamped 21.5 1795773600123\n"
    )
    url, _ = tiny_server(body=body)
    samples = check_samples(PrometheusSource(PrometheusTarget(name="rpc", url=url)).collect(NOW))
    assert one(samples, "rpc_seconds", quantile="0.5").value == 0.2
    assert not [s for s in samples if s.labels.get("quantile") == "0.99"]
    assert not [s for s in samples if s.metric == "temp"]
    stamped = one(samples, "temp_stamped")
    assert stamped.ts == datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC)
    assert one(samples, "scrape_samples_scraped").value == 6
    assert one(samples, "scrape_samples_nonfinite").value == 2


def test_down_target_gives_up_zero_and_error(check_samples) -> None:
    url = closed_port_url()
    src = PrometheusSource(PrometheusTarget(name="gone", url=url, timeout_s=2))
    with pytest.raises(SourceError) as info:
        src.collect(NOW)
    assert url in str(info.value) and "ConnectError" in str(info.value)
    samples = check_samples(info.value.samples)
    assert one(samples, "up", job="gone").value == 0.0
    assert one(samples, "scrape_samples_scraped").value == 0

    res = collect_all([src], timeout_s=5, now=NOW)
    assert [f.source for f in res.failures] == ["prometheus:gone"]
    assert not res.failures[0].timed_out
    assert one(res.samples, "up").value == 0.0  # the failed scrape's own series still reach the lake


def test_http_error_and_bad_body_are_failures(tiny_server) -> None:
    url500, _ = tiny_server(status=500, body="oops")
    with pytest.raises(SourceError, match="HTTP 500") as info:
        PrometheusSource(PrometheusTarget(name="e", url=url500)).collect(NOW)
    assert one(info.value.samples, "up").value == 0.0
    url_bad, _ = tiny_server(body='metric{unterminated="x 1\n')
    with pytest.raises(SourceError, match="invalid exposition format"):
        PrometheusSource(PrometheusTarget(name="b", url=url_bad)).collect(NOW)


def test_bearer_token_is_sent_but_never_reported(tiny_server) -> None:
    url, requests = tiny_server(status=401)
    target = PrometheusTarget(name="auth", url=url, bearer_token=SecretStr("tok-s3cret"))
    with pytest.raises(SourceError) as info:
        PrometheusSource(target).collect(NOW)
    assert requests[0]["Authorization"] == "Bearer tok-s3cret"
    assert "HTTP 401" in str(info.value) and "tok-s3cret" not in str(info.value)


def test_per_target_timeout(tiny_server) -> None:
    url, _ = tiny_server(body="x 1\n", delay=1.5)
    t0 = time.perf_counter()
    with pytest.raises(SourceError, match="timed out after 0.3s") as info:
        PrometheusSource(PrometheusTarget(name="slow", url=url, timeout_s=0.3)).collect(NOW)
    assert time.perf_counter() - t0 < 1.2
    assert one(info.value.samples, "up").value == 0.0


def test_slow_target_times_out_while_the_others_return(app_metrics: str, tiny_server) -> None:
    slow_url, _ = tiny_server(body="x 1\n", delay=2.0)
    fast = PrometheusSource(PrometheusTarget(name="fast", url=app_metrics))
    slow = PrometheusSource(PrometheusTarget(name="slow", url=slow_url, timeout_s=10))
    t0 = time.perf_counter()
    res = collect_all([slow, fast], timeout_s=0.7, now=NOW)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.7 + 0.5, f"collect_all took {elapsed:.2f}s"
    assert [(f.source, f.timed_out) for f in res.failures] == [("prometheus:slow", True)]
    assert one(res.samples, "up", job="fast").value == 1.0
    assert one(res.samples, "app_queue_depth").value == 7.5
    assert not [s for s in res.samples if s.labels.get("job") == "slow"]
    assert one(res.samples, "cortex_perf_source_up", source="prometheus:slow").value == 0.0


def test_injected_client_is_used_and_left_open(app_metrics: str) -> None:
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]}) as client:
        src = PrometheusSource(PrometheusTarget(name="app", url=app_metrics), client=client)
        src.collect(NOW)
        src.collect(NOW)
        assert seen == [app_metrics, app_metrics]
        assert not client.is_closed


def test_instance_of() -> None:
    assert instance_of("http://a.example/metrics") == "a.example:80"
    assert instance_of("https://a.example/metrics") == "a.example:443"
    assert instance_of("http://[::1]:9100/metrics") == "[::1]:9100"

"""collect_all: concurrency, isolation of failures and timeouts, and the runner's own series."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tasks.config.settings import PrometheusTarget, Settings
from tasks.lake.schema import Sample
from tasks.sources import Source, SourceError, build_sources, collect_all

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


class Fixed(Source):
    """A source that returns fixed samples: the smallest honest implementation of the protocol."""

    def __init__(self, name: str, n: int = 2) -> None:
        self.name = name
        self.n = n

    def collect(self, now: datetime | None = None) -> list[Sample]:
        assert now is not None
        return [Sample("demo_value", float(i), now, {"i": str(i)}) for i in range(self.n)]


class Broken(Source):
    def __init__(self, name: str, exc: Exception) -> None:
        self.name = name
        self.exc = exc

    def collect(self, now: datetime | None = None) -> list[Sample]:
        raise self.exc


class Hanging(Source):
    """Blocks until released (the test releases it so no thread outlives the test)."""

    def __init__(self, name: str, release: threading.Event) -> None:
        self.name = name
        self.release = release
        self.finished = threading.Event()

    def collect(self, now: datetime | None = None) -> list[Sample]:
        self.release.wait(10)
        self.finished.set()
        return [Sample("late_value", 1.0, now or NOW)]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def meta(res, metric: str, source: str) -> float:
    (s,) = [s for s in res.samples if s.metric == metric and s.labels == {"source": source}]
    assert s.ts == NOW
    return s.value


def test_good_bad_and_hung_sources_each_get_their_outcome(release, check_samples) -> None:
    hung = Hanging("hung", release)
    sources = [
        Fixed("ok", n=3),
        Broken("crash", ValueError("disk on fire")),
        Broken("partial", SourceError("node b down", [Sample("up", 0.0, NOW, {"node": "b"})])),
        hung,
    ]
    t0 = time.perf_counter()
    res = collect_all(sources, timeout_s=0.5, now=NOW)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"collect_all waited {elapsed:.2f}s for a hung source"
    assert not hung.finished.is_set()
    check_samples(res.samples)

    failures = {f.source: f for f in res.failures}
    assert set(failures) == {"crash", "partial", "hung"}
    assert failures["crash"].error == "ValueError: disk on fire" and not failures["crash"].timed_out
    assert failures["partial"].error == "node b down" and not failures["partial"].timed_out
    assert failures["hung"].timed_out and "0.5" in failures["hung"].error
    assert not res.ok

    assert [s.value for s in res.samples if s.metric == "demo_value"] == [0.0, 1.0, 2.0]
    assert [s.labels for s in res.samples if s.metric == "up"] == [{"node": "b"}]  # partial kept
    assert not [s for s in res.samples if s.metric == "late_value"]
    assert meta(res, "cortex_perf_source_up", "ok") == 1.0
    for name in ("crash", "partial", "hung"):
        assert meta(res, "cortex_perf_source_up", name) == 0.0
    assert meta(res, "cortex_perf_source_samples", "ok") == 3.0
    assert meta(res, "cortex_perf_source_samples", "partial") == 1.0
    assert meta(res, "cortex_perf_source_samples", "hung") == 0.0
    assert meta(res, "cortex_perf_source_duration_seconds", "hung") >= 0.5
    assert 0.0 <= meta(res, "cortex_perf_source_duration_seconds", "ok") < 0.5
    assert set(res.durations) == {"ok", "crash", "partial", "hung"}


def test_sources_run_concurrently() -> None:
    class Sleepy(Fixed):
        def collect(self, now: datetime | None = None) -> list[Sample]:
            time.sleep(0.3)
            return super().collect(now)

    t0 = time.perf_counter()
    res = collect_all([Sleepy(f"s{i}") for i in range(5)], timeout_s=5, now=NOW)
    assert time.perf_counter() - t0 < 1.0  # five 0.3 s sources in parallel, not 1.5 s in series
    assert res.ok and len(res.samples) == 5 * (2 + 3)


def test_empty_and_duplicate_names() -> None:
    assert collect_all([], timeout_s=1).samples == []
    with pytest.raises(ValueError, match="unique"):
        collect_all([Fixed("a"), Fixed("a")], timeout_s=1, now=NOW)


def test_build_sources_follows_config() -> None:
    settings = Settings(
        sources={
            "host": {"enabled": True, "cpu_interval_s": 0},
            "gpu": {"enabled": False},
            "redis": {"enabled": True, "url": "redis://:pw@127.0.0.1:1/0", "name": "cache"},
            "prometheus": [
                PrometheusTarget(name="api", url="http://127.0.0.1:1/metrics"),
                PrometheusTarget(name="api", url="http://127.0.0.1:2/metrics"),
            ],
            "prefect": {"enabled": False},
        }
    )
    names = [s.name for s in build_sources(settings)]
    assert names == ["host", "redis:cache", "prometheus:api", "prometheus:api#2"]
    assert "pw" not in repr(build_sources(settings))

    everything = Settings(sources={"redis": {"enabled": True}, "prefect": {"enabled": True}})
    assert [s.name for s in build_sources(everything)] == ["host", "gpu", "redis", "prefect"]
    nothing = Settings(sources={"host": {"enabled": False}, "gpu": {"enabled": False}, "prefect": {"enabled": False}})
    assert build_sources(nothing) == []


def test_a_hung_source_does_not_keep_the_process_alive(tmp_path) -> None:
    """A flow-run process must exit after collecting even if a source never returns."""
    script = tmp_path / "hang.py"
    script.write_text(
        "import threading\n"
        "from tasks.sources import Source, collect_all\n"
        "class Stuck(Source):\n"
        "    name = 'stuck'\n"
        "    def collect(self, now=None):\n"
        "        threading.Event().wait()  # forever\n"
        "res = collect_all([Stuck()], timeout_s=0.2)\n"
        "print(res.failures[0].timed_out)\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert time.perf_counter() - t0 < 10


def test_failure_messages_never_carry_url_credentials() -> None:
    """A source bug (a plain exception) or a careless SourceError may quote a URL with its password;
    the runner's failures, which the flow logs and stores as ``source.failed``, hold it masked."""
    res = collect_all(
        [
            Broken("bug", RuntimeError("cannot GET http://u:PW-1@h:9/metrics")),
            Broken("careless", SourceError("scrape https://TOKEN-2@h/metrics: HTTP 401")),
        ],
        timeout_s=5,
        now=NOW,
    )
    errors = {f.source: f.error for f in res.failures}
    assert errors == {
        "bug": "RuntimeError: cannot GET http://u:***@h:9/metrics",
        "careless": "scrape https://***@h/metrics: HTTP 401",
    }

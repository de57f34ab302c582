"""Orchestrator health over real parts: a real Redis, a local HTTP server as a Prometheus target
(and a closed port for a dead one), tmp lakes fresh and stale, a notify config whose outbox holds a
dead letter, a state DB locked by another process, and the component_up series in the lake."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.delivery import deliver_due, enqueue
from tasks.alerting.notify.notify_templates import Notification
from tasks.alerting.notify.receivers import parse_receiver
from tasks.config.settings import Settings
from tasks.health import COMPONENT_UP, ComponentHealth, any_down, check_health, flow_health, record_health
from tasks.lake import Lake, Sample
from tasks.state import State

NOW = datetime.now(UTC).replace(microsecond=0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A Prometheus-like target: ``/metrics`` answers 200, anything else 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/metrics"
            body = b"up 1\n" if ok else b"no"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class NoNvml:
    """The NVML module's shape on a machine without a driver: ``nvmlInit`` raises ``NVMLError``."""

    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        raise self.NVMLError("Driver Not Loaded")


class TwoGpus(NoNvml):
    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlShutdown(self) -> None:
        pass


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "lake": {"root": str(tmp_path / "lake")},
        "state": {"path": str(tmp_path / "state.duckdb")},
        "data_dir": str(tmp_path / "data"),
        "sources": {"gpu": {"enabled": False}, "prefect": {"enabled": False}},
        "collect": {"interval_s": 60},
    }
    for k, v in extra.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return Settings(**base)


def _by_name(results: list[ComponentHealth]) -> dict[str, ComponentHealth]:
    names = [r.name for r in results]
    assert len(names) == len(set(names)), names
    return {r.name: r for r in results}


def _fill(lake: Lake, newest: datetime, n: int = 5) -> None:
    lake.write_samples([Sample("cpu_ratio", 0.5, newest - timedelta(seconds=60 * i), {"host": "a"}) for i in range(n)])


def test_fresh_lake_redis_and_live_target_are_ok(
    tmp_path: Path, redis_url: str, metrics_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    s = _settings(
        tmp_path,
        sources={
            "redis": {"enabled": True, "url": redis_url},
            "prometheus": [
                {"name": "api", "url": f"{metrics_server}/metrics"},
                {"name": "gone", "url": f"http://127.0.0.1:{_closed_port()}/metrics"},
                {"name": "wrongpath", "url": f"{metrics_server}/nope"},
            ],
        },
    )
    lake = Lake(s.lake.root)
    _fill(lake, NOW - timedelta(seconds=30))
    res = _by_name(check_health(s, lake, now=NOW, timeout_s=10))
    assert res["source:host"].status == "OK"
    assert res["source:redis"].status == "OK" and res["source:redis"].numbers["latency_ms"] >= 0
    assert res["source:prometheus:api"].status == "OK"
    assert res["source:prometheus:api"].numbers["http_status"] == 200
    gone = res["source:prometheus:gone"]
    assert gone.status == "down" and "ConnectError" in gone.why
    assert res["source:prometheus:wrongpath"].status == "down" and "HTTP 404" in res["source:prometheus:wrongpath"].why
    lk = res["lake"]
    assert lk.status == "OK" and 29 <= lk.numbers["newest_age_s"] <= 31 and lk.numbers["bytes"] > 0
    assert res["flows"].status == "unknown" and "PREFECT_API_URL" in res["flows"].why
    assert res["state"].status == "OK"  # not created yet is fine
    assert not Path(s.state.path).exists()  # and status did not create it
    assert any_down(list(res.values()))  # the dead target


def test_redis_down_and_secret_redacted(tmp_path: Path) -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{_closed_port()}/0"
    s = _settings(tmp_path, sources={"redis": {"enabled": True, "url": url}, "host": {"enabled": False}})
    res = _by_name(check_health(s, Lake(s.lake.root), now=NOW))
    assert res["source:redis"].status == "down"
    assert "hunter2secret" not in res["source:redis"].why and "PING" in res["source:redis"].why


@pytest.mark.parametrize(
    ("age_s", "status", "word"),
    [(100, "OK", "newest sample"), (400, "degraded", "late"), (7200, "down", "stale")],
)
def test_lake_freshness_against_collect_interval(tmp_path: Path, age_s: int, status: str, word: str) -> None:
    s = _settings(tmp_path)
    lake = Lake(s.lake.root)
    _fill(lake, NOW - timedelta(seconds=age_s))
    lk = _by_name(check_health(s, lake, now=NOW))["lake"]
    assert (lk.status, round(lk.numbers["newest_age_s"])) == (status, age_s)
    assert word in lk.why


def test_own_health_samples_do_not_make_a_stale_lake_fresh(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    lake = Lake(s.lake.root)
    _fill(lake, NOW - timedelta(hours=3))
    first = check_health(s, lake, now=NOW)
    assert _by_name(first)["lake"].status == "down"
    record_health(lake, first, NOW)
    assert _by_name(check_health(s, lake, now=NOW))["lake"].status == "down"


def test_lake_with_only_health_samples_is_degraded(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    lake = Lake(s.lake.root)
    record_health(lake, [ComponentHealth("lake", "lake", "OK", "x")], NOW)
    lk = _by_name(check_health(s, lake, now=NOW))["lake"]
    assert lk.status == "degraded" and "no collected samples" in lk.why


def test_empty_lake_is_degraded(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    lk = _by_name(check_health(s, Lake(s.lake.root), now=NOW))["lake"]
    assert lk.status == "degraded" and "no samples" in lk.why


def test_uncompacted_past_partition_is_degraded(tmp_path: Path) -> None:
    s = _settings(tmp_path, lake={"compact_min_files": 3})
    lake = Lake(s.lake.root)
    yesterday = NOW - timedelta(days=1)
    for i in range(3):  # three batches → three files in yesterday's partition
        lake.write_samples([Sample("cpu_ratio", float(i), yesterday + timedelta(seconds=i), {"host": "a"})])
    _fill(lake, NOW - timedelta(seconds=10), n=1)
    lk = _by_name(check_health(s, lake, now=NOW))["lake"]
    assert lk.status == "degraded" and "maintain" in lk.why and lk.numbers["max_files_per_partition"] == 3
    lake.compact(now=NOW)
    assert _by_name(check_health(s, lake, now=NOW))["lake"].status == "OK"


def test_gpu_presence_through_nvml(tmp_path: Path) -> None:
    s = _settings(tmp_path, sources={"gpu": {"enabled": True}})
    lake = Lake(s.lake.root)
    none = _by_name(check_health(s, lake, now=NOW, nvml=NoNvml()))["source:gpu"]
    assert none.status == "degraded" and "Driver Not Loaded" in none.why
    two = _by_name(check_health(s, lake, now=NOW, nvml=TwoGpus()))["source:gpu"]
    assert two.status == "OK" and two.numbers["gpus"] == 2


NOTIFY = """\
route:
  receiver: hook
receivers:
  - name: hook
    apprise: ["{url}"]
    max_retries: 0
"""


def test_alert_channels_config_and_dead_letters(tmp_path: Path, hook: Any) -> None:
    cfg = tmp_path / "notify.yml"
    cfg.write_text(NOTIFY.format(url=hook.url("/down")))
    s = _settings(tmp_path, alerting={"notify_config": str(cfg)})
    lake = Lake(s.lake.root)
    ok = _by_name(check_health(s, lake, now=NOW))["alerting"]
    assert ok.status == "OK" and ok.numbers["receivers"] == 1

    hook.codes["/down"] = [500]
    state = State(s.state.path)
    rec = parse_receiver({"name": "hook", "apprise": hook.url("/down"), "max_retries": 0})
    alert = Alert({"alertname": "DiskFull"}, {"summary": "disk 99%"}, "firing", NOW)
    enqueue(Notification("hook", "g1", {"alertname": "DiskFull"}, (alert,), "initial"), rec, NOW, state=state)
    [r] = deliver_due(NOW, {"hook": rec}, state=state)
    assert r.status == "dead"
    dead = _by_name(check_health(s, lake, now=NOW))["alerting"]
    assert dead.status == "degraded" and dead.numbers["dead"] == 1 and "hook" in dead.why and "500" in dead.why

    cfg.write_text("route: [\n")
    broken = _by_name(check_health(s, lake, now=NOW))["alerting"]
    assert broken.status == "down" and "does not load" in broken.why


def test_state_db_locked_by_another_process_is_degraded(tmp_path: Path) -> None:
    s = _settings(tmp_path, state={"lock_timeout_s": 0.5})
    State(s.state.path).set("k", 1)
    assert _by_name(check_health(s, Lake(s.lake.root), now=NOW))["state"].status == "OK"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({s.state.path!r}); print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        st = _by_name(check_health(s, Lake(s.lake.root), now=NOW))["state"]
        assert st.status == "degraded" and "locked" in st.why
    finally:
        holder.terminate()
        holder.wait()


def test_actuators_current_count(tmp_path: Path) -> None:
    metric = {"selector": "queue_depth"}
    dead = _closed_port()
    s = _settings(
        tmp_path,
        scaling={
            "targets": [
                {"name": "web", "capacity_per_unit": 10, "metric": metric, "actuator": {"kind": "log", "initial": 3}},
                {
                    "name": "api",
                    "capacity_per_unit": 10,
                    "metric": metric,
                    "actuator": {
                        "kind": "webhook",
                        "url": f"http://127.0.0.1:{dead}/scale",
                        "current_url": f"http://127.0.0.1:{dead}/count",
                        "secret": "s3cr3t-signing-key",
                    },
                },
            ]
        },
    )
    res = _by_name(check_health(s, Lake(s.lake.root), now=NOW))
    assert res["actuator:web"].status == "OK" and res["actuator:web"].numbers["current"] == 3
    assert res["actuator:api"].status == "down" and "reading the count failed" in res["actuator:api"].why


def test_hung_check_times_out_within_deadline(tmp_path: Path) -> None:
    """A target that accepts the connection and never answers costs its line, not the command."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/metrics"
        s = _settings(tmp_path, sources={"prometheus": [{"name": "hang", "url": url, "timeout_s": 30}]})
        t0 = time.perf_counter()
        res = _by_name(check_health(s, Lake(s.lake.root), now=NOW, timeout_s=0.5))
        assert time.perf_counter() - t0 < 1.5
        assert res["source:prometheus:hang"].status == "down" and "timed out" in res["source:prometheus:hang"].why
    finally:
        srv.close()


def test_unreachable_prefect_api_is_unknown_not_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{_closed_port()}/api")
    s = _settings(tmp_path)
    res = _by_name(check_health(s, Lake(s.lake.root), now=NOW, timeout_s=20))
    assert res["flows"].status == "unknown" and "not reachable" in res["flows"].why
    assert res["source:prefect"].status == "down"


def test_flow_health_from_last_run_state() -> None:
    ago = NOW - timedelta(minutes=5)
    assert flow_health("collect", "COMPLETED", ago, NOW).status == "OK"
    failed = flow_health("collect", "FAILED", ago, NOW)
    assert failed.status == "down" and failed.name == "flow:collect" and "failed 5 min ago" in failed.why
    assert flow_health("collect", "CANCELLED", ago, NOW).status == "degraded"
    assert flow_health("collect", None, None, NOW).status == "degraded"


def test_flow_health_names_the_next_scheduled_run() -> None:
    ago = NOW - timedelta(minutes=5)
    ok = flow_health("collect", "COMPLETED", ago, NOW, next_at=NOW + timedelta(minutes=60))
    assert ok.status == "OK" and ok.why == "last run completed 5 min ago; next run in 60 min"
    assert ok.numbers == {"last_run_age_s": 300.0, "next_run_in_s": 3600.0}
    late = flow_health("collect", "COMPLETED", ago, NOW, next_at=NOW - timedelta(minutes=3))
    assert late.why.endswith("next run late by 3 min")
    never = flow_health("collect", None, None, NOW, next_at=NOW + timedelta(minutes=1))
    assert never.status == "degraded" and never.why == "no finished run yet; next run in 1 min"


def test_record_health_writes_component_up(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    results = [
        ComponentHealth("lake", "lake", "OK", "fine"),
        ComponentHealth("source:redis", "source", "degraded", "slow"),
        ComponentHealth("source:prometheus:api", "source", "down", "gone"),
        ComponentHealth("flows", "flow", "unknown", "no API"),
    ]
    wr = record_health(lake, results, NOW)
    assert wr.accepted == 3
    df = lake.raw(COMPONENT_UP, NOW - timedelta(minutes=1), NOW + timedelta(minutes=1))
    labels = [json.loads(r["labels"]) for r in df.to_dicts()]
    got = {(lb["component"], lb["kind"]): r["value"] for lb, r in zip(labels, df.to_dicts(), strict=True)}
    assert got == {("lake", "lake"): 1.0, ("source:redis", "source"): 0.5, ("source:prometheus:api", "source"): 0.0}


def test_bad_arguments_name_the_field(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    with pytest.raises(ValueError, match="now"):
        check_health(s, Lake(s.lake.root), now=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timeout_s"):
        check_health(s, Lake(s.lake.root), now=NOW, timeout_s=0)

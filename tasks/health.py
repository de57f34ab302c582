"""Orchestrator health: is every part of cortex-perf working, and if not, why.

``check_health(settings, lake, now=...)`` asks each configured component once (sources, the lake,
the state DB, the flows' last runs, the alert channels, the actuators) and returns one
:class:`ComponentHealth` per component: ``OK``, ``degraded``, ``down`` or ``unknown`` with a
sentence saying why and the numbers behind it. ``record_health`` writes the same as the
``cortex_perf_component_up{component, kind}`` series (1 OK, 0.5 degraded, 0 down) so alert rules
and reports can use it.

Why one daemon thread per check under one deadline (as ``tasks.sources.runner`` does): a check
blocks on sockets, drivers and files we do not control. A hung Redis or Prometheus target must
cost its own line ("timed out"), never the whole status command, and must not keep the process
alive at exit.

Why ``unknown`` exists: when the Prefect API cannot be reached we do not know how the flows are
doing; calling them ``down`` would make ``cortex-perf status`` fail on every machine that simply
runs flows without a server.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psutil

from tasks import prefect_api
from tasks.alerting.notify.delivery import list_outbox
from tasks.alerting.notify.notify_config import load_notify_config
from tasks.lake.schema import SAMPLES, Sample
from tasks.redact import redact_text, redact_url
from tasks.state import State, StateLockTimeout

if TYPE_CHECKING:
    from tasks.config.settings import Settings
    from tasks.lake.lake import Lake
    from tasks.lake.write import WriteResult

__all__ = [
    "COMPONENT_UP",
    "STATUS_VALUE",
    "ComponentHealth",
    "Status",
    "any_down",
    "check_health",
    "flow_health",
    "record_health",
]

Status = Literal["OK", "degraded", "down", "unknown"]

#: The lake series ``record_health`` writes, one per component.
COMPONENT_UP = "cortex_perf_component_up"
#: Sample value per status; ``unknown`` is not recorded (no value is better than a made-up one).
STATUS_VALUE: dict[str, float] = {"OK": 1.0, "degraded": 0.5, "down": 0.0}

#: Newest sample younger than this many collection intervals: fresh; older than ``STALE_INTERVALS``: down.
FRESH_INTERVALS = 3
STALE_INTERVALS = 60
#: Today's partition grows one file per tick until compaction; this many × ``compact_min_files`` is too many.
TODAY_FILES_SLACK = 3
#: Network probes never wait longer than this, whatever the component's own timeout says.
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's health: ``name`` is unique (``source:redis``), ``kind`` groups them."""

    name: str
    kind: str
    status: Status
    why: str
    numbers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def any_down(results: Sequence[ComponentHealth]) -> bool:
    """Whether anything is down (the CLI's exit code 1)."""
    return any(r.status == "down" for r in results)


# ---- the checks ----------------------------------------------------------------------------------
Check = Callable[[], "ComponentHealth | list[ComponentHealth]"]


@dataclass(slots=True)
class _Planned:
    name: str
    kind: str
    run: Check
    on_timeout: Status = "down"


def _err(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _host() -> ComponentHealth:
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    return ComponentHealth(
        "source:host",
        "source",
        "OK",
        "psutil reads CPU, memory and disk",
        {"memory_used_ratio": mem.percent / 100, "disk_used_ratio": disk.percent / 100},
    )


def _gpu(module: Any | None) -> ComponentHealth:
    nvml: Any = module if module is not None else importlib.import_module("pynvml")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return ComponentHealth(
            "source:gpu",
            "source",
            "degraded",
            f"enabled but no NVIDIA driver/NVML ({_err(exc)}); set sources.gpu.enabled=false on machines without a GPU",
            {"gpus": 0.0},
        )
    try:
        n = int(nvml.nvmlDeviceGetCount())
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    if n == 0:
        return ComponentHealth("source:gpu", "source", "degraded", "NVML loads but sees no GPU", {"gpus": 0.0})
    return ComponentHealth("source:gpu", "source", "OK", f"NVML sees {n} GPU(s)", {"gpus": float(n)})


def _redis(settings: Settings) -> ComponentHealth:
    # lazy: redis-py costs +0.40 s on top of this module, paid only when a Redis source is enabled
    # (measured 2026-12-07); the same holds for httpx (+0.25 s, HTTP probes) and actuators (+0.57 s, scaling targets).
    import redis

    from tasks.sources.redis_info import _secrets_of, safe_redis_url

    cfg = settings.sources.redis
    url = cfg.url.get_secret_value()
    timeout = min(cfg.timeout_s, PROBE_TIMEOUT_S)
    name = "source:redis" if cfg.name == "default" else f"source:redis:{cfg.name}"
    t0 = time.perf_counter()
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except Exception as exc:
        why = redact_text(f"PING {safe_redis_url(url)} failed: {_err(exc)}", _secrets_of(url))
        return ComponentHealth(name, "source", "down", why)
    finally:
        client.close()
    ms = (time.perf_counter() - t0) * 1000
    return ComponentHealth(name, "source", "OK", f"PING answered in {ms:.0f} ms", {"latency_ms": ms})


def _http_probe(
    name: str, kind: str, url: str, timeout_s: float, headers: dict[str, str] | None = None
) -> ComponentHealth:
    import httpx  # lazy: +0.25 s, only when an HTTP probe runs (see _redis)

    t0 = time.perf_counter()
    try:
        r = httpx.get(url, timeout=min(timeout_s, PROBE_TIMEOUT_S), headers=headers or {})
    except httpx.HTTPError as exc:
        return ComponentHealth(name, kind, "down", f"GET {url} failed: {_err(exc)}")
    ms = (time.perf_counter() - t0) * 1000
    nums = {"latency_ms": ms, "http_status": float(r.status_code)}
    if r.is_success:
        return ComponentHealth(name, kind, "OK", f"GET {url}: HTTP {r.status_code} in {ms:.0f} ms", nums)
    return ComponentHealth(name, kind, "down", f"GET {url}: HTTP {r.status_code}", nums)


def _prefect_api_url(settings: Settings) -> str | None:
    """The Prefect API to ask, from config or ``PREFECT_API_URL``; never Prefect's own default.

    Why not Prefect's settings: importing Prefect costs seconds, and with no URL its client would
    start a temporary server that knows no runs."""
    return settings.sources.prefect.api_url or os.environ.get("PREFECT_API_URL") or None


def _lake(settings: Settings, lake: Lake, now: datetime) -> ComponentHealth:
    files = lake.storage.files(SAMPLES)
    size = float(sum(f.size for f in files))
    nums: dict[str, float] = {"files": float(len(files)), "bytes": size}
    if not files:
        return ComponentHealth("lake", "lake", "degraded", f"no samples in {lake.root} yet (run a collection)", nums)
    per_day: dict[Any, int] = {}
    for f in files:
        per_day[f.day] = per_day.get(f.day, 0) + 1
    newest_day = max(per_day)
    recent = [f for f in files if f.day >= newest_day - timedelta(days=1)]
    # Our own health samples do not count: a status run must not make a dead collection look fresh.
    row = lake.con.sql(
        "SELECT max(ts) FROM read_parquet($files) WHERE metric <> $own",
        params={"files": lake._paths(recent), "own": COMPONENT_UP},
    ).fetchall()[0]
    if row[0] is None:
        return ComponentHealth("lake", "lake", "degraded", f"no collected samples in {lake.root} yet", nums)
    newest: datetime = row[0].astimezone(UTC)
    age = (now - newest).total_seconds()
    interval = settings.collect.interval_s
    min_files = settings.lake.compact_min_files
    today = now.astimezone(UTC).date()
    worst_past = max((n for d, n in per_day.items() if d < today), default=0)
    today_files = per_day.get(today, 0)
    nums |= {
        "newest_age_s": age,
        "partitions": float(len(per_day)),
        "max_files_per_partition": float(max(per_day.values())),
        "today_files": float(today_files),
    }
    fresh = f"newest sample {age:.0f}s old (collect.interval_s={interval:g})"
    if age > STALE_INTERVALS * interval:
        return ComponentHealth("lake", "lake", "down", f"stale: {fresh}; is the collect flow running?", nums)
    if age > FRESH_INTERVALS * interval:
        return ComponentHealth("lake", "lake", "degraded", f"late: {fresh}", nums)
    if worst_past >= min_files or today_files >= TODAY_FILES_SLACK * min_files:
        return ComponentHealth(
            "lake",
            "lake",
            "degraded",
            f"{fresh}, but a partition has {max(worst_past, today_files)} files "
            f"(compaction at {min_files}): is the maintain flow running?",
            nums,
        )
    return ComponentHealth("lake", "lake", "OK", f"{fresh}; {size / 1e6:.2f} MB in {len(files)} files", nums)


def _state_db(settings: Settings) -> ComponentHealth:
    path = settings.state.path
    if not Path(path).exists():
        return ComponentHealth("state", "state", "OK", f"{path} not created yet (made on first use)")
    t0 = time.perf_counter()
    try:
        with State(path, timeout_s=min(settings.state.lock_timeout_s, PROBE_TIMEOUT_S)).transaction() as con:
            con.execute("SELECT 1").fetchall()
    except StateLockTimeout as exc:
        return ComponentHealth("state", "state", "degraded", str(exc))
    except Exception as exc:
        return ComponentHealth("state", "state", "down", f"cannot open {path}: {_err(exc)}")
    ms = (time.perf_counter() - t0) * 1000
    return ComponentHealth("state", "state", "OK", f"{path} opened in {ms:.0f} ms", {"open_ms": ms})


def _alerting(settings: Settings) -> ComponentHealth:
    path = settings.alerting.notify_config
    if not path:
        return ComponentHealth("alerting", "alerting", "OK", "alerting.notify_config not set: no channels to check")
    try:
        cfg = load_notify_config(path)
    except Exception as exc:
        return ComponentHealth("alerting", "alerting", "down", f"notify config {path} does not load: {_err(exc)}")
    n_rec = len(cfg.parsed_receivers)
    nums = {"receivers": float(n_rec), "dead": 0.0, "retrying": 0.0}
    if Path(settings.state.path).exists():
        state = State(settings.state.path, timeout_s=min(settings.state.lock_timeout_s, PROBE_TIMEOUT_S))
        dead = list_outbox(state, status=["dead"], limit=10_000)
        nums["dead"] = float(len(dead))
        nums["retrying"] = float(len(list_outbox(state, status=["failed"], limit=10_000)))
        if dead:
            receivers = sorted({d.receiver for d in dead})
            return ComponentHealth(
                "alerting",
                "alerting",
                "degraded",
                f"{len(dead)} dead letter(s) in the outbox (receivers: {', '.join(receivers)}); "
                f"latest error: {dead[0].last_error or '?'}",
                nums,
            )
    return ComponentHealth("alerting", "alerting", "OK", f"{n_rec} receiver(s) parse; no dead letters", nums)


def _actuator(settings: Settings, index: int) -> ComponentHealth:
    from tasks.actuators import ActionLedger, build_actuator  # lazy: +0.57 s, only with targets (see _redis)

    t = settings.scaling.targets[index]
    name = f"actuator:{t.name}"
    try:
        act = build_actuator(
            t.actuator, ledger=ActionLedger.from_settings(settings), origin=f"scaling.targets[{index}].actuator"
        )
        with act:
            count = act.current(t.name)
    except Exception as exc:
        return ComponentHealth(name, "actuator", "down", f"{t.actuator_name}: reading the count failed: {_err(exc)}")
    return ComponentHealth(
        name, "actuator", "OK", f"{t.actuator_name} reads {count} unit(s) for {t.name}", {"current": float(count)}
    )


#: Prefect state types, lower case, grouped by what they say about a flow's health.
_FLOW_OK = {"completed", "running", "pending", "scheduled"}
_FLOW_DOWN = {"failed", "crashed"}


def _minutes(seconds: float) -> str:
    return f"{abs(seconds) / 60:.0f} min"


def _sentence(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def flow_health(
    flow: str,
    state: str | None,
    when: datetime | None,
    now: datetime,
    next_at: datetime | None = None,
) -> ComponentHealth:
    """A flow's health from its last *finished* run's state type (pure, so it is tested without a
    server), with its next scheduled run (``next_at``) added to the sentence.

    Completed → OK; failed/crashed → down (the flow is broken now); cancelled, paused or anything
    else → degraded; no finished run yet → degraded. A next run that is already due is called
    late: a schedule whose runs nobody picks up (no worker, serve stopped) shows here."""
    name = f"flow:{flow}"
    nums: dict[str, float] = {}
    upcoming = ""
    if next_at is not None:
        in_s = (next_at - now).total_seconds()
        nums["next_run_in_s"] = in_s
        upcoming = f"next run in {_minutes(in_s)}" if in_s >= 0 else f"next run late by {_minutes(in_s)}"
    if state is None:
        return ComponentHealth(name, "flow", "degraded", _sentence("no finished run yet", upcoming), nums)
    st = state.lower()
    ago = ""
    if when is not None:
        nums["last_run_age_s"] = max(0.0, (now - when).total_seconds())
        ago = f" {_minutes(nums['last_run_age_s'])} ago"
    status: Status = "OK" if st in _FLOW_OK else "down" if st in _FLOW_DOWN else "degraded"
    return ComponentHealth(name, "flow", status, _sentence(f"last run {st}{ago}", upcoming), nums)


def _flows(api_url: str, now: datetime) -> list[ComponentHealth]:
    """Each flow's health from its last finished run (``prefect_api.flow_statuses``). Why the last
    *finished* run, not the newest of any state: deployments create their scheduled runs ahead of
    time, so the newest run by expected start is one that has not happened yet."""
    try:
        with prefect_api.client(api_url) as c:
            rows = prefect_api.flow_statuses(c)
    except Exception as exc:
        return [ComponentHealth("flows", "flow", "unknown", f"Prefect API {api_url} not reachable: {_err(exc)}")]
    if not rows:
        return [ComponentHealth("flows", "flow", "unknown", f"Prefect API {api_url} knows no flows yet")]
    return [flow_health(name, st, when, now, nxt) for name, st, when, nxt in sorted(rows, key=lambda r: r[0])]


def _plan(settings: Settings, lake: Lake, now: datetime, nvml: Any | None) -> list[_Planned]:
    src = settings.sources
    plan = [_Planned("source:host", "source", _host)] if src.host.enabled else []
    if src.gpu.enabled:
        plan.append(_Planned("source:gpu", "source", lambda: _gpu(nvml)))
    if src.redis.enabled:
        plan.append(_Planned("source:redis", "source", lambda: _redis(settings)))
    for target in src.prometheus:
        headers = {"Authorization": f"Bearer {target.bearer_token.get_secret_value()}"} if target.bearer_token else None
        pname = f"source:prometheus:{target.name}"
        probe = functools.partial(_http_probe, pname, "source", target.url, target.timeout_s, headers)
        plan.append(_Planned(pname, "source", probe))
    api = _prefect_api_url(settings)
    if api:
        health_url = api.rstrip("/") + "/health"
        plan.append(
            _Planned(
                "source:prefect",
                "source",
                lambda: _http_probe("source:prefect", "source", health_url, 5.0, prefect_api.auth_headers()),
            )
        )
        plan.append(_Planned("flows", "flow", lambda: _flows(api, now), on_timeout="unknown"))
    else:
        plan.append(
            _Planned(
                "flows",
                "flow",
                lambda: ComponentHealth("flows", "flow", "unknown", "PREFECT_API_URL not set: flow runs not checked"),
            )
        )
    plan.append(_Planned("lake", "lake", lambda: _lake(settings, lake, now)))
    plan.append(_Planned("state", "state", lambda: _state_db(settings)))
    plan.append(_Planned("alerting", "alerting", lambda: _alerting(settings)))
    for i, t in enumerate(settings.scaling.targets):
        plan.append(_Planned(f"actuator:{t.name}", "actuator", functools.partial(_actuator, settings, i)))
    return plan


def _start(p: _Planned) -> Future[list[ComponentHealth]]:
    fut: Future[list[ComponentHealth]] = Future()

    def target() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            out = p.run()
            fut.set_result(out if isinstance(out, list) else [out])
        except Exception as exc:  # a check's own bug reports the component down, never the command
            fut.set_result([ComponentHealth(p.name, p.kind, "down", f"check failed: {_err(exc)}")])

    threading.Thread(target=target, name=f"cortex-health-{p.name}", daemon=True).start()
    return fut


def check_health(
    settings: Settings,
    lake: Lake,
    *,
    now: datetime,
    timeout_s: float = 10.0,
    nvml: Any | None = None,
) -> list[ComponentHealth]:
    """Every configured component's health, checked concurrently, back within about ``timeout_s``.

    ``now`` (aware) is what freshness and run ages are measured against. ``nvml`` replaces the
    ``pynvml`` module (tests). A check still running at the deadline is reported ``down`` ("timed
    out"), the flows ``unknown``; its thread is abandoned, not joined."""
    if now.tzinfo is None:
        raise ValueError("now: must be timezone-aware (UTC)")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s: must be > 0, got {timeout_s}")
    plan = _plan(settings, lake, now, nvml)
    futures = [(p, _start(p)) for p in plan]
    wait([f for _, f in futures], timeout=timeout_s)
    out: list[ComponentHealth] = []
    for p, fut in futures:
        if fut.done():
            out.extend(fut.result())
        else:
            fut.cancel()
            out.append(ComponentHealth(p.name, p.kind, p.on_timeout, f"check timed out after {timeout_s:g}s"))
    # One exit for every check's reason: probes quote the URLs they asked (scrape targets, APIs).
    return [replace(r, why=redact_url(r.why)) for r in out]


def record_health(lake: Lake, results: Sequence[ComponentHealth], now: datetime) -> WriteResult:
    """Append one ``cortex_perf_component_up{component, kind}`` sample per known component."""
    samples = [
        Sample(COMPONENT_UP, STATUS_VALUE[r.status], now, {"component": r.name, "kind": r.kind})
        for r in results
        if r.status in STATUS_VALUE
    ]
    return lake.write_samples(samples)

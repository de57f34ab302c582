"""One scaling tick (``tasks.scaling.service.run_scaling``) over a real tmp lake and state DB, with
real actuators: ``log``, ``process_pool`` (real worker processes) and ``webhook`` (a local HTTP
server that checks the signature and keeps the count).

What could break: a dry run that changes something, a re-run of a tick that applies twice or
records twice, one failing actuator stopping the others, an emergency without its alert, the
metric query adding up the wrong buckets, forecasts not reaching the policy, config errors that
do not name the field."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from localhttp import JsonHandler, LocalServer

from tasks.actuators import ActionLedger, ScaleAction, build_actuator
from tasks.actuators.process_pool import ProcessPoolActuator
from tasks.config import ConfigError, Settings, load_settings
from tasks.config_checks import check_settings
from tasks.lake import Lake, Sample
from tasks.scaling.records import ScalingRecords
from tasks.scaling.service import load_forecast, load_metric, run_scaling

SECRET = "scale-flow-test-hmac-secret"
NOW = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(minutes=2)
WORKER = (
    "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nwhile True: time.sleep(0.05)\n"
)


class Receiver:
    """A scaling endpoint: verifies the HMAC signature, keeps a count per target, can fail on demand."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.posts: list[dict[str, Any]] = []
        self.fail_posts = 0
        outer = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(good, self.headers.get("X-Hub-Signature-256", "")):
                    return self._send(401, {"error": "bad signature"})
                if outer.fail_posts:
                    outer.fail_posts -= 1
                    return self._send(503, {"error": "busy"})
                d = json.loads(body)["decision"]
                outer.posts.append(d)
                outer.count[d["target"]] = d["to"]
                self._send(200, {"current": d["to"]})

            def do_GET(self) -> None:
                target = self.path.split("target=", 1)[1]
                self._send(200, {"current": outer.count.get(target, 1)})

        self.http = LocalServer(Handler)
        self.server, self.url = self.http.server, self.http.url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.http.close()


def write_load(lake: Lake, job: str, values: list[float], *, end: datetime = NOW) -> None:
    """One sample per minute of ``app_load_rps{job=…}``, the last one in the minute before ``end``."""
    last = end.replace(second=0) - timedelta(minutes=1)
    n = len(values)
    lake.write_samples(
        [Sample("app_load_rps", v, last - timedelta(minutes=n - 1 - i) + timedelta(seconds=5), {"job": job})
         for i, v in enumerate(values)]
    )  # fmt: skip


def target(name: str, job: str, actuator: dict[str, Any], **policy: Any) -> dict[str, Any]:
    """A reactive target (deterministic HPA maths) at 50 units of load per unit."""
    return {
        "name": name,
        "capacity_per_unit": 50,
        "policy": "reactive",
        "emergency_utilisation": None,
        "emergency_miss_ratio": None,
        "metric": {"selector": f'app_load_rps{{job="{job}"}}', "agg": "avg", "step": "1m", "lookback": "1h"},
        "actuator": actuator,
        **policy,
    }


def settings_for(tmp_path: Path, targets: list[dict[str, Any]], mode: str = "dry-run") -> Settings:
    return load_settings(
        None,
        {
            "lake.root": str(tmp_path / "lake"),
            "state.path": str(tmp_path / "state.duckdb"),
            "scaling.mode": mode,
            "scaling.targets": targets,
        },
    )


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lk = Lake(str(tmp_path / "lake"))
    write_load(lk, "web", [100.0] * 30 + [300.0] * 5)  # 300 on 2 units of 50: 3× capacity, an emergency
    write_load(lk, "pool", [60.0] * 35)  # 60 on 0 workers → ceil(60 / 35) = 2
    write_load(lk, "hook", [100.0] * 35)  # 100 on 1 unit → ceil(1 × 100 / 35) = 3
    return lk


@pytest.fixture
def three(tmp_path: Path, receiver: Receiver) -> Iterator[list[dict[str, Any]]]:
    pool_cfg = {
        "kind": "process_pool",
        "argv": [sys.executable, "-c", WORKER],
        "pid_dir": str(tmp_path / "pids"),
        "startup_grace_s": 0.2,
        "stop_timeout_s": 5,
    }
    hook_cfg = {"kind": "webhook", "url": f"{receiver.url}/scale", "current_url": f"{receiver.url}/current",
                "secret": SECRET}  # fmt: skip
    yield [
        target("web", "web", {"kind": "log", "initial": 2}, emergency_utilisation=1.5),
        target("pool", "pool", pool_cfg),
        target("hook", "hook", hook_cfg),
    ]
    act = build_actuator(pool_cfg, ledger=ActionLedger(str(tmp_path / "cleanup.duckdb")))
    assert isinstance(act, ProcessPoolActuator)
    if act.current("pool"):
        act.apply(ScaleAction(id="cleanup", target="pool", to=0), dry_run=False)


def events(lake: Lake, name: str) -> list[dict[str, Any]]:
    df = lake.events(name=name)
    return [{"resource": r["resource"], **json.loads(r["payload"])} for r in df.iter_rows(named=True)]


def by_target(run: Any) -> dict[str, Any]:
    return {o.target: o for o in run.outcomes}


def test_dry_run_records_every_decision_and_changes_nothing(
    tmp_path: Path, lake: Lake, three: list[dict[str, Any]], receiver: Receiver
) -> None:
    settings = settings_for(tmp_path, three)
    run = run_scaling(settings, lake, NOW)
    assert run.mode == "dry-run"
    out = by_target(run)
    assert {k: (o.decision["from"], o.decision["to"]) for k, o in out.items()} == {
        "web": (2, 9),  # emergency: the HPA's ceil(2 × 300 / 70) = 9 at once, past the +4 step limit
        "pool": (0, 2),
        "hook": (1, 3),
    }
    assert {o.status for o in run.outcomes} == {"dry-run"}
    # nothing changed anywhere: no workers, no POST, no ledger row, no action event
    pool = build_actuator(three[1]["actuator"], ledger=ActionLedger(str(tmp_path / "other.duckdb")))
    assert pool.current("pool") == 0
    assert receiver.posts == []
    assert ActionLedger(str(tmp_path / "state.duckdb")).history() == []
    assert events(lake, "action.applied") == [] and events(lake, "action.failed") == []
    # ... but every decision is on record, in the lake and the state DB
    triggered = {e["target"]: e for e in events(lake, "scaling.triggered")}
    assert set(triggered) == {"web", "pool", "hook"}
    assert triggered["hook"]["mode"] == "dry-run" and triggered["hook"]["resource"] == "cortex.scaling.hook"
    assert triggered["pool"]["load"] == 60.0 and "HPA" in triggered["pool"]["reason"]
    assert {r.target for r in ScalingRecords(str(tmp_path / "state.duckdb")).decisions()} == {"web", "pool", "hook"}


def test_apply_twice_in_the_same_tick_applies_once(
    tmp_path: Path, lake: Lake, three: list[dict[str, Any]], receiver: Receiver
) -> None:
    settings = settings_for(tmp_path, three, mode="apply")
    first = by_target(run_scaling(settings, lake, NOW))
    assert {k: o.status for k, o in first.items()} == {"web": "applied", "pool": "applied", "hook": "applied"}
    pool = build_actuator(three[1]["actuator"], ledger=ActionLedger(str(tmp_path / "other.duckdb")))
    assert pool.current("pool") == 2  # two real worker processes
    assert [p["to"] for p in receiver.posts] == [3]

    again = by_target(run_scaling(settings, lake, NOW + timedelta(microseconds=300)))  # same tick (whole seconds)
    assert {k: (o.status, o.replayed) for k, o in again.items()} == {
        "web": ("skipped", True), "pool": ("skipped", True), "hook": ("skipped", True),
    }  # fmt: skip
    assert again["hook"].decision["id"] == first["hook"].decision["id"]
    assert pool.current("pool") == 2 and len(receiver.posts) == 1
    assert len(events(lake, "scaling.triggered")) == 3  # recorded once, not per run
    applied = events(lake, "action.applied")
    assert sorted(e["target"] for e in applied) == ["hook", "pool", "web"]

    # the next tick starts from reality (the counts just set): the load now fits, so it holds
    later = by_target(run_scaling(settings, lake, NOW + timedelta(seconds=15)))
    assert later["pool"].decision["from"] == 2 and later["hook"].decision["from"] == 3
    assert later["hook"].status == "hold" and len(receiver.posts) == 1


def test_a_failing_actuator_is_recorded_and_the_others_still_scale(
    tmp_path: Path, lake: Lake, three: list[dict[str, Any]], receiver: Receiver
) -> None:
    dead = {"kind": "webhook", "url": "http://127.0.0.1:9/scale", "current_url": "http://127.0.0.1:9/current",
            "secret": SECRET, "timeout_s": 2}  # fmt: skip
    targets = [target("dead", "hook", dead), three[2], target("web", "web", {"kind": "log", "initial": 4})]
    receiver.fail_posts = 1  # the hook's first POST answers 503
    settings = settings_for(tmp_path, targets, mode="apply")
    out = by_target(run_scaling(settings, lake, NOW))
    assert out["dead"].status == "failed" and "current count" in (out["dead"].error or "")
    assert out["hook"].status == "failed" and "503" in (out["hook"].error or "")
    assert (
        out["web"].status == "applied" and out["web"].decision["to"] == 8
    )  # HPA says 9; the step limit max(+100 %, +4) allows 8
    failed = {e["target"]: e for e in events(lake, "action.failed")}
    assert failed["dead"]["stage"] == "current" and "ConnectError" in failed["dead"]["error"]
    assert "503" in failed["hook"]["error"]
    assert [e["target"] for e in events(lake, "action.applied")] == ["web"]

    # a re-run of the tick retries the failed apply (same decision id) and now it goes through
    retry = by_target(run_scaling(settings, lake, NOW, targets=["hook"]))
    assert retry["hook"].status == "applied" and retry["hook"].replayed
    assert receiver.count["hook"] == 3 and receiver.posts[-1]["id"] == out["hook"].decision["id"]


EXAMPLE_RULES = Path(__file__).resolve().parents[3] / "data" / "examples" / "alerting"


@pytest.mark.parametrize("rule_file", ["rules.yml", "demo-rules.yml"])
def test_an_emergency_decision_fires_the_shipped_scaling_emergency_rule(
    tmp_path: Path, lake: Lake, three: list[dict[str, Any]], rule_file: str
) -> None:
    """The emergency reaches people as an alert rule over the samples the tick writes (not as an
    ``alert.firing`` event of scaling's own, which would never resolve): the shipped rule fires for
    the target whose decision was an emergency, and resolves once the 5-minute window has passed."""
    from tasks.alerting.rules.evaluate import evaluate
    from tasks.alerting.rules.lifecycle import AlertState
    from tasks.alerting.rules.rule_files import load_rule_files
    from tasks.alerting.rules.ruler import evaluate_rule

    run = run_scaling(settings_for(tmp_path, three), lake, NOW)
    emergencies = [o.decision["target"] for o in run.emergencies if o.decision]
    assert emergencies == ["web"] and "EMERGENCY" in run.markdown()
    assert events(lake, "alert.firing") == []  # scaling writes series, the rule engine the alerts

    (rule,) = [r for r in load_rule_files([EXAMPLE_RULES / rule_file]).alerts if r.name == "ScalingEmergency"]
    fired = evaluate_rule(rule, lake, NOW, [], evaluate)
    assert fired.error is None
    assert [(a.labels["target"], a.labels["severity"], a.state) for a in fired.instances] == [
        ("web", "page", AlertState.FIRING)
    ]
    later = evaluate_rule(rule, lake, NOW + timedelta(minutes=6), fired.instances, evaluate)
    assert [a.state for a in later.instances] == [AlertState.INACTIVE]


def test_plan_records_nothing(tmp_path: Path, lake: Lake, three: list[dict[str, Any]]) -> None:
    settings = settings_for(tmp_path, three[:1], mode="apply")
    run = run_scaling(settings, lake, NOW, record=False)
    assert run.outcomes[0].status == "planned" and run.outcomes[0].decision["to"] == 9
    assert lake.events().height == 0
    assert ScalingRecords(str(tmp_path / "state.duckdb")).decisions() == []
    assert ActionLedger(str(tmp_path / "state.duckdb")).history() == []


def test_policy_state_carries_to_the_next_tick(tmp_path: Path, lake: Lake) -> None:
    """The HPA's 5-minute scale-down stabilisation only works if its memory survives between ticks."""
    settings = settings_for(tmp_path, [target("web", "web", {"kind": "log", "initial": 20})], mode="apply")
    first = run_scaling(settings, lake, NOW).outcomes[0].decision
    assert first is not None and first["to"] == 9  # ceil(20 × 300 / (20 × 35))
    lake2 = Lake(str(tmp_path / "lake"))
    write_load(lake2, "web", [35.0] * 3, end=NOW + timedelta(minutes=3))  # the load falls to one unit's worth
    second = run_scaling(settings, lake2, NOW + timedelta(minutes=3)).outcomes[0].decision
    assert second is not None and second["from"] == 9
    assert second["to"] == 9 and "stabilis" in second["reason"]  # the earlier recommendation of 9 still holds
    fresh = settings_for(tmp_path / "fresh", [target("web", "web", {"kind": "log", "initial": 9})], mode="apply")
    no_memory = run_scaling(fresh, lake2, NOW + timedelta(minutes=3)).outcomes[0].decision
    assert no_memory is not None and no_memory["to"] < 9  # without the stored state it would drop at once


def test_load_metric_rate_and_combine(tmp_path: Path) -> None:
    lk = Lake(str(tmp_path / "lake"))
    end = NOW.replace(second=0)
    samples = []
    for job, per_s in (("a", 2.0), ("b", 3.0)):
        for i in range(31):
            ts = end - timedelta(seconds=15 * (30 - i) + 1)
            samples.append(Sample("reqs_total", per_s * 15 * i, ts, {"job": job}))
    lk.write_samples(samples)
    from tasks.config.scaling import ScalingMetricSettings

    m = ScalingMetricSettings(selector="reqs_total", agg="rate", combine="sum", step="1m", lookback="5m")
    df = load_metric(lk, m, NOW)
    assert df["ts"][-1] == end  # the last complete bucket ends at the minute boundary before NOW
    assert df["value"].to_list()[-3:] == pytest.approx([5.0, 5.0, 5.0])  # 2/s + 3/s
    m_max = m.model_copy(update={"combine": "max"})
    assert load_metric(lk, m_max, NOW)["value"][-1] == pytest.approx(3.0)


def test_forecasts_reach_the_policy_from_the_nowcaster_and_the_lake(tmp_path: Path) -> None:
    from tasks.forecasting.data import forecast_rows
    from tasks.lake import schema as S

    lk = Lake(str(tmp_path / "lake"))
    write_load(lk, "api", [200.0 + (i % 7) for i in range(300)])
    settings = settings_for(
        tmp_path,
        [target("api", "api", {"kind": "log", "initial": 5}, policy="predictive",
                metric={"selector": 'app_load_rps{job="api"}', "step": "1m", "lookback": "6h"})],
    )  # fmt: skip
    d = run_scaling(settings, lk, NOW, record=False).outcomes[0].decision
    assert d is not None and d["forecast_source"].startswith("nowcast") and d["forecast_model"] == "nowcast"
    assert "fallback" not in d["policy"] and 200 <= d["to"] * 50 <= 300  # p99 of ~203 req/s in 50-units

    # A fresh lake forecast (the forecast flow's) wins over the nowcaster when its step is acceptable.
    t = settings.scaling.targets[0]
    start = NOW.replace(second=0)
    frame = pl.DataFrame({
        "series": ['app_load_rps{job="api"}'] * 10,
        "ts": [start + timedelta(minutes=k) for k in range(10)],
        "step": list(range(1, 11)),
        "p10": [400.0] * 10, "p50": [450.0] * 10, "p90": [480.0] * 10, "p99": [499.0] * 10,
    }).with_columns(pl.col("ts").dt.cast_time_unit("ms"))  # fmt: skip
    lk.write_rows(
        S.FORECASTS, forecast_rows(frame, lk, issued_at=NOW - timedelta(minutes=5), model="xgboost", version="v3")
    )
    hist = load_metric(lk, t.metric, NOW)
    fc, source = load_forecast(lk, t.metric, t, hist, NOW)
    assert fc is not None and source.startswith("lake forecast") and fc.model == "xgboost@v3"
    assert fc.step_s == 60 and fc.quantiles[0.99][0] == 499.0
    d2 = run_scaling(settings, lk, NOW, record=False).outcomes[0].decision
    assert d2 is not None and d2["forecast_model"] == "xgboost@v3" and d2["to"] == 10  # p99 499 / 50


def test_unknown_target_name_lists_the_known_ones(tmp_path: Path, lake: Lake, three: list[dict[str, Any]]) -> None:
    with pytest.raises(LookupError, match=r"'nope' is not configured \(known: web, pool, hook\)"):
        run_scaling(settings_for(tmp_path, three), lake, NOW, targets=["nope"])


@pytest.mark.parametrize(
    ("bad", "where", "why"),
    [
        ({"actuator": {"kind": "teleport"}}, "scaling.targets[0].actuator.kind", "unknown actuator 'teleport'"),
        ({"actuator": {"kind": "webhook", "url": "ftp://x", "secret": SECRET}}, "scaling.targets[0].actuator",
         "url: Value error, must be an http:// or https:// URL"),
        ({"rails": {"min_units": 5, "max_units": 2}}, "scaling.targets.0.rails",
         "min_units (5) must not exceed max_units (2)"),
        ({"policy": "magic"}, "scaling.targets.0.policy", "'reactive', 'predictive', 'hybrid' or 'static'"),
        ({"metric": {"selector": "x", "agg": "median-ish"}}, "scaling.targets.0.metric.agg", "unknown aggregation"),
        ({"metric": {"selector": "x{"}}, "scaling.targets.0.metric.selector", ""),
        ({"capacity_per_unit": 0}, "scaling.targets.0.capacity_per_unit", "greater than 0"),
    ],
)  # fmt: skip
def test_bad_target_config_names_the_field(tmp_path: Path, bad: dict[str, Any], where: str, why: str) -> None:
    t = {**target("web", "web", {"kind": "log"}), **bad}
    with pytest.raises(ConfigError) as exc:
        check_settings(settings_for(tmp_path, [t]))
    assert where in str(exc.value) and why in str(exc.value)


def test_config_errors_never_echo_an_actuator_secret(tmp_path: Path) -> None:
    t = target("web", "web", {"kind": "webhook", "url": "ftp://nope", "secret": "do-not-print-this-secret"})
    with pytest.raises(ConfigError) as exc:
        check_settings(settings_for(tmp_path, [t, {**t, "name": "b", "metric": {"selector": "x", "agg": "nope"}}]))
    assert "do-not-print-this-secret" not in str(exc.value)
    assert "scaling.targets[0].actuator.url" in str(exc.value) and "scaling.targets.1.metric.agg" in str(exc.value)


def test_duplicate_target_names_and_bad_mode(tmp_path: Path) -> None:
    t = target("web", "web", {"kind": "log"})
    with pytest.raises(ConfigError, match=r"duplicate target name\(s\) web"):
        settings_for(tmp_path, [t, t])
    with pytest.raises(ConfigError, match=r"scaling\.mode: must be one of 'dry-run' or 'apply'"):
        settings_for(tmp_path, [t], mode="yolo")


def test_each_decision_says_what_it_saves_vs_static_peak_and_reactive(tmp_path: Path, lake: Lake) -> None:
    # 100 rps on 1 unit of 50: the HPA wants ceil(1 × 100 / 35) = 3; a static peak keeps max_units = 10
    reactive = target("r", "hook", {"kind": "log", "initial": 1}, cost_per_unit_hour=0.5, rails={"max_units": 10})
    predictive = {
        **reactive,
        "name": "p",
        "policy": "predictive",
        "metric": {**reactive["metric"], "forecast": "nowcast"},
    }
    run = run_scaling(settings_for(tmp_path, [reactive, predictive]), lake, NOW)
    out = by_target(run)
    r, p = out["r"].decision, out["p"].decision
    assert r["to"] == 3 and r["cost_per_hour_static_peak"] == 5.0
    assert r["saved_per_hour_vs_static"] == pytest.approx((10 - 3) * 0.5)
    assert "saved_per_hour_vs_reactive" not in r  # the reactive policy is its own baseline
    assert p["reactive_units"] == 3
    assert p["saved_per_hour_vs_reactive"] == pytest.approx((3 - p["to"]) * 0.5)
    assert p["saved_per_hour_vs_static"] == pytest.approx((10 - p["to"]) * 0.5)
    md = run.markdown()
    assert "saved/h vs static peak" in md and "+3.50" in md and "Saved per hour at these counts" in md


def test_decisions_are_series_so_alert_rules_route_emergencies(
    tmp_path: Path, lake: Lake, three: list[dict[str, Any]]
) -> None:
    from tasks.alerting.rules.evaluate import evaluate

    run_scaling(settings_for(tmp_path, three), lake, NOW)
    fired = evaluate("max_over_time(cortex_perf_scaling_emergency[5m]) > 0", lake, NOW)
    assert [labels["target"] for labels, _ in fired] == ["web"]  # only web's decision was an emergency
    units = {labels["target"]: v for labels, v in evaluate("cortex_perf_scaling_units", lake, NOW)}
    assert units == {"web": 9.0, "pool": 2.0, "hook": 3.0}

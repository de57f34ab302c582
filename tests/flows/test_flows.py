"""The flows under Prefect's test harness: real tasks, a real (temporary) Prefect API, tmp lakes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tasks.demo import DEMO_SELECTOR
from tasks.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _root(overrides: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("lake.root="))


def test_collect_writes_one_batch_and_emits_events(lake_overrides: list[str]) -> None:
    from flows.collect import collect

    summary = collect(overrides=lake_overrides)
    assert summary["accepted"] > 10
    assert summary["rejected"] == 0
    assert summary["failed_sources"] == []
    lake = Lake(_root(lake_overrides))
    stats = lake.stats()["tables"]
    assert stats["samples"]["rows"] == summary["accepted"]
    assert lake.latest("host_cpu_utilization_ratio").height >= 1
    assert lake.latest('cortex_perf_source_up{source="host"}')["value"].to_list() == [1.0]
    events = lake.events(name="metrics.collected")
    assert events.height == 1
    assert json.loads(events["payload"][0])["accepted"] == summary["accepted"]


def test_collect_failing_source_is_recorded_not_fatal(lake_overrides: list[str]) -> None:
    from flows.collect import collect

    port = _closed_port()
    overrides = [
        *lake_overrides,
        f'sources.prometheus=[{{"name": "broken", "url": "http://127.0.0.1:{port}/metrics", "timeout_s": 1}}]',
    ]
    summary = collect(overrides=overrides)
    assert summary["failed_sources"] == ["prometheus:broken"] or summary["failed_sources"][0].endswith("broken")
    assert summary["accepted"] > 10  # the host source still delivered
    lake = Lake(_root(lake_overrides))
    failed = lake.events(name="source.failed")
    assert failed.height == 1
    payload = json.loads(failed["payload"][0])
    assert "broken" in payload["source"] and payload["error"]
    up = lake.latest("cortex_perf_source_up")
    assert sorted(up["value"].to_list()) == [0.0, 1.0]


def test_collect_bad_config_fails_the_run(lake_overrides: list[str]) -> None:
    from flows.collect import collect
    from tasks.config import ConfigError

    with pytest.raises(ConfigError, match="logging.level"):
        collect(overrides=[*lake_overrides, "logging.level=LOUD"])


def test_maintain_compacts_and_rolls_up(lake_overrides: list[str]) -> None:
    from flows.collect import collect
    from flows.maintain import maintain

    for _ in range(4):
        collect(overrides=lake_overrides)
    summary = maintain(overrides=lake_overrides)
    assert summary["compaction"]["files_before"] >= 4
    assert summary["compaction"]["files_after"] < summary["compaction"]["files_before"]
    assert summary["rollups"]["rows_written"]
    lake = Lake(_root(lake_overrides))
    assert lake.events(name="lake.compacted").height == 1


def test_pipeline_demo_seeds_once(lake_overrides: list[str]) -> None:
    from flows.pipeline import pipeline

    first = pipeline(demo=True, overrides=lake_overrides, demo_days=1)
    stages = {s["stage"]: s for s in first["stages"]}
    assert list(stages) == [
        "seed-demo",
        "collect",
        "maintain",
        "forecast",
        "anomaly",
        "scale",
        "cache",
        "gpu",
        "router",
        "alerts",
        "report",
    ]
    assert first["ok"] is True
    assert stages["seed-demo"]["status"] == "ok"
    assert stages["router"]["status"] == "skipped" and "router.pools is empty" in stages["router"]["detail"]
    assert stages["seed-demo"]["result"]["rows"] == 34 * 1440
    assert stages["alerts"]["status"] == "ok", stages["alerts"]["detail"]
    assert stages["alerts"]["result"]["firing"] >= 1  # the demo rules' Watchdog is always firing
    assert stages["scale"]["status"] == "ok", stages["scale"]["detail"]
    assert "demo-web" in stages["scale"]["detail"] and "dry-run" in stages["scale"]["detail"]
    assert stages["report"]["status"] == "ok", stages["report"]["detail"]
    (rep,) = stages["report"]["result"]["reports"]
    html = Path(rep["html"])
    assert html.is_file() and html.is_relative_to(Path(_root(lake_overrides)).parent)  # under tmp data_dir
    assert "<img" in html.read_text()
    assert first["incidents"]
    lake = Lake(_root(lake_overrides))
    rows_after_first = lake.stats()["tables"]["samples"]["rows"]
    assert lake.series(DEMO_SELECTOR).height == 34

    second = pipeline(demo=True, overrides=lake_overrides, demo_days=1)
    stages = {s["stage"]: s for s in second["stages"]}
    assert stages["seed-demo"]["status"] == "skipped"
    demo_rows = lake.raw(DEMO_SELECTOR, *_span(lake)).height
    assert demo_rows == 34 * 1440  # not written twice
    assert lake.stats()["tables"]["samples"]["rows"] > rows_after_first  # collect ran again
    assert lake.events(name="lake.imported").height == 1


def test_pipeline_stage_failure_is_reported_and_fails_the_run(tmp_path: Path) -> None:
    from flows.pipeline import PipelineFailed, pipeline

    # A file where the lake directory should be: every write fails.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    overrides = [
        f"lake.root={blocker}/lake",
        f"state.path={tmp_path / 'state.duckdb'}",
        f"data_dir={tmp_path / 'data'}",
        "sources.gpu.enabled=false",
        "sources.prefect.enabled=false",
    ]
    state = pipeline(overrides=overrides, return_state=True)
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, PipelineFailed)
    statuses = {s["stage"]: s["status"] for s in exc.summary["stages"]}
    assert statuses["collect"] == "failed"
    assert "maintain" in statuses  # the next stage still ran


def _span(lake: Lake) -> tuple:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return now - timedelta(days=3), now + timedelta(hours=1)


def test_every_prefect_yaml_entrypoint_is_a_flow() -> None:
    from prefect import Flow

    from flows.serve import REPO_ROOT, load_deployment_specs, load_entrypoint

    specs = load_deployment_specs(REPO_ROOT / "prefect.yaml")
    names = {s["name"] for s in specs}
    assert {"collect", "maintain", "pipeline"} <= names
    for spec in specs:
        flow = load_entrypoint(spec["entrypoint"])
        assert isinstance(flow, Flow), spec["entrypoint"]
        # every parameter in prefect.yaml is one the flow accepts
        assert set(spec.get("parameters") or {}) <= set(flow.parameters.properties), spec["name"]
        if spec.get("schedules"):
            assert spec["concurrency_limit"]["limit"] == 1
            assert spec["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"
            assert "max_lateness_s" in spec["parameters"]
    collect = next(s for s in specs if s["name"] == "collect")
    assert collect["schedules"] == [{"interval": 60, "active": True}]
    assert collect["work_pool"]["name"] == "cortex-perf"


def test_serve_builds_the_same_deployments() -> None:
    from flows.serve import REPO_ROOT, deployments_from_yaml

    deps = {d.name: d for d in deployments_from_yaml(REPO_ROOT / "prefect.yaml", overrides=["lake.root=/x"])}
    assert set(deps) >= {"collect", "maintain", "pipeline"}
    collect = deps["collect"]
    assert collect.schedules[0].schedule.interval.total_seconds() == 60
    assert collect.concurrency_limit == 1
    assert collect.parameters["overrides"] == ["lake.root=/x"]
    assert deps["maintain"].schedules[0].schedule.cron == "7 * * * *"
    assert deps["pipeline"].schedules in (None, [])
    # the cache deployment runs again on a miss surge: its event trigger reaches the served deployment
    (trigger,) = deps["cache"].triggers
    assert trigger.expect == {"cortex.cache.miss"} and trigger.parameters == {"warm": "always"}


def test_lateness_only_for_deployment_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace
    from uuid import uuid4

    import prefect.context

    from flows._common import lateness_s

    assert lateness_s() is None  # outside any flow run nothing is late
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    run = SimpleNamespace(deployment_id=uuid4(), expected_start_time=now - timedelta(minutes=10))
    monkeypatch.setattr(prefect.context.FlowRunContext, "get", classmethod(lambda cls: SimpleNamespace(flow_run=run)))
    assert lateness_s(now) == 600.0
    run.deployment_id = None  # an ad-hoc run
    assert lateness_s(now) is None


def test_stale_scheduled_run_skips_itself(monkeypatch: pytest.MonkeyPatch, lake_overrides: list[str]) -> None:
    import flows._common as common
    import flows.collect as collect_mod

    monkeypatch.setattr(common, "lateness_s", lambda: 900.0)
    summary = collect_mod.collect(overrides=lake_overrides, max_lateness_s=120)
    assert summary["skipped"] is True and "900s" in summary["reason"]
    assert not Path(_root(lake_overrides)).exists()  # nothing collected, nothing written
    assert collect_mod.collect(overrides=lake_overrides, max_lateness_s=1000)["accepted"] > 0


def test_alerts_flow_fires_records_events_and_honours_dry_run(lake_overrides: list[str], tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client

    from flows.alerts import ARTIFACT_KEY, alerts
    from tasks.lake import Sample

    now = datetime.now(UTC)
    lake = Lake(_root(lake_overrides))
    lake.write_samples(
        [Sample("queue_depth", 500.0, now - timedelta(seconds=s), {"queue": "jobs"}) for s in (0, 30, 60, 90)]
    )
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n  - name: q\n    rules:\n      - alert: QueueDeep\n        expr: queue_depth > 100\n"
        "        annotations: {summary: 'depth {{ $value }}'}\n"
    )
    overrides = [*lake_overrides, f'alerting.rule_files=["{rules}"]']

    dry = alerts(overrides=overrides, dry_run=True)
    assert dry["firing"] == 1 and dry["dry_run"] is True
    assert lake.events(name="alert.firing").height == 0  # a dry run records nothing

    summary = alerts(overrides=overrides)
    assert summary["firing"] == 1 and summary["errors"] == []
    events = lake.events(name="alert.firing")
    assert events.height == 1
    payload = json.loads(events["payload"][0])
    assert payload["labels"] == {"alertname": "QueueDeep", "queue": "jobs"}
    assert payload["annotations"] == {"summary": "depth 500"}

    again = alerts(overrides=overrides)  # same minute: nothing new, nothing re-recorded
    assert again["firing"] == 1 and lake.events(name="alert.firing").height == 1

    async def artifact() -> str:
        async with get_client() as client:
            art = await client.read_latest_artifacts()
            return next(a.data for a in art if a.key == ARTIFACT_KEY)

    import asyncio

    text = asyncio.run(artifact())
    assert "QueueDeep" in text and "1 firing" in text


def test_alerts_flow_bad_rule_path_fails_with_the_setting_named(lake_overrides: list[str]) -> None:
    from flows.alerts import alerts
    from tasks.alerting.rules.rule_files import RuleFileError

    with pytest.raises(RuleFileError, match="alerting.rule_files: '/nope/rules.yml' matches no file"):
        alerts(overrides=[*lake_overrides, 'alerting.rule_files=["/nope/rules.yml"]'])


def test_alerts_flow_with_nothing_to_do_says_why(lake_overrides: list[str]) -> None:
    """An unconfigured alerts deployment used to complete every minute while doing nothing, silently:
    its log and its artifact must say why and how to configure it."""
    from prefectrun import run_artifact, run_logs

    from flows.alerts import ARTIFACT_KEY, alerts

    state = alerts(overrides=lake_overrides, return_state=True)
    assert state.result()["skipped"] is True
    run_id = state.state_details.flow_run_id
    logged = [m for m in run_logs(run_id) if "nothing to do" in m]
    assert logged and "nothing to do because alerting.rule_files is empty" in logged[0], run_logs(run_id)
    assert "alerting.rule_files" in run_artifact(ARTIFACT_KEY, run_id)

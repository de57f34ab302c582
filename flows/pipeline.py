"""The main job: every stage once, in order — (seed demo history) → collect → maintain → forecast → anomaly
→ scale → cache → gpu → router → alerts → report (the performance report notebook, as HTML).

The stages are the ``_run_stage`` calls in ``pipeline``, in that order (one line each: adding a
stage is adding a line there). Stages run as
plain calls of the stage flows' bodies (``collect_stage`` …) inside this one flow run, so their
tasks, logs and artifacts belong to the pipeline's run; subflows would add Prefect's per-subflow
overhead (about a second each) for nothing. The run is the composition root: it loads the settings
and builds the lake and state once (``flows._common.load``) and hands that ``Runtime`` to every
stage; the demo's scaling target and rules reach the stages as typed settings
(``tasks.demo_config.with_demo_setup``), not as re-parsed overrides.

A failing stage is recorded and the next one still runs — a broken collector must not stop
maintenance — and the run fails at the end, naming the failed stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import load
from flows.alerts import alerts_stage
from flows.anomaly import anomaly_stage
from flows.cache import cache_stage
from flows.collect import collect_stage
from flows.forecast import forecast_stage
from flows.gpu import gpu_stage
from flows.maintain import maintain_stage
from flows.report import report_stage
from flows.router import router_stage
from flows.scale import scale_stage
from tasks.demo import DEMO_INCIDENTS, seed_demo
from tasks.demo_config import DEMO_RULES, with_demo_setup
from tasks.lake import Lake
from tasks.timeparse import format_duration

__all__ = ["DEMO_RULES", "PipelineFailed", "PipelineSummary", "StageSummary", "pipeline"]

ARTIFACT_KEY = "pipeline-summary"


class StageSummary(TypedDict):
    stage: str
    status: Literal["ok", "skipped", "failed"]
    seconds: float
    detail: str
    result: dict[str, Any]


class PipelineSummary(TypedDict):
    """The pipeline's return value; the CLI renders it as tables."""

    ok: bool
    demo: bool
    lake: str
    stages: list[StageSummary]
    tables: dict[str, dict[str, Any]]
    incidents: list[dict[str, str]]


class PipelineFailed(RuntimeError):
    """Raised at the end of a run in which a stage failed; carries the full summary."""

    def __init__(self, summary: PipelineSummary) -> None:
        failed = [s["stage"] for s in summary["stages"] if s["status"] == "failed"]
        super().__init__(f"stage(s) failed: {', '.join(failed)}")
        self.summary = summary


@task(name="seed-demo-history", cache_policy=NO_CACHE)
def seed_demo_history(lake: Lake, days: float) -> dict[str, Any]:
    """Write the generated demo history once; a lake that already has it is left alone."""
    return seed_demo(lake, days=days).to_dict()


@task(name="lake-stats", cache_policy=NO_CACHE)
def lake_stats(lake: Lake) -> dict[str, dict[str, Any]]:
    return dict(lake.stats()["tables"])


def _detail_seed(r: dict[str, Any]) -> tuple[str, str]:
    if not r.get("seeded"):
        return "skipped", "demo history already in the lake"
    return "ok", f"{r['rows']:,} samples, {r['series']} series ({r['start'][:16]} → {r['end'][:16]} UTC)"


def _detail_collect(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    failed = r.get("failed_sources") or []
    text = f"{r.get('accepted', 0):,} samples from {r.get('sources', 0)} source(s)"
    if r.get("rejected"):
        text += f", {r['rejected']} rejected"
    if failed:
        text += f"; failed: {', '.join(failed)}"
    return "ok", text


def _detail_maintain(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    c = r.get("compaction", {})
    rows = r.get("rollups", {}).get("rows_written", {}) or {}
    dropped = sum(len(v) for v in (r.get("retention", {}).get("partitions_dropped", {}) or {}).values())
    return "ok", (
        f"compaction {c.get('files_before', 0)} → {c.get('files_after', 0)} files; "
        f"rollup rows {sum(rows.values()):,}; {dropped} partition(s) past retention dropped"
    )


def _detail_forecast(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    text = (
        f"{r.get('groups', 0)} model(s) over {r.get('series', 0)} series retrained and backtested; "
        f"{r.get('forecast_rows', 0):,} forecast rows; promoted: {', '.join(r.get('promoted') or []) or 'none'}"
    )
    if r.get("failed"):
        text += f"; problems: {', '.join(r['failed'])}"
    return "ok", text


def _detail_anomaly(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    top = (r.get("top") or [None])[0]
    text = f"{r.get('scored', 0):,} point(s) of {r.get('series', 0)} series scored; {r.get('anomalies', 0)} anomalies"
    if top:
        text += f"; strongest: {top['series']} at {top['ts'][:16]} ({top['score']:.2f}, {top['detector']})"
    return "ok", text


def _detail_scale(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    parts = []
    for o in r.get("decisions") or []:
        d = o.get("decision") or {}
        parts.append(
            f"{o.get('target')}: {d.get('from')} → {d.get('to')} ({d.get('policy')})"
            if d
            else f"{o.get('target')}: {o.get('status')} {o.get('error') or ''}".strip()
        )
    text = f"{r.get('targets', 0)} target(s), {r.get('mode', '')}: " + ("; ".join(parts) or "no decision")
    if r.get("failed"):
        text += f"; {r['failed']} failed"
    return ("failed" if r.get("failed") else "ok"), text


def _detail_cache(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    text = f"{r.get('nodes', 0)} node(s), {r.get('down', 0)} down, {len(r.get('advice') or [])} finding(s)"
    warm = r.get("warm") or {}
    if r.get("warm_reason"):
        text += f"; warmed ({r['warm_reason']}): {warm.get('status', r.get('mode'))}"
    failed = bool(r.get("down")) or warm.get("status") == "failed"
    return ("failed" if failed else "ok"), text


def _detail_gpu(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    placed = sum(bool(d.get("placed")) for d in ((r.get("placement") or {}).get("decisions") or []))
    return "ok", f"{r.get('status', '')}; {r.get('devices', 0)} device(s), {placed} placed"


def _detail_router(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    text = f"model {r.get('model')}: {r.get('status')} on {r.get('outcomes', 0)} outcome(s)"
    if r.get("promoted"):
        text += f"; promoted {r.get('version')}"
    return ("failed" if r.get("status") == "failed" else "ok"), text


def _detail_alerts(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    text = (
        f"{r.get('rules', 0)} rule(s), {r.get('evaluations', 0)} evaluation(s): {r.get('firing', 0)} firing, "
        f"{r.get('pending', 0)} pending; {r.get('notifications', 0)} notification(s)"
    )
    if r.get("errors"):
        text += f"; {len(r['errors'])} rule error(s)"
    return "ok", text


def _detail_report(r: dict[str, Any]) -> tuple[str, str]:
    if r.get("skipped"):
        return "skipped", str(r.get("reason", ""))
    paths = [str(x.get("html")) for x in r.get("reports") or []]
    return "ok", "report: " + (", ".join(paths) or "none written")


def _run_stage(
    name: str,
    fn: Callable[[], dict[str, Any]],
    describe: Callable[[dict[str, Any]], tuple[str, str]],
) -> StageSummary:
    logger = get_run_logger()
    t0 = time.perf_counter()
    try:
        result = dict(fn())
        status, detail = describe(result)
    except Exception as exc:  # one broken stage must not stop the others
        logger.error("stage %s failed: %s: %s", name, type(exc).__name__, exc)
        result, status, detail = {}, "failed", f"{type(exc).__name__}: {exc}"
    stage = StageSummary(
        stage=name,
        status=status,  # type: ignore[typeddict-item]
        seconds=round(time.perf_counter() - t0, 3),
        detail=detail,
        result=result,
    )
    logger.info("stage %s: %s (%s)", name, status, detail)
    return stage


@flow(name="pipeline", description="The main job: every stage once, in order.")
def pipeline(
    demo: bool = False,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    demo_days: float = 3.0,
) -> PipelineSummary:
    """Run every stage once. ``demo=True`` first seeds a generated, labelled history (once per lake)."""
    rt = load(config_path, overrides)
    lake = rt.lake
    # Without a config (`run --demo` writes one; a pipeline called directly may have none) the demo
    # still decides for its web tier and evaluates its rules.
    demo_rt = rt.with_settings(with_demo_setup(rt.settings)) if demo else rt
    stages: list[StageSummary] = []
    if demo:
        stages.append(_run_stage("seed-demo", lambda: seed_demo_history(lake, demo_days), _detail_seed))
    stages.append(_run_stage("collect", lambda: dict(collect_stage(rt)), _detail_collect))
    stages.append(_run_stage("maintain", lambda: dict(maintain_stage(rt)), _detail_maintain))
    stages.append(_run_stage("forecast", lambda: dict(forecast_stage(rt)), _detail_forecast))
    stages.append(_run_stage("anomaly", lambda: dict(anomaly_stage(rt)), _detail_anomaly))
    run_scale = lambda: dict(scale_stage(demo_rt, retry_failed_after_s=None))  # noqa: E731
    stages.append(_run_stage("scale", run_scale, _detail_scale))
    stages.append(_run_stage("cache", lambda: dict(cache_stage(rt)), _detail_cache))
    stages.append(_run_stage("gpu", lambda: dict(gpu_stage(rt)), _detail_gpu))
    stages.append(_run_stage("router", lambda: dict(router_stage(rt)), _detail_router))
    stages.append(_run_stage("alerts", lambda: dict(alerts_stage(demo_rt)), _detail_alerts))
    since = f"{demo_days:g}d" if demo else "1d"
    run_report = lambda: dict(report_stage(rt, notebooks=["performance_report"], since=since))  # noqa: E731
    stages.append(_run_stage("report", run_report, _detail_report))
    try:
        tables = lake_stats(lake)
    except Exception as exc:
        get_run_logger().error("lake stats failed: %s", exc)
        tables = {}
    summary = PipelineSummary(
        ok=all(s["status"] != "failed" for s in stages),
        demo=demo,
        lake=lake.root,
        stages=stages,
        tables=tables,
        incidents=[
            {
                "name": i.name,
                "series": i.metric,
                "when": f"{format_duration(i.start_before_end)} before the end",
                "what": i.description,
            }
            for i in DEMO_INCIDENTS
        ]
        if demo
        else [],
    )
    create_table_artifact(
        table=[{k: s[k] for k in ("stage", "status", "seconds", "detail")} for s in stages],
        key=ARTIFACT_KEY,
        description=f"**pipeline** over `{lake.root}`{' (demo)' if demo else ''}",
    )
    if not summary["ok"]:
        raise PipelineFailed(summary)
    return summary


if __name__ == "__main__":
    pipeline()

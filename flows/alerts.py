"""The alerts flow (every minute): evaluate the rule files over the lake, keep alert state, and send
notifications.

One task does the work (``tasks.alerting.service.run_alerts``) so the tick's state changes happen in
one place with one retry boundary; the flow adds the skip-if-stale guard and a markdown artifact of
the current alerts that people read in the Prefect UI.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, nothing_to_do, stale_run
from tasks.alerting.service import AlertsRunResult, run_alerts
from tasks.config import Settings
from tasks.lake import Lake
from tasks.state import State

__all__ = ["AlertsSummary", "alerts", "alerts_stage"]

ARTIFACT_KEY = "alerts-current"
NO_RULES_HINT = (
    'list Prometheus rule files in cortex-perf.yaml (alerting: {rule_files: ["rules/*.yml"]}); '
    "`cortex-perf run --demo` writes a cortex-perf.yaml with example rules"
)


class AlertsSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    rules: int
    evaluations: int
    firing: int
    pending: int
    resolved: int
    notifications: int
    errors: list[dict[str, Any]]
    dry_run: bool
    seconds: float


@task(name="evaluate-and-notify", cache_policy=NO_CACHE)
def tick(lake: Lake, state: State, settings: Settings, dry_run: bool) -> AlertsRunResult:
    return run_alerts(settings, lake, dry_run=dry_run, state=state)


@flow(name="alerts", description="Evaluate alert rules over the lake; route, group and deliver notifications.")
def alerts(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    dry_run: bool = False,
    max_lateness_s: float | None = None,
) -> AlertsSummary:
    if (skipped := stale_run("alerts", max_lateness_s)) is not None:
        return AlertsSummary(**skipped)  # type: ignore[typeddict-item]
    return alerts_stage(load(config_path, overrides), dry_run=dry_run)


def alerts_stage(rt: Runtime, *, dry_run: bool = False) -> AlertsSummary:
    """The alerts flow's work on a built runtime (inside a flow run: the pipeline calls it with its own)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings, lake = rt.settings, rt.lake
    idle = None
    if not settings.alerting.enabled:
        idle = nothing_to_do("alerts", "alerting.enabled is false", artifact_key=ARTIFACT_KEY, warn=False)
    elif not settings.alerting.rule_files:
        idle = nothing_to_do("alerts", "alerting.rule_files is empty", hint=NO_RULES_HINT, artifact_key=ARTIFACT_KEY)
    if idle is not None:
        return AlertsSummary(**idle)  # type: ignore[typeddict-item]
    res = tick(lake, rt.state, settings, dry_run)
    create_markdown_artifact(markdown=res.markdown(), key=ARTIFACT_KEY, description="Current alerts")
    for rule, err in res.errors:
        logger.error("rule %s failed: %s", rule, err)
    logger.info(
        "alerts: %d firing, %d pending, %d resolved; %d evaluation(s), %d notification(s)%s",
        len(res.firing),
        res.pending,
        len(res.resolved),
        res.evaluations,
        len(res.notifications),
        " (dry run)" if dry_run else "",
    )
    return AlertsSummary(
        flow="alerts",
        rules=res.rules,
        evaluations=res.evaluations,
        firing=len(res.firing),
        pending=res.pending,
        resolved=len(res.resolved),
        notifications=len(res.notifications),
        errors=[{"rule": r, "error": e} for r, e in res.errors],
        dry_run=dry_run,
        seconds=round(time.perf_counter() - t0, 3),
    )


if __name__ == "__main__":
    alerts()

"""The scale flow (every few minutes): one scaling tick for every configured target.

One task does the tick (``tasks.scaling.service.run_scaling``): the decisions, their records and
the actions happen in one place with one retry boundary, and a retry of that task is the same tick
(the tick time is fixed before it starts), so the actuators' ledger never applies a decision
twice. The flow adds the skip-if-stale guard and a markdown artifact of the tick.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, nothing_to_do, stale_run
from tasks.config import Settings
from tasks.lake import Lake
from tasks.scaling.service import ScalingRun, run_scaling

__all__ = ["ARTIFACT_KEY", "ScaleSummary", "scale", "scale_stage"]

ARTIFACT_KEY = "scaling-tick"
NO_TARGETS_HINT = (
    "add scaling.targets to cortex-perf.yaml (see cortex-perf.example.yaml); "
    "`cortex-perf run --demo` writes a cortex-perf.yaml with a demo target"
)


class ScaleSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    mode: str
    now: str
    targets: int
    changed: int
    failed: int
    emergencies: int
    decisions: list[dict[str, Any]]
    seconds: float


@task(name="scaling-tick", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def tick(
    settings: Settings,
    lake: Lake,
    now: datetime,
    mode: Literal["dry-run", "apply"],
    targets: list[str] | None = None,
) -> ScalingRun:
    """Decide, record and (in apply mode) apply for ``targets`` (default: all) at ``now``.

    Safe to retry: the same ``now`` replays the recorded decisions and the ledger skips applied ones."""
    return run_scaling(settings, lake, now, mode=mode, targets=targets)


@flow(name="scale", description="Scaling decisions for every target (forecast-driven, guard-railed); dry-run default.")
def scale(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    mode: Literal["dry-run", "apply"] | None = None,
    max_lateness_s: float | None = None,
    retry_failed_after_s: float | None = 5.0,
) -> ScaleSummary:
    if (skipped := stale_run("scale", max_lateness_s)) is not None:
        return ScaleSummary(**skipped)  # type: ignore[typeddict-item]
    return scale_stage(load(config_path, overrides), mode=mode, retry_failed_after_s=retry_failed_after_s)


def scale_stage(
    rt: Runtime, *, mode: Literal["dry-run", "apply"] | None = None, retry_failed_after_s: float | None = 5.0
) -> ScaleSummary:
    """The scale flow's work on a built runtime (inside a flow run: the pipeline calls it with its own,
    its settings carrying the demo target when it runs the demo)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings, lake = rt.settings, rt.lake
    idle = None
    if not settings.scaling.enabled:
        idle = nothing_to_do("scale", "scaling.enabled is false", artifact_key=ARTIFACT_KEY, warn=False)
    elif not settings.scaling.targets:
        idle = nothing_to_do("scale", "scaling.targets is empty", hint=NO_TARGETS_HINT, artifact_key=ARTIFACT_KEY)
    if idle is not None:
        return ScaleSummary(**idle)  # type: ignore[typeddict-item]
    now = datetime.now(UTC).replace(microsecond=0)
    run_mode = mode or settings.scaling.mode
    res = tick(settings, lake, now, run_mode)
    if res.failed and retry_failed_after_s is not None:
        # Failures are recorded, then retried once in the same tick: a flaky API or a slow worker
        # start should not wait for the next tick. Same tick time, so nothing applies twice.
        time.sleep(retry_failed_after_s)
        again = tick(settings, lake, now, run_mode, [o.target for o in res.failed])
        retried = {o.target: o for o in again.outcomes}
        res.outcomes = [retried.get(o.target, o) for o in res.outcomes]
    create_markdown_artifact(markdown=res.markdown(), key=ARTIFACT_KEY, description="Scaling decisions of this tick")
    for o in res.failed:
        logger.error("scaling %s failed: %s", o.target, o.error)
    for o in res.emergencies:
        logger.warning("EMERGENCY scaling %s: %s", o.target, (o.decision or {}).get("reason"))
    changed = [o for o in res.outcomes if o.decision and o.decision["to"] != o.decision["from"]]
    logger.info(
        "scale (%s): %d target(s), %d change(s), %d failed, %d emergency",
        run_mode,
        len(res.outcomes),
        len(changed),
        len(res.failed),
        len(res.emergencies),
    )
    return ScaleSummary(
        flow="scale",
        mode=run_mode,
        now=now.isoformat(),
        targets=len(res.outcomes),
        changed=len(changed),
        failed=len(res.failed),
        emergencies=len(res.emergencies),
        decisions=[o.to_dict() for o in res.outcomes],
        seconds=round(time.perf_counter() - t0, 3),
    )


if __name__ == "__main__":
    scale()

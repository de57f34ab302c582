"""The anomaly flow (every few minutes): score new samples with each series' causal detector.

One task does the work (``tasks.anomaly.stream.detect_incremental``): it reads only what arrived
since the last run, restores each detector from the state DB, writes scores to the lake's
``anomalies`` table and saves the detectors. A table artifact lists the strongest anomalies.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, stale_run
from tasks.anomaly.stream import AnomalyRunResult, detect_incremental
from tasks.config import Settings
from tasks.lake import Lake
from tasks.state import State
from tasks.timeparse import parse_duration

__all__ = ["AnomalySummary", "anomaly", "anomaly_stage"]

ARTIFACT_KEY = "anomaly-top"


class AnomalySummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    series: int
    scored: int
    new_series: int
    anomalies: int
    top: list[dict[str, Any]]
    seconds: float


@task(name="score-new-samples", cache_policy=NO_CACHE)
def score_new(lake: Lake, state: State, settings: Settings) -> AnomalyRunResult:
    cfg = settings.anomaly
    return detect_incremental(
        lake,
        state,
        list(cfg.selectors),
        parse_duration(cfg.step),
        threshold=cfg.threshold,
    )


@flow(name="anomaly", description="Score new samples for anomalies (causal, incremental) into the lake.")
def anomaly(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    max_lateness_s: float | None = None,
) -> AnomalySummary:
    if (skipped := stale_run("anomaly", max_lateness_s)) is not None:
        return AnomalySummary(**skipped)  # type: ignore[typeddict-item]
    return anomaly_stage(load(config_path, overrides))


def anomaly_stage(rt: Runtime) -> AnomalySummary:
    """The anomaly flow's work on a built runtime (inside a flow run: the pipeline calls it with its own)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings = rt.settings
    if not settings.anomaly.enabled:
        return AnomalySummary(flow="anomaly", skipped=True, reason="anomaly.enabled is false")
    res = score_new(rt.lake, rt.state, settings)
    d = res.to_dict()
    create_table_artifact(
        table=d["top"] or [{"series": "-", "note": "no point scored at or above the threshold"}],
        key=ARTIFACT_KEY,
        description=(
            f"**anomaly**: {res.scored} new point(s) of {res.series} series scored; "
            f"{len(res.anomalies)} at or above {settings.anomaly.threshold}."
        ),
    )
    for r in res.reset_series:
        logger.warning("detector state reset: %s", r)
    logger.info("anomaly: scored %d point(s) of %d series, %d anomalies", res.scored, res.series, len(res.anomalies))
    return AnomalySummary(
        flow="anomaly",
        series=res.series,
        scored=res.scored,
        new_series=res.new_series,
        anomalies=len(res.anomalies),
        top=d["top"],
        seconds=round(time.perf_counter() - t0, 3),
    )


if __name__ == "__main__":
    anomaly()

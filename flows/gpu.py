"""The gpu flow (every minute): one GPU tick — inventory, place what is queued, findings and advice.

The tick (``tasks.gpu.service.gpu_tick``) reads the devices (NVML, a DCGM exporter or the lake),
places queued work with the default strategy and launches it with its ``CUDA_VISIBLE_DEVICES``,
and writes ``gpu.allocated`` events and queue/findings gauges to the lake. The flow adds the
stale-run guard, a markdown artifact a person reads in the Prefect UI, and log lines for what needs
attention. No GPU here is a normal state: the artifact says so and the run completes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, nothing_to_do, stale_run
from tasks.gpu.service import GpuTick, gpu_tick

__all__ = ["ARTIFACT_KEY", "GpuSummary", "gpu", "gpu_stage"]

ARTIFACT_KEY = "gpu-tick"
DISABLED_HINT = "set gpu.enabled: true in cortex-perf.yaml (and gpu.inventory for fleets beyond this host)"


class GpuSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    now: str
    source: str
    status: str
    devices: int
    findings: list[dict[str, Any]]
    advice: list[dict[str, Any]]
    placement: dict[str, Any] | None
    queue: dict[str, int]
    seconds: float


@task(name="gpu-tick", cache_policy=NO_CACHE)
def tick(rt: Runtime, now: datetime, dry_run: bool) -> GpuTick:
    """One tick at ``now``. Not retried: a placement launches processes; the queue's reservations
    make a second pass safe anyway (a started task is no longer queued)."""
    return gpu_tick(rt.settings, rt.lake, rt.state, now, dry_run=dry_run)


@flow(name="gpu", description="GPU inventory and health, placement of queued GPU work, recommendations.")
def gpu(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    dry_run: bool = False,
    max_lateness_s: float | None = None,
) -> GpuSummary:
    if (skipped := stale_run("gpu", max_lateness_s)) is not None:
        return GpuSummary(**skipped)  # type: ignore[typeddict-item]
    return gpu_stage(load(config_path, overrides), dry_run=dry_run)


def gpu_stage(rt: Runtime, *, dry_run: bool = False) -> GpuSummary:
    """The gpu flow's work on a built runtime (the pipeline calls it with its own)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    if not rt.settings.gpu.enabled:
        idle = nothing_to_do("gpu", "gpu.enabled is false", hint=DISABLED_HINT, artifact_key=ARTIFACT_KEY, warn=False)
        return GpuSummary(**idle)  # type: ignore[typeddict-item]
    now = datetime.now(UTC).replace(microsecond=0)
    res = tick(rt, now, dry_run)
    create_markdown_artifact(markdown=res.markdown(), key=ARTIFACT_KEY, description="GPU tick: devices, queue, advice")
    for f in res.findings:
        if f.severity != "info":
            logger.warning("gpu %s: %s", f.severity, f.message)
    placed = [d for d in (res.placement.decisions if res.placement else []) if d.placed]
    logger.info("gpu: %s; %d device(s), %d placed, queue %s", res.inventory.status, len(res.inventory.devices),
                len(placed), dict(res.queue))  # fmt: skip
    return GpuSummary(flow="gpu", **res.summary(), seconds=round(time.perf_counter() - t0, 3))  # type: ignore[typeddict-item]


if __name__ == "__main__":
    gpu()

"""The collect flow: one tick over every configured source, written to the lake as one batch.

Two tasks, on purpose: "collect from the sources" (all of them concurrently, under one deadline,
inside a single task: a task per source would cost Prefect bookkeeping for every scrape, every
minute) and "write the batch" (retryable on its own: a re-sent batch is harmless in the lake).
The logic lives in ``tasks.sources`` and ``tasks.lake``; this module only wires them.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, stale_run
from tasks.config import Settings
from tasks.events import emit
from tasks.lake import Lake, Sample, WriteResult
from tasks.sources.runner import CollectResult, build_sources, collect_all

__all__ = ["CollectSummary", "collect", "collect_sources", "collect_stage", "write_batch"]

ARTIFACT_KEY = "collect-summary"


class CollectSummary(TypedDict, total=False):
    """What one collect run did (the flow's return value and the CLI's summary row)."""

    flow: str
    skipped: bool
    reason: str
    lake: str
    sources: int
    failed_sources: list[str]
    samples: int
    accepted: int
    rejected: int
    reject_reasons: list[str]
    new_series: int
    files: int
    seconds: float


@task(name="collect-sources", cache_policy=NO_CACHE)
def collect_sources(settings: Settings) -> CollectResult:
    """Every enabled source at once; a slow or failing source costs only its own samples."""
    sources = build_sources(settings)
    return collect_all(sources, timeout_s=settings.collect.source_timeout_s)


def _retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry storage hiccups (OSError: disk, network, object store), not refused data."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # pragma: no cover - no result to inspect: be safe and retry
        return True
    return isinstance(exc, OSError)


@task(
    name="write-batch",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_on_io_error,
    cache_policy=NO_CACHE,
)
def write_batch(lake: Lake, samples: list[Sample]) -> WriteResult:
    """One Parquet file per day partition; retrying is safe (identity = series + timestamp)."""
    return lake.write_samples(samples)


@task(name="record-collect-events", cache_policy=NO_CACHE)
def record_events(lake: Lake, result: CollectResult, summary: CollectSummary) -> int:
    """``source.failed`` per failing source, then ``metrics.collected`` with the counts."""
    for f in result.failures:
        emit(
            lake,
            "source.failed",
            f"cortex.source.{f.source}",
            {"source": f.source, "error": f.error, "timed_out": f.timed_out},
        )
    emit(lake, "metrics.collected", "cortex.flow.collect", dict(summary))
    return len(result.failures) + 1


def _artifact(result: CollectResult, summary: CollectSummary) -> None:
    failures = {f.source: f for f in result.failures}
    rows: list[dict[str, Any]] = []
    for name, seconds in sorted(result.durations.items()):
        f = failures.get(name)
        rows.append(
            {
                "source": name,
                "status": "timed out" if f and f.timed_out else ("failed" if f else "ok"),
                "seconds": round(seconds, 3),
                "error": f.error if f else "",
            }
        )
    for name, why in sorted(result.skipped.items()):
        rows.append({"source": name, "status": "skipped", "seconds": 0.0, "error": why})
    create_table_artifact(
        table=rows,
        key=ARTIFACT_KEY,
        description=(
            f"**collect**: {summary.get('accepted', 0)} samples written to `{summary.get('lake')}`, "
            f"{summary.get('rejected', 0)} rejected, {len(result.failures)} failed source(s)."
        ),
    )


@flow(name="collect", description="Collect every configured source once and write one batch to the lake.")
def collect(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    max_lateness_s: float | None = None,
) -> CollectSummary:
    """One collection tick. ``overrides`` are ``key=value`` settings (``lake.root=/tmp/lake``).

    ``max_lateness_s``: a scheduled run that starts later than this skips itself (stale catch-up).
    """
    if (skipped := stale_run("collect", max_lateness_s)) is not None:
        return CollectSummary(**skipped)  # type: ignore[typeddict-item]
    return collect_stage(load(config_path, overrides))


def collect_stage(rt: Runtime) -> CollectSummary:
    """The collect flow's work on a built runtime (inside a flow run: the pipeline calls it with its own)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings, lake = rt.settings, rt.lake
    result = collect_sources(settings)
    for f in result.failures:  # once per failure per tick, clearly
        logger.warning("source %r %s: %s", f.source, "timed out" if f.timed_out else "failed", f.error)
    for name, why in result.skipped.items():
        logger.info("source %r skipped: %s", name, why)
    written: WriteResult = write_batch(lake, result.samples)
    if written.rejected:
        logger.warning("%d sample(s) rejected by the lake, e.g.: %s", written.rejected, "; ".join(written.reasons[:3]))
    summary = CollectSummary(
        flow="collect",
        lake=lake.root,
        sources=len(result.durations),
        failed_sources=[f.source for f in result.failures],
        samples=len(result.samples),
        accepted=written.accepted,
        rejected=written.rejected,
        reject_reasons=written.reasons[:5],
        new_series=written.new_series,
        files=len(written.files),
        seconds=round(time.perf_counter() - t0, 3),
    )
    record_events(lake, result, summary)
    _artifact(result, summary)
    logger.info(
        "collected %d samples from %d source(s) (%d failed) into %s",
        written.accepted,
        summary["sources"],
        len(result.failures),
        lake.root,
    )
    return summary


if __name__ == "__main__":
    collect()

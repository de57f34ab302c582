"""The maintain flow: compaction, rollups (1m → 5m → 1h), retention — in that order.

Order matters: compaction first so rollups read one file per past day; rollups before retention so
raw samples are summarised before their partitions are dropped. Each step is one task (one
retryable unit); the work itself lives in ``tasks.lake.maintain``.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, stale_run
from tasks.events import emit
from tasks.lake import Lake

__all__ = ["MaintainSummary", "maintain", "maintain_stage"]

ARTIFACT_KEY = "maintain-summary"


class MaintainSummary(TypedDict, total=False):
    """What one maintain run did (the flow's return value)."""

    flow: str
    skipped: bool
    reason: str
    lake: str
    dry_run: bool
    compaction: dict[str, Any]
    rollups: dict[str, Any]
    retention: dict[str, Any]
    seconds: float


@task(name="compact", cache_policy=NO_CACHE)
def compact_lake(lake: Lake, min_files: int, dry_run: bool) -> dict[str, Any]:
    """Merge each partition's small files into one, keeping the last write per identity."""
    return lake.compact(min_files=min_files, dry_run=dry_run).to_dict()


@task(name="build-rollups", cache_policy=NO_CACHE)
def build_rollups(lake: Lake) -> dict[str, Any]:
    """Bring the 1m, 5m and 1h rollups up to date with the samples."""
    return lake.build_rollups().to_dict()


@task(name="apply-retention", cache_policy=NO_CACHE)
def apply_retention(lake: Lake, retention_days: dict[str, int], dry_run: bool) -> dict[str, Any]:
    """Drop partitions older than each table's retention."""
    return lake.apply_retention(retention_days, dry_run=dry_run).to_dict()


def _markdown(summary: MaintainSummary) -> str:
    c = summary.get("compaction", {})
    r = summary.get("rollups", {})
    t = summary.get("retention", {})
    dropped = t.get("partitions_dropped", {}) or {}
    rows = r.get("rows_written", {}) or {}
    lines = [
        f"# Lake maintenance{' (dry run)' if summary.get('dry_run') else ''}",
        "",
        f"Lake: `{summary.get('lake')}` · {summary.get('seconds', 0):.2f} s",
        "",
        "| step | result |",
        "|---|---|",
        (
            f"| compaction | {c.get('partitions', 0)} partition(s): {c.get('files_before', 0)} → "
            f"{c.get('files_after', 0)} files, {c.get('duplicates_dropped', 0)} duplicate(s) dropped, "
            f"{c.get('temp_files_removed', 0)} stale temp file(s) removed |"
        ),
        (
            f"| rollups | {r.get('partitions_rebuilt', 0)} partition(s) rebuilt; rows: "
            + (", ".join(f"{k} {v}" for k, v in rows.items()) or "none")
            + " |"
        ),
        (
            "| retention | "
            + (", ".join(f"{k}: {len(v)} day(s)" for k, v in dropped.items() if v) or "nothing to drop")
            + " |"
        ),
    ]
    return "\n".join(lines)


@flow(name="maintain", description="Lake maintenance: compaction, rollups, retention.")
def maintain(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    max_lateness_s: float | None = None,
    dry_run: bool = False,
) -> MaintainSummary:
    """Compact, roll up and enforce retention once. ``dry_run`` reports without changing files.

    Rollups are skipped in a dry run (building them is their only effect).
    """
    if (skipped := stale_run("maintain", max_lateness_s)) is not None:
        return MaintainSummary(**skipped)  # type: ignore[typeddict-item]
    return maintain_stage(load(config_path, overrides), dry_run=dry_run)


def maintain_stage(rt: Runtime, *, dry_run: bool = False) -> MaintainSummary:
    """The maintain flow's work on a built runtime (inside a flow run: the pipeline calls it with its own)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings, lake = rt.settings, rt.lake
    compaction = compact_lake(lake, settings.lake.compact_min_files, dry_run)
    rollups = {} if dry_run else build_rollups(lake)
    retention = apply_retention(lake, dict(settings.lake.retention_days), dry_run)
    summary = MaintainSummary(
        flow="maintain",
        lake=lake.root,
        dry_run=dry_run,
        compaction={k: v for k, v in compaction.items() if k != "details"},
        rollups=rollups,
        retention=retention,
        seconds=round(time.perf_counter() - t0, 3),
    )
    if not dry_run:
        emit(lake, "lake.compacted", "cortex.flow.maintain", {k: v for k, v in summary.items() if k != "flow"})
    create_markdown_artifact(markdown=_markdown(summary), key=ARTIFACT_KEY, description="Lake maintenance")
    logger.info(
        "maintenance: %s files → %s, rollup rows %s",
        compaction.get("files_before"),
        compaction.get("files_after"),
        rollups.get("rows_written", {}),
    )
    return summary


if __name__ == "__main__":
    maintain()

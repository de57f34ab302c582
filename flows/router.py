"""The router flow (every 15 min): retrain the learned routing model from recent outcomes,
backtest it against the live strategy on held-out outcomes, promote it only when it wins.

The work is ``tasks.routing.training.retrain_router``: outcomes from the lake (``router_outcomes``,
written in batches by the proxy), a time-ordered 80/20 split, the backtest, the registry. A
promotion is an action (``router.model`` in the ledger, ``action.applied`` in the lake) and a
``model.promoted`` event, as the forecast flow's; the proxy picks the new champion up on its next
registry check (``router.service.reload_s``), without a restart. The flow adds the stale-run
guard, a markdown artifact a person reads in the Prefect UI, and log lines.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, nothing_to_do, stale_run
from tasks.actuators import ActionLedger
from tasks.events import emit
from tasks.markdown import md_cell
from tasks.registry import ModelRegistry
from tasks.routing.training import RetrainReport, retrain_router

__all__ = ["ARTIFACT_KEY", "RouterSummary", "router", "router_stage"]

ARTIFACT_KEY = "router-model"
NO_POOLS_HINT = "add router.pools to cortex-perf.yaml and serve them with `cortex-perf router serve`"


class RouterSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    status: str
    model: str
    version: str | None
    previous: str | None
    outcomes: int
    promoted: bool
    backtest: dict[str, Any] | None
    champion_backtest: dict[str, Any] | None
    seconds: float


@task(name="router-retrain", cache_policy=NO_CACHE)
def retrain(rt: Runtime, now: datetime, dry_run: bool) -> RetrainReport:
    """One retrain at ``now``. Not retried: a second attempt would register a second challenger;
    the promotion itself is an action applied once per version anyway."""
    registry = ModelRegistry(rt.state, Path(rt.settings.data_dir) / "models")
    ledger = ActionLedger.from_settings(rt.settings)
    return retrain_router(rt.settings, rt.lake, registry, ledger, now, dry_run=dry_run)


@flow(name="router", description="Retrain the learned router model, backtest it, promote it only when it wins.")
def router(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    dry_run: bool = False,
    max_lateness_s: float | None = None,
) -> RouterSummary:
    if (skipped := stale_run("router", max_lateness_s)) is not None:
        return RouterSummary(**skipped)  # type: ignore[typeddict-item]
    return router_stage(load(config_path, overrides), dry_run=dry_run)


def router_stage(rt: Runtime, *, dry_run: bool = False) -> RouterSummary:
    """The router flow's work on a built runtime."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    if not rt.settings.router.pools:
        idle = nothing_to_do("router", "router.pools is empty", hint=NO_POOLS_HINT, artifact_key=ARTIFACT_KEY)
        return RouterSummary(**idle)  # type: ignore[typeddict-item]
    now = datetime.now(UTC).replace(microsecond=0)
    report = retrain(rt, now, dry_run)
    if report.promoted:
        emit(
            rt.lake,
            "model.promoted",
            f"model.{report.model}",
            {
                "model": report.model,
                "promoted": True,
                "challenger": report.version,
                "champion": report.previous,
                "reason": report.reason,
                "backtest": report.backtest.to_dict() if report.backtest else None,
            },
        )
    create_markdown_artifact(markdown=markdown(report), key=ARTIFACT_KEY, description="Router model: retrain, backtest")
    log = logger.warning if report.status == "failed" else logger.info
    log("router model %s: %s (%s)", report.model, report.status, report.reason)
    return RouterSummary(
        flow="router",
        skipped=report.status == "skipped",
        reason=report.reason,
        status=report.status,
        model=report.model,
        version=report.version,
        previous=report.previous,
        outcomes=report.outcomes,
        promoted=report.promoted,
        backtest=report.backtest.to_dict() if report.backtest else None,
        champion_backtest=report.champion_backtest.to_dict() if report.champion_backtest else None,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _g(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def markdown(report: RetrainReport) -> str:
    """The run as a person reads it: what happened, why, and the backtest's numbers."""
    lines = [
        f"## Router model `{md_cell(report.model)}`: {report.status}",
        "",
        md_cell(report.reason),
        "",
        f"Outcomes: {report.outcomes} (fitted on {report.train_rows}, held out {report.held_rows}); "
        f"version: {md_cell(report.version or '—')}; champion before: {md_cell(report.previous or 'none')}.",
    ]
    bt, champ = report.backtest, report.champion_backtest
    if bt is not None:
        lines += [
            "",
            "| held-out | live strategy | challenger | champion |",
            "|---|---|---|---|",
            f"| cost per query (ms) | {_g(bt.live_cost)} | {_g(bt.model_cost)} "
            f"| {_g(champ.model_cost if champ else None)} |",
            f"| latency error, log (EWMA for live) | {_g(bt.ewma_mae_log)} | {_g(bt.model_mae_log)} "
            f"| {_g(champ.model_mae_log if champ else None)} |",
            f"| picks the live choice | 100 % | {bt.agree * 100:.1f} % | {_g(champ.agree * 100 if champ else None)} |",
            "",
            "Challenger's picks per target: "
            + ", ".join(f"{md_cell(k)} {v}" for k, v in sorted(bt.per_target.items()))
            + f" ({bt.known * 100:.1f} % of queries with a known outcome for the pick).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    router()

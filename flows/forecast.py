"""The forecast flow (hourly): retrain each model lineage, keep the better model, write forecasts.

Series are grouped by metric (``tasks.forecasting.data.group_series``) and each group is one
``retrain-group`` task; groups run in parallel (two at a time: this is a 2-core target and XGBoost
uses both cores itself). The work — backtest, registry decision, forecasting — is
``tasks.forecasting.retrain.retrain_group``; this module only wires it, records events, writes the
forecasts to the lake and leaves a table artifact of backtest scores per model.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, TypedDict

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows._common import Runtime, load, stale_run
from tasks.config import Settings
from tasks.events import emit
from tasks.forecasting.data import HistoryGroup, forecast_rows, group_series, load_history
from tasks.forecasting.registry import ModelRegistry
from tasks.forecasting.retrain import RetrainResult, retrain_group
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.reports import format_cell
from tasks.timeparse import parse_duration

__all__ = ["ForecastSummary", "forecast", "forecast_stage"]

ARTIFACT_KEY = "forecast-backtest"


class ForecastSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    groups: int
    series: int
    promoted: list[str]
    forecast_rows: int
    failed: list[str]
    results: list[dict[str, Any]]
    seconds: float


@task(name="load-history", cache_policy=NO_CACHE)
def load_groups(lake: Lake, settings: Settings) -> list[HistoryGroup]:
    """Bucketed history of every configured series, grouped into training groups."""
    cfg = settings.forecast
    step = parse_duration(cfg.step)
    end = S.now_utc()
    end = end - timedelta(seconds=end.timestamp() % step.total_seconds())  # complete buckets only
    history = load_history(lake, cfg.selectors, end - parse_duration(cfg.lookback), end, step)
    return group_series(history, cfg.max_series_per_group)


@task(name="retrain-group", cache_policy=NO_CACHE)
def retrain(group: HistoryGroup, settings: Settings) -> RetrainResult:
    """Backtest, register a challenger, promote it if it wins, forecast with the champion."""
    cfg = settings.forecast
    return retrain_group(
        group.name,
        group.history,
        ModelRegistry.from_settings(settings),
        freq=parse_duration(cfg.step),
        horizon=cfg.horizon,
        model=cfg.model,
        baselines=list(cfg.baselines),
        season=cfg.season,
        min_points=cfg.min_points,
        min_improvement=cfg.min_improvement,
    )


@task(name="write-forecasts", cache_policy=NO_CACHE)
def write_forecasts(lake: Lake, results: list[RetrainResult]) -> int:
    """All groups' forecasts as one batch of the lake's ``forecasts`` table."""
    issued_at = S.now_utc()
    parts = []
    for r in results:
        if r.forecasts is None or not r.forecasts.height:
            continue
        for (model, version), part in r.forecasts.group_by("model", "version", maintain_order=True):
            parts.append(forecast_rows(part, lake, issued_at=issued_at, model=str(model), version=str(version)))
    if not parts:
        return 0
    return lake.write_rows(S.FORECASTS, pl.concat(parts)).accepted


def _artifact(results: list[RetrainResult]) -> None:
    """The backtest table people read in the UI: scores rounded to 4 significant digits (the raw
    16-digit floats stay in the flow's return value and the registry)."""
    rows: list[dict[str, Any]] = []
    for r in results:
        for model, sc in sorted(r.scores.items()):
            rows.append(
                {
                    "group": r.name,
                    "model": model,
                    **{
                        col: format_cell(sc.get(key))
                        for col, key in (
                            ("mase_mean", "mase_mean"),
                            ("mase_median", "mase_median"),
                            ("smape_mean", "smape_mean"),
                            ("coverage_p80", "coverage_p80_mean"),
                            ("fit_s", "fit_s"),
                        )
                    },
                }
            )
    promoted = [r.name for r in results if r.decision and r.decision.get("promoted")]
    create_table_artifact(
        table=rows or [{"group": "-", "model": "-", "note": "no series with enough history"}],
        key=ARTIFACT_KEY,
        description=(
            f"**forecast**: {len(results)} group(s); held-out backtest (last 20 %, rolling origin) per model. "
            f"Promoted: {', '.join(promoted) or 'none'}."
        ),
    )


@flow(
    name="forecast",
    description="Retrain forecasters (backtested), promote better challengers, write forecasts to the lake.",
    task_runner=ThreadPoolTaskRunner(max_workers=2),  # type: ignore[arg-type]
)
def forecast(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    max_lateness_s: float | None = None,
) -> ForecastSummary:
    """One retrain + forecast round over every configured series."""
    if (skipped := stale_run("forecast", max_lateness_s)) is not None:
        return ForecastSummary(**skipped)  # type: ignore[typeddict-item]
    return forecast_stage(load(config_path, overrides))


def forecast_stage(rt: Runtime) -> ForecastSummary:
    """The forecast flow's work on a built runtime (inside a flow run: the pipeline calls it with its
    own; its retrain tasks run on that flow run's task runner)."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings, lake = rt.settings, rt.lake
    if not settings.forecast.enabled:
        return ForecastSummary(flow="forecast", skipped=True, reason="forecast.enabled is false")
    groups = load_groups(lake, settings)
    futures = [retrain.submit(g, settings) for g in groups]
    results: list[RetrainResult] = []
    failed: list[str] = []
    for g, fut in zip(groups, futures, strict=True):
        try:
            results.append(fut.result())
        except Exception as exc:  # one group's failure must not lose the others' forecasts
            logger.error("group %s failed: %s: %s", g.name, type(exc).__name__, exc)
            failed.append(g.name)
    for r in results:
        if r.error:
            logger.warning("group %s: %s", r.name, r.error)
        if r.decision and r.decision.get("promoted"):
            emit(lake, "model.promoted", f"model.{r.name}", {"model": r.name, **r.decision})
    rows = write_forecasts(lake, results)
    _artifact(results)
    summary = ForecastSummary(
        flow="forecast",
        groups=len(groups),
        series=sum(r.series for r in results),
        promoted=[r.name for r in results if r.decision and r.decision.get("promoted")],
        forecast_rows=rows,
        failed=failed + [r.name for r in results if r.error],
        results=[r.to_dict() for r in results],
        seconds=round(time.perf_counter() - t0, 3),
    )
    logger.info(
        "forecast: %d group(s), %d series, %d forecast rows, promoted: %s",
        summary["groups"],
        summary["series"],
        rows,
        ", ".join(summary["promoted"]) or "none",
    )
    return summary


if __name__ == "__main__":
    forecast()

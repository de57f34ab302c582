"""``cortex-perf forecast …`` and ``cortex-perf anomaly …``: the CLI faces of forecasting and
anomaly detection. Parsing and printing only; the work is in ``tasks.forecasting`` and
``tasks.anomaly``. Mounted on the app by ``flows.cli``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    CliError,
    announce_prefect,
    cli_state,
    console,
    err_console,
    fmt_value,
    handle_errors,
    print_json,
)
from flows.cli.output import DataTable, escape, styled
from tasks.timeparse import parse_duration

forecast_app = typer.Typer(
    help="Train, inspect and backtest the forecasters (XGBoost global model + statsmodels baselines).",
    no_args_is_help=True,
)
anomaly_app = typer.Typer(help="Score series for anomalies with the causal detector.", no_args_is_help=True)


@forecast_app.command("train")
@handle_errors
def forecast_train(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the groups and series that would be trained; train nothing.")
    ] = False,
) -> None:
    """Retrain every configured model now (the hourly `forecast` flow): backtest, promote, forecast."""
    st = cli_state(ctx)
    settings = st.settings()
    if dry_run:
        from tasks.forecasting.data import group_series, load_history  # lazy (start-up): polars, xgboost
        from tasks.lake.schema import now_utc  # lazy (start-up): polars

        cfg = settings.forecast
        end = now_utc()
        history = load_history(
            st.lake(),
            cfg.selectors,
            end - parse_duration(cfg.lookback),
            end,
            parse_duration(cfg.step),
        )
        t = DataTable(title=f"would retrain ({cfg.model}; dry run: nothing trained)")
        for col in ("group", "series", "points"):
            t.add_column(col, justify="right" if col != "group" else "left")
        for g in group_series(history, cfg.max_series_per_group):
            t.add_row(g.name, str(g.n_series), f"{g.history.height:,}")
        console.print(t)
        return
    announce_prefect()
    from flows.forecast import forecast  # lazy (start-up): Prefect, after the app set its environment

    with st.flow_inputs() as overrides:
        summary = forecast(config_path=st.config_arg, overrides=overrides)
    t = DataTable(title="forecast: held-out backtest (last 20 %, rolling origin)")
    for col in ("group", "model", "MASE mean", "MASE median", "sMAPE", "cov p10–p90", "decision"):
        t.add_column(col, justify="left" if col in ("group", "model", "decision") else "right")
    for r in summary.get("results", []):
        decision = r.get("decision") or {}
        for model, sc in sorted(r.get("scores", {}).items()):
            mark = ""
            if model == r.get("model"):
                mark = ("promoted " if decision.get("promoted") else "kept ") + str(r.get("champion") or "")
            t.add_row(
                r["name"],
                model,
                fmt_value(sc.get("mase_mean")),
                fmt_value(sc.get("mase_median")),
                fmt_value(sc.get("smape_mean")),
                fmt_value(sc.get("coverage_p80_mean")),
                mark,
            )
        if r.get("error"):
            t.add_row(r["name"], "-", "", "", "", "", styled(r["error"], "yellow"))
    console.print(t)
    console.print(f"{summary.get('forecast_rows', 0):,} forecast rows written to the lake's `forecasts` table.")


@forecast_app.command("show")
@handle_errors
def forecast_show(
    ctx: typer.Context,
    series: Annotated[str, typer.Argument(help='Selector, e.g. host_cpu_utilization_ratio{host="web-1"}.')],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(help="Rows to print.", min=1)] = 48,
) -> None:
    """The newest forecast (p10/p50/p90/p99 per target time) of the matching series."""
    from tasks.forecasting.data import named_latest_forecasts  # lazy (start-up): polars, xgboost
    from tasks.lake.schema import now_utc  # lazy (start-up): polars

    df = named_latest_forecasts(cli_state(ctx).lake(), series, now=now_utc())
    if not df.height:
        raise CliError(f"no forecasts for {series} in the last 2 days (run `cortex-perf forecast train`)")
    if as_json:
        print_json(json.loads(df.drop("series_id", "labels").write_json()))
        return
    t = DataTable(title=f"forecast for {series}")
    for col in ("series", "target (UTC)", "step", "p10", "p50", "p90", "p99", "model", "issued"):
        t.add_column(col, justify="right" if col in ("step", "p10", "p50", "p90", "p99") else "left")
    for row in df.head(limit).iter_rows(named=True):
        t.add_row(
            row["series"],
            row["ts"].strftime("%Y-%m-%d %H:%M"),
            str(row["step"]),
            *(fmt_value(row[c]) for c in ("p10", "p50", "p90", "p99")),
            f"{row['model']} {row['version']}",
            row["issued_at"].strftime("%H:%M"),
        )
    console.print(t)


@forecast_app.command("history")
@handle_errors
def forecast_history(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="One model lineage (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every registered model version: status (champion/challenger/retired/rejected), score, window."""
    from tasks.forecasting.registry import ModelRegistry  # lazy (start-up): polars, duckdb, xgboost

    versions = ModelRegistry.from_settings(cli_state(ctx).settings()).history(model)
    if as_json:
        print_json([v.to_dict() for v in versions])
        return
    if not versions:
        raise CliError("no model versions yet (run `cortex-perf forecast train`)")
    t = DataTable(title="model registry")
    for col in ("model", "version", "kind", "status", "held-out MASE", "trained on", "created", "note"):
        t.add_column(col, overflow="fold")
    for v in versions:
        window = f"{v.train_start:%m-%d %H:%M} → {v.train_end:%m-%d %H:%M}" if v.train_start and v.train_end else ""
        style = "bold green" if v.status == "champion" else None
        t.add_row(
            v.name,
            v.version,
            v.kind,
            v.status,
            fmt_value(v.score),
            window,
            f"{v.created_at:%m-%d %H:%M}",
            v.note or "",
            style=style,
        )
    console.print(t)


@forecast_app.command("rollback")
@handle_errors
def forecast_rollback(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model lineage to roll back.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be restored; change nothing.")] = False,
) -> None:
    """Retire the current champion and restore the previous one."""
    from tasks.forecasting.registry import ModelRegistry  # lazy (start-up): polars, duckdb, xgboost

    reg = ModelRegistry.from_settings(cli_state(ctx).settings())
    current = reg.champion(model)
    if current is None:
        raise CliError(f"model {model!r} has no champion")
    if dry_run:
        earlier = [v for v in reg.history(model) if v.status == "retired" and v.promoted_at and v.seq < current.seq]
        target = earlier[0].version if earlier else None
        console.print(
            f"would retire {model} {current.version} and restore {target or '(nothing: no earlier champion)'}",
            markup=False,
        )
        return
    restored = reg.rollback(model)
    console.print(f"{model}: {current.version} retired, {restored.version} is champion again", markup=False)


@forecast_app.command("backtest")
@handle_errors
def forecast_backtest(
    file: Annotated[Path, typer.Argument(help="CSV with one series (a time column and a value column).")],
    time_col: Annotated[str, typer.Option("--time-col", help="Timestamp column (ISO 8601 or epoch).")],
    value_col: Annotated[str, typer.Option("--value-col", help="Value column.")],
    horizon: Annotated[int, typer.Option(help="Steps ahead to forecast at each origin.", min=1)] = 12,
    season: Annotated[
        int | None, typer.Option(help="Season length in steps (default: daily, from the sampling interval).", min=2)
    ] = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only these models (repeatable; default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Backtest every model on your own CSV series: last 20 % held out, rolling origin, MASE/sMAPE/coverage."""
    from tasks.forecasting.backtest import backtest_csv, render_backtest_table  # lazy (start-up): polars, statsmodels

    if not file.exists():
        raise CliError(f"{file}: no such file")
    result = backtest_csv(file, time_col, value_col, horizon=horizon, season=season, models=models or None)
    if as_json:
        print_json(result)
        return
    console.print(render_backtest_table(result))


@anomaly_app.command("detect")
@handle_errors
def anomaly_detect(
    paths: Annotated[list[Path], typer.Argument(help="CSV files or folders (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; each input's relative path is kept.")],
    time_col: Annotated[str, typer.Option("--time-col", help="Timestamp column.")] = "timestamp",
    value_col: Annotated[str, typer.Option("--value-col", help="Value column.")] = "value",
    warmup: Annotated[
        str,
        typer.Option(
            "--warmup",
            help="Rows the detector learns before it scores: a number, or 'nab' (NAB's probationary period: "
            "15 % of each file's rows, at most 750, as the NAB benchmark gives every detector).",
        ),
    ] = "nab",
    sort: Annotated[
        bool,
        typer.Option(
            "--sort", help="Score rows in time order (default: file order, warning when the clock steps back)."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the inputs and list what would be written; write nothing.")
    ] = False,
) -> None:
    """Score every CSV with the causal detector; writes timestamp,value,anomaly_score (NAB's format)."""
    from tasks.anomaly.cli_detect import detect_paths, parse_warmup  # lazy (start-up): numpy

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CliError(f"no such file or folder: {', '.join(missing)}")
    rows_warmup = parse_warmup(warmup)
    if dry_run:
        files = [p for p in paths if p.is_file()] + [f for p in paths if p.is_dir() for f in sorted(p.rglob("*.csv"))]
        for f in files:
            console.print(f"would score {f}", markup=False)
        console.print(f"{len(files)} file(s); nothing written (dry run)")
        return
    summary = detect_paths(
        paths, time_col=time_col, value_col=value_col, out=out, warmup=rows_warmup, order="time" if sort else "file"
    )
    for r in summary.files:
        for w in r.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    t = DataTable(title=f"anomaly scores written under {out}")
    for col in ("input", "rows", "warm-up", "max score", "at", "alarms"):
        t.add_column(col, justify="left" if col in ("input", "at") else "right", overflow="fold")
    for r in summary.files:
        t.add_row(
            r.source,
            f"{r.rows:,}",
            f"{r.warmup:,}",
            f"{r.max_score:.3f}",
            r.max_score_at,
            str(r.alarms),
        )
    console.print(t)

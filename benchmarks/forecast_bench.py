"""Forecast benchmark: XGBoost vs the statistical baselines on NAB's infrastructure series, and retrain speed.

Run ``uv run python benchmarks/forecast_bench.py`` (full, several minutes) or ``--quick`` (a CI smoke
run under a minute: three series, origins strided, 100 synthetic series). ``--json`` makes the last
output line one JSON object of the figures.

1. **Accuracy** on the NAB series an infrastructure team would forecast (``realAWSCloudwatch/*``,
   ``realKnownCause/nyc_taxi.csv``, ``cpu_utilization_asg_misconfiguration.csv``,
   ``ec2_request_latency_system_failure.csv``) with the project's one protocol,
   :func:`tasks.forecasting.backtest.backtest`: each file on its own grid, last 20 % held out,
   rolling origin at every test position, h = 12. Reported per model: MASE over steps 1..12 and
   at step 1 (the h = 1 figure, from the same origins), sMAPE, mean and median across series, and
   fit + predict seconds. Files sharing a grid and season are backtested together (the global
   model is trained on all of them), the others alone.
2. **Retrain speed**: XGBoost ``fit`` on 1,000 synthetic series x 30 days at 5 minutes (8.64 M
   points), in a child process so that its peak RSS (``VmHWM``) is the fit's own.

``--select`` runs part 1 on the *training parts only* (each series' first 80 %, split again
80/20): the inner validation used to choose XGBoost's settings without looking at the test part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy.signal import lfilter  # noqa: E402

from tasks.forecasting import MODELS  # noqa: E402
from tasks.forecasting.backtest import backtest, read_series_csv, split_index  # noqa: E402
from tasks.forecasting.grid import default_season, infer_freq, regularize  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
NAB = DATASETS / "nab" / "data"
KNOWN_CAUSE = (
    "realKnownCause/nyc_taxi.csv",
    "realKnownCause/cpu_utilization_asg_misconfiguration.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
)
QUICK_FILES = (
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
)
HORIZON = 12
XGB = "xgboost"


def nab_files(quick: bool) -> list[str]:
    if quick:
        return list(QUICK_FILES)
    aws = sorted(f"realAWSCloudwatch/{p.name}" for p in (NAB / "realAWSCloudwatch").glob("*.csv"))
    return aws + list(KNOWN_CAUSE)


def load_groups(files: list[str], inner: bool) -> list[tuple[timedelta, int, pl.DataFrame]]:
    """NAB files as history frames grouped by (grid, season); ``inner`` keeps only training parts."""
    groups: dict[tuple[timedelta, int], list[pl.DataFrame]] = {}
    for rel in files:
        frame = read_series_csv(NAB / rel, "timestamp", "value").with_columns(pl.lit(rel).alias("series"))
        freq = infer_freq(frame)
        grid, _ = regularize(frame, freq)
        if inner:
            grid = grid.head(split_index(len(grid)))
        season = default_season(freq, split_index(len(grid)))
        groups.setdefault((freq, season), []).append(frame if not inner else grid)
    return [(freq, season, pl.concat(parts)) for (freq, season), parts in groups.items()]


def accuracy(
    files: list[str], inner: bool, stride: int, xgb_params: dict[str, Any], models: list[str]
) -> tuple[pl.DataFrame, dict]:
    """Backtest every model on every group; per-series rows of all groups and timings per model."""
    per_series: list[pl.DataFrame] = []
    timing: dict[str, list[float]] = {}
    grid = {"origins": 0, "interpolated": 0, "duplicates": 0, "points": 0}
    groups = load_groups(files, inner)
    for freq, season, frame in groups:
        result = backtest(
            frame, models, horizon=HORIZON, season=season, freq=freq, stride=stride, params={XGB: xgb_params}
        )
        for name, message in result.errors.items():
            print(f"  {name}: {message}", file=sys.stderr)
        per_series.append(result.per_series.with_columns(pl.lit(season).alias("season")))
        grid["origins"] += result.origins
        grid["interpolated"] += result.grid.interpolated
        grid["duplicates"] += result.grid.duplicates
        grid["points"] += result.grid.points
        for row in result.summary.iter_rows(named=True):
            t = timing.setdefault(row["model"], [0.0, 0.0])
            t[0] += row["fit_s"]
            t[1] += row["predict_s"]
    return pl.concat(per_series, how="diagonal"), {"timing": timing, "groups": len(groups), "grid": grid}


def summarise(per_series: pl.DataFrame, timing: dict[str, list[float]]) -> pl.DataFrame:
    return (
        per_series.group_by("model")
        .agg(
            pl.len().alias("series"),
            pl.col("mase").median().alias("mase_h12_median"),
            pl.col("mase").mean().alias("mase_h12_mean"),
            pl.col("mase_step1").median().alias("mase_h1_median"),
            pl.col("mase_step1").mean().alias("mase_h1_mean"),
            pl.col("smape").median().alias("smape_median"),
            pl.col("smape").mean().alias("smape_mean"),
            pl.col("coverage_p80").mean().alias("coverage_p80"),
            pl.col("coverage_p90").mean().alias("coverage_p90"),
        )
        .with_columns(
            pl.col("model").replace_strict({m: t[0] + t[1] for m, t in timing.items()}).alias("fit_predict_s")
        )
        .sort("mase_h12_median")
    )


def synthetic_frame(n_series: int, days: int, seed: int = 7) -> pl.DataFrame:
    """Fleet-like 5-minute series: level, daily cycle, weekday effect, AR(1) noise, occasional spikes."""
    rng = np.random.default_rng(seed)
    n = days * 288
    t = np.arange(n)
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ys = np.empty((n_series, n))
    for i in range(n_series):
        level = rng.uniform(5, 500)
        amp = level * rng.uniform(0.05, 0.5)
        phase = rng.uniform(0, 2 * np.pi)
        weekend = 1 - 0.3 * rng.random() * (((t // 288) + 0) % 7 >= 5)
        noise = lfilter([1.0], [1.0, -0.7], rng.normal(0, level * 0.05, n))  # AR(1)
        spikes = (rng.random(n) < 0.002) * rng.exponential(level * 0.5, n)
        ys[i] = np.maximum(level + amp * np.sin(2 * np.pi * t / 288 + phase) * weekend + noise + spikes, 0)
    return pl.DataFrame(
        {
            "series": pl.Series(np.repeat([f"s{i:04d}" for i in range(n_series)], n), dtype=pl.String),
            "ts": pl.Series(np.tile(start + t * 300_000, n_series), dtype=pl.Int64)
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC"),
            "y": ys.ravel(),
        }
    )


def vm_hwm_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def retrain_child(n_series: int, days: int) -> dict[str, Any]:
    """Runs in a child process: generate, then time ``XGBoostForecaster.fit``; peak RSS of the process."""
    from tasks.forecasting import get_model

    frame = synthetic_frame(n_series, days)
    before = vm_hwm_mb()
    model = get_model(XGB)
    t0 = time.perf_counter()
    model.fit(frame, freq=timedelta(minutes=5), season=288)
    fit_s = time.perf_counter() - t0
    return {
        "series": n_series,
        "points": frame.height,
        "fit_s": round(fit_s, 2),
        "peak_rss_mb": round(vm_hwm_mb(), 1),
        "rss_before_fit_mb": round(before, 1),
        **model.train_info,  # type: ignore[attr-defined]
    }


def retrain(n_series: int, days: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--retrain-child", str(n_series), str(days)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(v: Any, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small CI smoke run (< 60 s)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object of the figures")
    parser.add_argument("--select", action="store_true", help="inner validation on the training parts only")
    parser.add_argument("--stride", type=int, default=None, help="origin stride (default 1; 6 with --quick)")
    parser.add_argument("--no-retrain", action="store_true", help="skip the retrain-speed part")
    parser.add_argument("--xgb", default="{}", help="JSON of XGBoost constructor parameters (for --select)")
    parser.add_argument("--models", default=None, help="comma-separated model names (default: all)")
    parser.add_argument("--retrain-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.retrain_child:
        print(json.dumps(retrain_child(*args.retrain_child)))
        return

    stream = sys.stderr if args.json else sys.stdout
    console = Console(stderr=args.json, width=None if stream.isatty() else 150)  # full series names in logs
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "quick": args.quick,
        "select": args.select,
    }
    stride = args.stride or (6 if args.quick else 1)
    xgb_params = json.loads(args.xgb)
    if NAB.is_dir():
        files = nab_files(args.quick)
        t0 = time.perf_counter()
        models = args.models.split(",") if args.models else list(MODELS)
        per_series, info = accuracy(files, args.select, stride, xgb_params, models)
        summary = summarise(per_series, info["timing"])
        figures["nab_seconds"] = round(time.perf_counter() - t0, 1)
        table = Table(
            title=f"NAB {'inner validation (training parts)' if args.select else 'held-out 20 %'}: "
            f"{per_series['series'].n_unique()} series, h={HORIZON}, origin stride {stride}",
            caption=f"{info['grid']['origins']:,} origins; grid: {info['grid']['interpolated']} points interpolated, "
            f"{info['grid']['duplicates']} duplicates averaged of {info['grid']['points']:,}",
        )
        for col in ("model", "MASE h12 med", "MASE h12 mean", "MASE h1 med", "MASE h1 mean", "sMAPE med", "sMAPE mean"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for col in ("cov p10–p90", "cov ≤p90", "fit+predict s"):
            table.add_column(col, justify="right")
        for r in summary.iter_rows(named=True):
            table.add_row(
                r["model"],
                fmt(r["mase_h12_median"]),
                fmt(r["mase_h12_mean"]),
                fmt(r["mase_h1_median"]),
                fmt(r["mase_h1_mean"]),
                fmt(r["smape_median"], ".1f"),
                fmt(r["smape_mean"], ".1f"),
                fmt(r["coverage_p80"], ".2f"),
                fmt(r["coverage_p90"], ".2f"),
                fmt(r["fit_predict_s"], ".1f"),
            )
        console.print(table)
        per_model = {r["model"]: r for r in summary.iter_rows(named=True)}
        baselines = {m: r for m, r in per_model.items() if m != XGB}
        if not baselines or XGB not in per_model:
            console.print(table)
            print(json.dumps({m: r["mase_h12_median"] for m, r in per_model.items()}))
            return
        best = min(baselines, key=lambda m: baselines[m]["mase_h12_median"])
        xgb_row = per_model[XGB]
        figures |= {
            "series": per_series["series"].n_unique(),
            "horizon": HORIZON,
            "stride": stride,
            "grid": info["grid"],
            "xgb_median_mase_h12": round(xgb_row["mase_h12_median"], 4),
            "xgb_mean_mase_h12": round(xgb_row["mase_h12_mean"], 4),
            "xgb_median_mase_h1": round(xgb_row["mase_h1_median"], 4),
            "best_baseline": best,
            "best_baseline_median_mase_h12": round(baselines[best]["mase_h12_median"], 4),
            "best_baseline_median_mase_h1": round(min(r["mase_h1_median"] for r in baselines.values()), 4),
            "mase_ratio_vs_best": round(xgb_row["mase_h12_median"] / baselines[best]["mase_h12_median"], 4),
            "models": {
                m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "model"}
                for m, r in per_model.items()
            },
        }
        ratio = figures["mase_ratio_vs_best"]
        console.print(
            f"XGBoost median MASE h12 {figures['xgb_median_mase_h12']:.3f} vs best baseline {best} "
            f"{figures['best_baseline_median_mase_h12']:.3f}: ratio {ratio:.3f} (target ≤ 0.9) "
            f"{'[green]met[/green]' if ratio <= 0.9 else '[red]not met[/red]'}"
        )
        wide = per_series.pivot(on="model", index="series", values="mase").sort("series")
        detail = Table(title="MASE h12 per series")
        for col in wide.columns:
            detail.add_column(col, justify="left" if col == "series" else "right")
        for r in wide.iter_rows():
            detail.add_row(str(r[0]).split("/")[-1].removesuffix(".csv"), *[fmt(v) for v in r[1:]])
        console.print(detail)
    else:
        console.print(f"[yellow]{DATASETS} is absent: NAB accuracy part skipped, synthetic retrain only[/yellow]")
        figures["nab"] = "absent"

    if not args.no_retrain:
        n_series, days = (100, 7) if args.quick else (1000, 30)
        rt = retrain(n_series, days)
        key = f"retrain_{n_series}x{days}d"
        figures[f"{key}_s"] = rt["fit_s"]
        figures["retrain_peak_rss_mb"] = rt["peak_rss_mb"]
        figures["retrain"] = rt
        console.print(
            f"Retrain {n_series} series x {days} days at 5 min ({rt['points']:,} points): fit {rt['fit_s']:.1f} s "
            f"(target ≤ 60 s), peak RSS {rt['peak_rss_mb']:.0f} MB (target ≤ 4096 MB; "
            f"{rt['rss_before_fit_mb']:.0f} MB before fit), {rt['train_rows']:,} training rows, "
            f"{rt['best_iteration'] + 1} rounds"
        )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""The rolling-origin backtest: the one protocol every forecast figure in this project comes from.

Protocol (issue 3), applied identically to every model in a run:

1. **Grid.** Each series is put on a regular grid (:func:`tasks.forecasting.grid.regularize`:
   duplicates averaged, gaps interpolated — and counted in the result's ``grid`` report).
2. **Split.** Per series, the first ``floor(0.8 n)`` points are the training part, the rest the
   test part. Every parameter, scaler and model choice (season included, when inferred) comes from
   the training part only.
3. **Fit** each model once on the training parts of all series.
4. **Roll.** At each origin ``o`` of the test part — every ``stride``-th position from the split
   to ``n - h`` (so every origin has all ``h`` actuals) — the model sees ``y[:o]`` (state may roll
   forward, parameters are not refitted) and forecasts ``y[o:o+h]``. The origins are the same for
   every model.
5. **Score** per series: MASE = MAE over all origins and steps 1..h divided by the in-sample
   seasonal-naive MAE of the training part (lag-1 naive when the training part is not longer than
   a season); ``mase_step1`` the same for step 1 only (the h = 1 figure); sMAPE; pinball loss per
   quantile (series units) and their mean divided by the MASE scale (``pinball``, scale-free);
   interval coverage ``coverage_p80`` (actual within p10..p90) and ``coverage_p90`` (actual ≤ p90).
   Aggregates: mean and median across series (NaN — a constant training series — left out).

Models that implement :class:`tasks.forecasting.panel.OriginForecaster` are scored through their
vectorised ``predict_origins`` (proven equal to per-origin ``predict`` by the tests); any other
:class:`~tasks.forecasting.base.Forecaster` gets one ``predict`` call per origin with a history
frame truncated at that origin, which is the protocol spelled out literally.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.table import Table
from rich.text import Text

from tasks.forecasting import MODELS, get_model
from tasks.forecasting.base import QUANTILE_COLUMNS, QUANTILES, Forecaster, NotEnoughHistory
from tasks.forecasting.grid import GridReport, default_season, infer_freq, regularize
from tasks.forecasting.metrics import coverage_p80, coverage_p90, mase, mase_scale, pinball, smape
from tasks.forecasting.panel import OriginForecaster, Panel

TEST_FRACTION = 0.2


def split_index(n: int) -> int:
    """Length of the training part of a series of ``n`` points (the first 80 %)."""
    return math.floor(n * (1 - TEST_FRACTION))


@dataclass
class BacktestResult:
    """Per-series and aggregated scores of one backtest run (see the module docstring)."""

    per_series: pl.DataFrame
    summary: pl.DataFrame
    horizon: int
    season: int
    freq: timedelta
    stride: int
    origins: int
    grid: GridReport
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"models": {NAME: {"mase": …, …}}, "series": n, "horizon": h, "season": s, …}``."""
        models: dict[str, Any] = {}
        for row in self.summary.iter_rows(named=True):
            models[row["model"]] = {
                "mase": _num(row["mase_mean"]),
                "mase_median": _num(row["mase_median"]),
                "mase_step1": _num(row["mase_step1_mean"]),
                "mase_step1_median": _num(row["mase_step1_median"]),
                "smape": _num(row["smape_mean"]),
                "smape_median": _num(row["smape_median"]),
                "coverage_p80": _num(row["coverage_p80"]),
                "coverage_p90": _num(row["coverage_p90"]),
                "pinball": _num(row["pinball"]),
                "fit_s": _num(row["fit_s"]),
                "predict_s": _num(row["predict_s"]),
            }
        for name, message in self.errors.items():
            models[name] = {"error": message}
        return {
            "models": models,
            "series": len(self.grid.series),
            "horizon": self.horizon,
            "season": self.season,
            "freq_s": self.freq.total_seconds(),
            "test_fraction": TEST_FRACTION,
            "stride": self.stride,
            "origins": self.origins,
            "grid": self.grid.to_dict(),
        }


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else round(f, 6)


def _panel_slice(panel: Panel, stops: Sequence[int]) -> Panel:
    return Panel(panel.names, panel.start_ms, [v[:s] for v, s in zip(panel.values, stops, strict=True)], panel.freq_ms)


def panel_frame(panel: Panel, rows: Sequence[int] | None = None) -> pl.DataFrame:
    """History frame of (some of) a panel's series."""
    idx = range(len(panel.names)) if rows is None else rows
    parts = []
    for i in idx:
        n = len(panel.values[i])
        parts.append(
            pl.DataFrame(
                {
                    "series": [panel.names[i]] * n,
                    "ts": pl.Series(int(panel.start_ms[i]) + np.arange(n) * panel.freq_ms, dtype=pl.Int64)
                    .cast(pl.Datetime("ms"))
                    .dt.replace_time_zone("UTC"),
                    "y": panel.values[i],
                },
                schema={"series": pl.String, "ts": pl.Datetime("ms", "UTC"), "y": pl.Float64},
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema={"series": pl.String, "ts": pl.Datetime("ms", "UTC")})


def _predict_by_origin(model: Forecaster, panel: Panel, origins: list[np.ndarray], h: int) -> list[np.ndarray]:
    """The literal protocol: one ``predict`` per origin index with every series cut at that origin."""
    out = [np.full((len(o), h, len(QUANTILES)), np.nan) for o in origins]
    for j in range(max((len(o) for o in origins), default=0)):
        rows = [i for i, o in enumerate(origins) if j < len(o)]
        cut = _panel_slice(panel, [int(origins[i][j]) if i in rows else 0 for i in range(len(panel.names))])
        fc = model.predict(panel_frame(cut, rows), h).sort("series", "step")
        by_name = {name: part for (name,), part in fc.group_by("series", maintain_order=True)}
        for i in rows:
            part = by_name.get(panel.names[i])
            if part is None or len(part) != h:
                raise RuntimeError(f"{model.name}: no {h}-step forecast for series {panel.names[i]}")
            out[i][j] = part.select(QUANTILE_COLUMNS).to_numpy()
    return out


def backtest(
    frame: pl.DataFrame,
    models: Sequence[str | Forecaster] | None = None,
    horizon: int = 12,
    season: int | None = None,
    freq: timedelta | None = None,
    *,
    stride: int = 1,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> BacktestResult:
    """Backtest ``models`` (registered names or fitted-to-be instances) on a history frame.

    ``season`` defaults to :func:`~tasks.forecasting.grid.default_season` of the shortest training
    part; ``freq`` to :func:`~tasks.forecasting.grid.infer_freq`. ``params`` maps a model name to
    constructor parameters. A model that raises :class:`NotEnoughHistory` is reported in ``errors``
    (and ``to_dict``) instead of failing the whole run; a series too short to hold one test origin
    fails the run with a message naming it.
    """
    if horizon < 1 or stride < 1:
        raise ValueError("horizon and stride must be at least 1")
    freq = freq or infer_freq(frame)
    grid_frame, report = regularize(frame, freq)
    panel = Panel.from_frame(grid_frame, freq)
    if not panel.names:
        raise ValueError("no data to backtest")
    lengths = panel.lengths()
    n_train = [split_index(int(n)) for n in lengths]
    for name, n, nt in zip(panel.names, lengths, n_train, strict=True):
        if n - nt < horizon or nt < 2:
            raise NotEnoughHistory(
                f"series {name}: {n} points leave a test part of {n - nt} (20 %), shorter than the horizon "
                f"{horizon}; needs at least {math.ceil(horizon / TEST_FRACTION)} points"
            )
    season = int(season) if season else default_season(freq, min(n_train))
    train_panel = _panel_slice(panel, n_train)
    train_frame = panel_frame(train_panel)
    origins = [np.arange(nt, int(n) - horizon + 1, stride) for n, nt in zip(lengths, n_train, strict=True)]
    steps = np.arange(horizon)
    actuals = [v[o[:, None] + steps[None, :]] for v, o in zip(panel.values, origins, strict=True)]
    scales = [mase_scale(v, season) for v in train_panel.values]

    rows: list[dict[str, Any]] = []
    timings: dict[str, tuple[float, float]] = {}
    errors: dict[str, str] = {}
    for spec in models if models is not None else list(MODELS):
        model = _build(spec, horizon, params) if isinstance(spec, str) else spec
        t0 = time.perf_counter()
        try:
            model.fit(train_frame, freq=freq, season=season)
        except NotEnoughHistory as exc:
            errors[model.name] = str(exc)
            continue
        t1 = time.perf_counter()
        if isinstance(model, OriginForecaster):
            forecasts = model.predict_origins(panel, origins, horizon)
        else:
            forecasts = _predict_by_origin(model, panel, origins, horizon)
        t2 = time.perf_counter()
        timings[model.name] = (t1 - t0, t2 - t1)
        for i, name in enumerate(panel.names):
            a, f = actuals[i], forecasts[i]
            point = f[..., QUANTILES.index(0.5)]
            loss = pinball(a, f)
            row: dict[str, Any] = {
                "model": model.name,
                "series": name,
                "mase": mase(a, point, scales[i]),
                "mase_step1": mase(a[:, :1], point[:, :1], scales[i]),
                "smape": smape(a, point),
                "pinball": float(loss.mean() / scales[i]) if scales[i] > 0 else float("nan"),
                "coverage_p80": coverage_p80(a, f),
                "coverage_p90": coverage_p90(a, f),
                "origins": len(origins[i]),
                "scale": scales[i],
            }
            row |= {f"pinball_{c}": float(v) for c, v in zip(QUANTILE_COLUMNS, loss, strict=True)}
            rows.append(row)

    per_series = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    summary = _summarise(per_series, timings)
    return BacktestResult(
        per_series=per_series,
        summary=summary,
        horizon=horizon,
        season=season,
        freq=freq,
        stride=stride,
        origins=int(sum(len(o) for o in origins)),
        grid=report,
        errors=errors,
    )


def _build(name: str, horizon: int, params: Mapping[str, Mapping[str, Any]] | None) -> Forecaster:
    """A registered model; one with a ``max_horizon`` is trained for at least ``horizon`` steps."""
    kwargs = dict((params or {}).get(name, {}))
    cls = MODELS.get(name)
    if cls is not None:
        arg = inspect.signature(cls.__init__).parameters.get("max_horizon")
        if arg is not None and isinstance(arg.default, int):
            kwargs.setdefault("max_horizon", max(arg.default, horizon))
    return get_model(name, **kwargs)


def _summarise(per_series: pl.DataFrame, timings: Mapping[str, tuple[float, float]]) -> pl.DataFrame:
    schema = {
        "model": pl.String,
        "series": pl.Int64,
        **{
            c: pl.Float64
            for c in (
                "mase_mean",
                "mase_median",
                "mase_step1_mean",
                "mase_step1_median",
                "smape_mean",
                "smape_median",
                "pinball",
                "coverage_p80",
                "coverage_p90",
                "fit_s",
                "predict_s",
            )
        },
    }
    if per_series.is_empty():
        return pl.DataFrame(schema=schema)
    nan_free = [pl.col(c).fill_nan(None) for c in ("mase", "mase_step1", "smape", "pinball")]
    out = (
        per_series.with_columns(nan_free)
        .group_by("model", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("series"),
            pl.col("mase").mean().alias("mase_mean"),
            pl.col("mase").median().alias("mase_median"),
            pl.col("mase_step1").mean().alias("mase_step1_mean"),
            pl.col("mase_step1").median().alias("mase_step1_median"),
            pl.col("smape").mean().alias("smape_mean"),
            pl.col("smape").median().alias("smape_median"),
            pl.col("pinball").mean(),
            pl.col("coverage_p80").mean(),
            pl.col("coverage_p90").mean(),
        )
        .with_columns(
            pl.col("model")
            .replace_strict({m: t[0] for m, t in timings.items()}, return_dtype=pl.Float64)
            .alias("fit_s"),
            pl.col("model")
            .replace_strict({m: t[1] for m, t in timings.items()}, return_dtype=pl.Float64)
            .alias("predict_s"),
        )
    )
    return out.select(list(schema)).cast(schema)  # type: ignore[arg-type]


def read_series_csv(path: str | Path, time_col: str, value_col: str) -> pl.DataFrame:
    """A one-series history frame from a CSV (series name = file stem), timestamps in UTC.

    Timestamps: ISO-like text (naive text is taken as UTC, text with an offset is converted to
    UTC) or numbers (Unix seconds, or milliseconds when larger than 1e11). Errors name the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    raw = pl.read_csv(path, infer_schema_length=10_000)
    for col in (time_col, value_col):
        if col not in raw.columns:
            raise ValueError(f"column {col!r} not in {path.name}; its columns are {raw.columns}")
    ts = raw[time_col]
    if ts.dtype == pl.String:
        try:
            ts = ts.str.strip_chars().str.to_datetime(time_unit="ms", strict=True)
        except pl.exceptions.PolarsError as exc:
            sample = raw[time_col].drop_nulls().head(1).to_list()
            raise ValueError(
                f"column {time_col!r}: cannot read the values as timestamps (first: {sample}); "
                "expected ISO 8601 text such as 2024-01-31 12:00:00 or Unix seconds"
            ) from exc
    elif ts.dtype.is_numeric():
        numbers = ts.cast(pl.Float64)
        unit_ms = 1.0 if float(numbers.abs().fill_null(0).to_numpy().max(initial=0)) > 1e11 else 1000.0
        ts = (numbers * unit_ms).round().cast(pl.Int64).cast(pl.Datetime("ms"))
    elif not isinstance(ts.dtype, pl.Datetime):
        raise ValueError(f"column {time_col!r}: type {ts.dtype} is not a timestamp")
    ts = ts.cast(pl.Datetime("ms", ts.dtype.time_zone)) if isinstance(ts.dtype, pl.Datetime) else ts
    tz = ts.dtype.time_zone if isinstance(ts.dtype, pl.Datetime) else None
    ts = ts.dt.replace_time_zone("UTC") if tz is None else ts.dt.convert_time_zone("UTC")
    y = raw[value_col].cast(pl.Float64, strict=False)
    if y.drop_nulls().drop_nans().is_empty():
        raise ValueError(f"column {value_col!r}: no numeric values")
    if ts.null_count() == len(ts):
        raise ValueError(f"column {time_col!r}: no timestamps")
    frame = pl.DataFrame({"series": [path.stem] * len(raw), "ts": ts, "y": y})
    return frame.filter(pl.col("ts").is_not_null())


def backtest_csv(
    path: str | Path,
    time_col: str,
    value_col: str,
    horizon: int = 12,
    season: int | None = None,
    models: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Backtest every model (or ``models``) on one CSV series; :meth:`BacktestResult.to_dict` of it.

    What ``cortex-perf forecast backtest FILE.csv`` runs. A model that cannot fit the series (too
    short for its season) appears with an ``error`` instead of scores.
    """
    frame = read_series_csv(path, time_col, value_col)
    out = backtest(frame, list(models) if models else None, horizon=horizon, season=season).to_dict()
    out["file"] = str(path)
    return out


def render_backtest_table(result: Mapping[str, Any]) -> Table:
    """A rich table of a backtest's ``to_dict``: one row per model, best MASE first."""
    grid = result.get("grid", {})
    title = (
        f"Backtest: {result.get('series')} series, h={result.get('horizon')}, season={result.get('season')}, "
        f"{result.get('origins')} origins (last 20 % held out)"
    )
    caption = (
        f"grid {grid.get('freq_s')} s: {grid.get('interpolated', 0)} points interpolated "
        f"({100 * grid.get('interpolated_fraction', 0):.1f} %), {grid.get('duplicates', 0)} duplicates averaged. "
        "MASE < 1 beats the seasonal-naive forecast."
    )
    # Text, not markup: model names and error messages can quote a user's CSV (``[red]`` stays text)
    table = Table(title=Text(title, style="table.title"), caption=Text(caption, style="table.caption"))
    for col, justify in (
        ("model", "left"),
        ("MASE", "right"),
        ("MASE h=1", "right"),
        ("sMAPE %", "right"),
        ("pinball", "right"),
        ("cov p10–p90", "right"),
        ("cov ≤p90", "right"),
        ("fit s", "right"),
        ("predict s", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]

    def fmt(v: Any, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    models = result.get("models", {})
    ok = sorted((m for m in models.items() if "error" not in m[1]), key=lambda kv: kv[1].get("mase") or math.inf)
    for name, s in ok:
        table.add_row(
            Text(name),
            fmt(s.get("mase"), ".3f"),
            fmt(s.get("mase_step1"), ".3f"),
            fmt(s.get("smape"), ".1f"),
            fmt(s.get("pinball"), ".3f"),
            fmt(s.get("coverage_p80"), ".2f"),
            fmt(s.get("coverage_p90"), ".2f"),
            fmt(s.get("fit_s"), ".2f"),
            fmt(s.get("predict_s"), ".2f"),
        )
    for name, s in models.items():
        if "error" in s:
            table.add_row(Text(name), Text(str(s["error"]), style="red"), *[""] * 7)
    return table

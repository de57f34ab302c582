"""Import a CSV or Parquet file into the samples table with a column mapping.

People bring exports from other tools, so every problem is reported where they can fix it: the
file's line (CSV, header = line 1) or row (Parquet) and the column name. Good rows are imported
and bad ones listed, unless the lake (or the call) is strict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from tasks.lake import schema as S
from tasks.lake.write import WriteResult

if TYPE_CHECKING:
    from tasks.lake.lake import Lake

TZ_SUFFIX = re.compile(r"(Z|z|[+-]\d{2}:?\d{2})$")
MAX_REPORTED = 10


class LakeImportError(ValueError):
    """The file cannot be imported as asked; the message names the line/row and column."""


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    time_col: str
    value_col: str
    metric: str | None = None
    metric_col: str | None = None
    label_cols: tuple[tuple[str, str], ...] = ()  # (label name, column)


def _read(path: Path, fmt: str | None) -> tuple[pl.DataFrame, str]:
    kind = (fmt or path.suffix.lstrip(".")).lower()
    if not path.exists():
        raise LakeImportError(f"{path}: no such file")
    try:
        if kind in ("csv", "txt", "tsv"):
            sep = "\t" if kind == "tsv" else ","
            return pl.read_csv(path, infer_schema=False, separator=sep), "csv"
        if kind in ("parquet", "pq"):
            return pl.read_parquet(path), "parquet"
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, OSError) as e:
        raise LakeImportError(f"{path}: cannot read as {kind}: {e}") from None
    raise LakeImportError(f"{path}: unknown format {kind!r} (use csv or parquet, or pass fmt)")


def _parse_time(col: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(UTC timestamps, per-row error text or null)."""
    if col.dtype == pl.String:
        s = col.str.strip_chars()
        numeric = s.cast(pl.Float64, strict=False)
        has_tz = s.str.contains(TZ_SUFFIX.pattern)
        # Normalise "Z" to an offset so one inferred format fits the whole column.
        parsed = s.str.replace(r"[Zz]$", "+00:00").str.to_datetime(strict=False, time_zone="UTC", time_unit="ms")
        naive = s.str.replace(TZ_SUFFIX.pattern, "").str.to_datetime(strict=False, time_unit="ms")
        from_num = _epoch(numeric)
        ts = pl.select(pl.when(numeric.is_not_null()).then(from_num).otherwise(parsed)).to_series()
        err = pl.select(
            pl.when(s.is_null() | (s == ""))
            .then(pl.lit("missing timestamp"))
            .when(numeric.is_null() & ~has_tz & naive.is_not_null())
            .then(pl.lit("naive timestamp ") + s + pl.lit(" (add Z or a UTC offset)"))
            .when(numeric.is_null() & parsed.is_null())
            .then(pl.lit("cannot parse timestamp ") + s.fill_null(""))
            .otherwise(pl.lit(None, dtype=pl.String))
        ).to_series()
        return ts, err
    if isinstance(col.dtype, pl.Datetime):
        if col.dtype.time_zone is None:
            err = pl.Series([f"naive timestamp {v}" if v is not None else "missing timestamp" for v in col.to_list()])
            return col.dt.replace_time_zone("UTC").dt.cast_time_unit("ms"), err
        ts = col.dt.convert_time_zone("UTC").dt.cast_time_unit("ms")
        err = pl.select(pl.when(col.is_null()).then(pl.lit("missing timestamp"))).to_series()
        return ts, err.cast(pl.String)
    if col.dtype.is_numeric():
        ts = _epoch(col.cast(pl.Float64))
        err = pl.select(pl.when(col.is_null()).then(pl.lit("missing timestamp"))).to_series()
        return ts, err.cast(pl.String)
    raise LakeImportError(f"column {col.name!r}: cannot read timestamps from a {col.dtype} column")


def _epoch(num: pl.Series) -> pl.Series:
    # Seconds or milliseconds since the epoch, told apart by size (ms values are > 1e11 today).
    ms = pl.select(pl.when(num.abs() > 1e11).then(num).otherwise(num * 1000)).to_series()
    return pl.select(
        pl.from_epoch(ms.cast(pl.Int64, strict=False), time_unit="ms").dt.replace_time_zone("UTC")
    ).to_series()


def import_file(
    lake: Lake,
    path: str | Path,
    mapping: ColumnMapping,
    *,
    fmt: str | None = None,
    strict: bool | None = None,
    dry_run: bool = False,
) -> WriteResult:
    path = Path(path)
    df, kind = _read(path, fmt)
    where = (lambda i: f"line {i + 2}") if kind == "csv" else (lambda i: f"row {i + 1}")
    if (mapping.metric is None) == (mapping.metric_col is None):
        raise LakeImportError("mapping: give exactly one of a metric name (--metric) or a metric column (--metric-col)")
    needed = [mapping.time_col, mapping.value_col, *(c for _, c in mapping.label_cols)]
    if mapping.metric_col:
        needed.append(mapping.metric_col)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise LakeImportError(f"{path}: no column(s) {missing}; the file has {df.columns}")
    if mapping.metric:
        try:
            S.validate_metric_name(mapping.metric)
        except S.SchemaError as e:
            raise LakeImportError(f"--metric: {e}") from None
    for label, _ in mapping.label_cols:
        try:
            S.validate_label_name(label)
        except S.SchemaError as e:
            raise LakeImportError(f"--label {label}: {e}") from None

    ts, ts_err = _parse_time(df.get_column(mapping.time_col))
    vcol = df.get_column(mapping.value_col)
    value = vcol.cast(pl.Float64, strict=False) if vcol.dtype != pl.Float64 else vcol
    metric = (
        pl.Series([mapping.metric] * df.height, dtype=pl.String)
        if mapping.metric
        else df.get_column(mapping.metric_col or "").cast(pl.String)
    )
    labels_struct = {label: df.get_column(c).cast(pl.String) for label, c in mapping.label_cols}
    errors: list[tuple[int, str]] = []
    bad = [False] * df.height
    n_bad = 0

    def flag(i: int, column: str, msg: str) -> None:
        nonlocal n_bad
        if not bad[i]:
            bad[i] = True
            n_bad += 1
        errors.append((i, f"{where(i)}, column {column!r}: {msg}"))

    for i, ts_problem in enumerate(ts_err.to_list()):
        if ts_problem:
            flag(i, mapping.time_col, ts_problem)
    raw_values = vcol.to_list()
    for i, v in enumerate(value.to_list()):
        if v is None:
            flag(
                i,
                mapping.value_col,
                "missing value" if raw_values[i] in (None, "") else f"not a number: {raw_values[i]!r}",
            )
        elif v != v or v in (float("inf"), float("-inf")):
            flag(i, mapping.value_col, f"non-finite value {raw_values[i]!r}")
    if mapping.metric_col:
        for i, m in enumerate(metric.to_list()):
            if m is None or not S.METRIC_NAME_RE.match(m):
                flag(i, mapping.metric_col, f"invalid metric name {m!r}")
    label_texts: list[str] = []
    cols = list(labels_struct.items())
    rows = zip(*(s.to_list() for _, s in cols), strict=True) if cols else ([()] * df.height)
    for i, vals in enumerate(rows):
        try:
            label_texts.append(
                S.canonical_labels(
                    dict(zip((k for k, _ in cols), vals, strict=True)),
                    max_labels=lake.limits.max_labels,
                    max_value_length=lake.limits.max_value_length,
                )
            )
        except S.SchemaError as e:
            label_texts.append("{}")
            col = dict(mapping.label_cols).get(str(e).split(":")[0].removeprefix("labels."), "labels")
            flag(i, col, str(e))
    errors.sort(key=lambda e: e[0])
    reasons = [msg for _, msg in errors[:MAX_REPORTED]]
    strict = lake.limits.strict if strict is None else strict
    if n_bad and strict:
        raise LakeImportError(f"{path}: {n_bad} bad row(s), nothing imported: " + "; ".join(reasons))
    frame = pl.DataFrame(
        {
            "metric": metric,
            "labels": pl.Series(label_texts, dtype=pl.String),
            "ts": ts,
            "value": value,
            "_bad": pl.Series(bad, dtype=pl.Boolean),
        }
    )
    good = frame.filter(~pl.col("_bad")).drop("_bad")
    if dry_run:
        return WriteResult(S.SAMPLES, accepted=good.height, rejected=n_bad, reasons=reasons)
    res = lake.write_samples(good, strict=strict)
    res.rejected += n_bad
    res.reasons = reasons + res.reasons
    return res


def mapping_from_cli(
    time_col: str, value_col: str, metric: str | None, metric_col: str | None, labels: list[str] | None
) -> ColumnMapping:
    """Build a mapping from ``--label name=column`` style arguments (``name`` alone means same column)."""
    pairs = []
    for item in labels or []:
        name, _, col = item.partition("=")
        pairs.append((name.strip(), (col or name).strip()))
    return ColumnMapping(time_col, value_col, metric, metric_col, tuple(pairs))


__all__ = ["ColumnMapping", "LakeImportError", "import_file", "mapping_from_cli"]
